"""Judges for the two reasoning rewards of Audio-Thinker (arXiv 2508.08039).

A judge reads a think trace and the final answer of one completion and returns a :class:`Verdict`:

* ``consistent`` — R_c ∈ {0, 1}: does the reasoning support the given answer?
* ``quality`` — R_t ∈ [0, 1] in steps of 0.1: how good is the reasoning, regardless of whether the final
  answer is right?
* ``failed`` — the judge could not judge (unparseable reply, unsupported item); the verdict then carries a
  neutral score (``Verdict.neutral``: consistent 1, quality 0.5) and should be counted, not trusted.

Backends implement the :class:`Judge` protocol (a ``name`` and ``score_batch``) and are registered with
:func:`register_judge`; :func:`make_judge` builds one by name: ``oracle`` (synth-aqa ground truth, below),
``llm`` (a prompted causal LM, the paper's setup; at the end of this module) and ``learned`` (the reward
model trained from the ratings store, :mod:`audio_thinker.reward_model`, imported on first use).

Oracle judge (synth-aqa)
------------------------
The oracle checks the facts a trace states against the item's ground-truth ``events``. Pure Python
regular expressions, no model.

**Parsing.** The think text is lower-cased and split into sentences at ``. ! ? ;`` and newlines (a period
followed by a digit is a decimal point), and additionally before the start of every known sentence form,
so a missing period between two sentences is tolerated. Whitespace is collapsed; ``0.2s``, ``0.2 sec``
and ``0.2 seconds`` all read as ``0.2 s``; the unit may be left out. Recognised sentences (the grammar of
``synth.gold_trace``, with a few synonyms):

* event claims: ``Beep 2 at 0.9 s: high.`` / ``Beep 1 at 0.2 s: middle, long.`` / ``Beep 3 at 1.4 s.`` /
  ``Beep 2: low.`` (no onset)
  (a tone; attributes low|middle|high, short|long, loud|quiet; ``mid``/``medium`` = middle),
  ``At 0.4 s: a noise burst.``, ``At 0.2 s: a chirp sweeping up.``, ``At 0.3 s: a steady tone.``;
* a running tally inside a beep claim: ``Beep 2 at 0.4 s: high (2 high, 0 low).`` — the high and low
  beeps counted up to and including this one. Tolerant: spaces inside optional, ``highs``/``lows``, either
  order (``(0 low, 2 high)``), separator ``,`` / ``and`` / ``/`` / none; also accepted without attributes
  (``Beep 2 at 0.4 s (2 high, 0 low).``). The tally is not an attribute word. Any other parenthesised
  group in a beep claim is one unknown attribute. Tallies are optional: a beep without one simply has no
  tally check;
* ``I hear no sound event, only background hiss.`` (claims there are no events);
* ``That is 4 beeps.`` (beeps/tones count tones; events/sounds count all events);
* derivations: ``High beeps: 3.`` ``Low beeps: 2.`` ``3 - 2 = 1.``, ``From beep 1 to beep 2 it goes up``
  (one clause each), ``Three beeps are low, the high one is beep 3.`` (also the older ``Three beeps are
  low, beep 3 is high.``), ``The long one is beep 2.``,
  ``High is higher than low.`` / ``Beep 2 is higher than beep 1.``;
* the conclusion ``So the answer is X.`` (also ``the answer is X``).

Claimed events are aligned with the true events by order of appearance (the k-th event sentence ↔ true
event k; the number after "Beep" is not used), and "beep k" in a derivation means the k-th claimed
event; a tally in the k-th event sentence counts events 1..k in that order. Any other non-empty sentence
is *unsupported*.

**Consistency R_c.** The answer is derived from the trace's own claims, never from the ground truth,
with the logic of the item's task (``sub-category``):

* sound_type: the kind of the claimed event(s) (all the same kind), or "only background hiss" for the
  no-event sentence (with no event claimed); pitch_level / loudness: the claimed pitch / loudness of the
  beep(s) (all equal); count: the number of claimed beeps;
* compare_pitch: claimed pitch of beep 2 vs beep 1 (must differ); longest: the only beep claimed long,
  with every beep's length stated; high_low_difference: |#high − #low| over the claimed pitches (every
  beep's pitch stated); pitch_pattern: the two steps between the first three claimed pitches (adjacent
  pitches must differ); odd_one_out: the one beep whose claimed pitch differs from all others (≥ 3 beeps,
  the others equal).

The derived answer must be one of the choices (same tokens), else the claims determine no answer.
R_c = 1 iff an answer is derived, ``rewards.match_choice(answer, derived, choices)`` holds, every
``So the answer is X`` in the trace also matches it, and every derivation sentence the task relies on
agrees with the claims (count: ``That is N beeps``; compare_pitch: the comparison; longest: ``The long
one is beep k``; high_low_difference: every tally — h and l must be the numbers of beeps claimed high /
low among claimed events 1..k, each of which must have a stated pitch — the counts and the subtraction;
pitch_pattern: the steps; odd_one_out: the odd-one sentence, either form). Tallies in other tasks do not
enter R_c (they are still quality checks). Otherwise 0 (including gibberish and empty traces).

**Quality R_t.** A list of pass/fail checks against the true events:

* per claimed event k with a true event k: kind (beep = tone, noise, chirp) correct; onset (when
  stated) within ±0.15 s; each distinct stated attribute (pitch, length, loudness, chirp direction)
  correct; each unknown attribute word fails (conflicting words such as "high, low" are each checked,
  and leave the attribute undetermined for R_c); each tally passes iff h and l are the true numbers of
  high and low beeps among true events 1..k (a beep without a tally has no tally check; the tallies of an
  extra event are covered by its one "extra" failure);
* each claimed event beyond the true count (extra) fails once; each true event not claimed (missing)
  fails once;
* the no-event sentence passes iff there is no true event; ``That is N beeps`` passes iff N is the true
  count; each derivation sentence passes iff it is true of the true events (``a - b = c`` needs
  a = max(#high, #low), b = min, c = a − b; a pitch comparison needs the stated pitches to be the true
  ones; the odd-one sentence, either form, needs beep k to be the only beep with the odd pitch Y, the
  others X, and the stated number of X beeps right); a derivation sentence repeated word for word fails
  on each repeat;
* each unsupported sentence fails once;
* the conclusion ``So the answer is X`` is *not* a check, so quality does not depend on the answer
  except through the facts stated on the way.

quality = passed / total, rounded half up to 0.1, and capped at 0.9 when any check failed (1.0 means a
flawless trace). An empty think has no check → 0.0; gibberish has only failing checks → 0.0.

**Non-synth items** (no ``events``, malformed ``events``, or a task the oracle does not know, looked up
by ``sub-category`` and else by the question text) give ``Verdict.neutral`` with ``failed=True``; each
kind of problem logs one warning per process. Arbitrary text never raises.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from . import synth
from .rewards import answer_tokens, match_choice, parse_completion, quantize_quality

__all__ = [
    "Judge",
    "JudgeRequest",
    "OracleJudge",
    "Verdict",
    "available_judges",
    "make_judge",
    "quantize_quality",
    "register_judge",
    "score",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# Interface


@dataclass(frozen=True)
class Verdict:
    """One judgement. ``quality`` is snapped to the 0.1 grid on construction.

    Raises ValueError when ``consistent`` is not 0/1 or ``quality`` is not a number in [0, 1].
    """

    consistent: int
    quality: float
    failed: bool = False
    detail: str = ""

    def __post_init__(self) -> None:
        if self.consistent not in (0, 1):
            raise ValueError(f"consistent must be 0 or 1, got {self.consistent!r}")
        q = float(self.quality)
        if not (0.0 <= q <= 1.0):  # also rejects NaN
            raise ValueError(f"quality must be in [0, 1], got {self.quality!r}")
        object.__setattr__(self, "consistent", int(self.consistent))
        object.__setattr__(self, "quality", quantize_quality(q))

    @classmethod
    def neutral(cls, detail: str) -> Verdict:
        """The verdict of a judge that could not judge: consistent 1, quality 0.5, failed."""
        return cls(consistent=1, quality=0.5, failed=True, detail=detail)


@dataclass(frozen=True)
class JudgeRequest:
    """What a judge sees of one completion: the question, its choices, the think and answer texts."""

    question: str
    choices: Sequence[str]
    think: str
    answer: str
    item: Mapping | None = None

    @classmethod
    def from_completion(
        cls, question: str, choices: Sequence[str], completion: str, item: Mapping | None = None
    ) -> JudgeRequest:
        """Build a request from a raw completion with :func:`rewards.parse_completion` (missing → "")."""
        parsed = parse_completion(completion)
        return cls(question, choices, parsed.think or "", parsed.answer or "", item)


@runtime_checkable
class Judge(Protocol):
    """A judge backend: ``score_batch`` returns one :class:`Verdict` per request, in order."""

    name: str

    def score_batch(self, requests: Sequence[JudgeRequest]) -> list[Verdict]: ...


def score(
    judge: Judge,
    question: str,
    choices: Sequence[str],
    think: str,
    answer: str,
    item: Mapping | None = None,
) -> tuple[int, float]:
    """Convenience for one request: ``(consistent, quality)``."""
    (verdict,) = judge.score_batch([JudgeRequest(question, choices, think, answer, item)])
    return verdict.consistent, verdict.quality


_REGISTRY: dict[str, Callable[..., Judge]] = {}


def register_judge(name: str) -> Callable[[Callable[..., Judge]], Callable[..., Judge]]:
    """Decorator registering a judge factory (usually the class) under ``name`` for :func:`make_judge`."""

    def deco(factory: Callable[..., Judge]) -> Callable[..., Judge]:
        _REGISTRY[name] = factory
        return factory

    return deco


def available_judges() -> list[str]:
    """Names :func:`make_judge` accepts, sorted."""
    return sorted({*_REGISTRY, "learned"})


def make_judge(name: str, **kwargs: Any) -> Judge:
    """Build the judge registered as ``name`` with ``kwargs``; ValueError for an unknown name."""
    if name == "learned" and name not in _REGISTRY:  # lives beside its training code; import on demand
        from . import reward_model  # noqa: F401  (registers "learned")
    try:
        factory = _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown judge {name!r}; known judges: {', '.join(available_judges())}") from None
    return factory(**kwargs)


# --------------------------------------------------------------------------------------------------
# Oracle: parsing

PITCH_ORDER, SOUND_TYPES, ORDINALS = synth.PITCH_ORDER, synth.SOUND_TYPES, synth.ORDINALS
TASK_QUESTIONS = {task.question: name for name, task in synth.TASKS.items()}
KNOWN_TASKS = frozenset(TASK_QUESTIONS.values())
# derivation sentences each task's answer relies on (they must agree with the claims for R_c)
TASK_STATEMENTS = {
    "count": {"count"},
    "compare_pitch": {"compare", "compare_beeps"},
    "longest": {"longest"},
    "high_low_difference": {"tally", "high", "low", "diff"},  # "tally": the running tallies in beep claims
    "pitch_pattern": {"step"},
    "odd_one_out": {"odd"},
}
ONSET_TOLERANCE = 0.15

_ATTR_WORDS = {
    "low": ("pitch", "low"),
    "middle": ("pitch", "middle"),
    "mid": ("pitch", "middle"),
    "medium": ("pitch", "middle"),
    "high": ("pitch", "high"),
    "short": ("length", "short"),
    "long": ("length", "long"),
    "loud": ("level", "loud"),
    "quiet": ("level", "quiet"),
    "soft": ("level", "quiet"),
}
_FILLER = {"a", "an", "and", "in", "pitch", "pitched", "tone", "beep", "it", "is"}
_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
    )
}
_NUMBER_WORDS["no"] = 0

_NUM = r"([0-9]{1,6}(?:\.[0-9]{1,6})?|\.[0-9]{1,6})"
_INT = r"([0-9]{1,3})"
_PITCH = r"(low|middle|high)"
_SENTENCE_END = re.compile(r"[\n!?;]+|\.(?![0-9])")
_SPACES = re.compile(r"\s+")
_UNIT = re.compile(r"([0-9])\s?(?:seconds?|secs?|s)\b")
_STARTERS = re.compile(
    r"(?=\bbeep [0-9]{1,3} at\b)"
    r"|(?=\bbeep [0-9]{1,3}:)"  # a claim without its onset: "beep 2: low"
    r"|(?<!beep [0-9] )(?<!beep [0-9][0-9] )(?<!beep [0-9][0-9][0-9] )(?=\bat \.?[0-9])"
    r"|(?=\b(?:so|thus|therefore|hence) the answer is\b)"
    r"|(?<!so )(?<!thus )(?<!therefore )(?<!hence )(?=\bthe answer is\b)"
    r"|(?=\bthat is \w+ (?:beeps?|tones?|events?|sounds?)\b)"
    r"|(?=\b(?:high|low) beeps?:)"
    r"|(?=\bfrom beep [0-9]{1,3} to beep\b)"
    r"|(?=\b\w+ beeps? (?:are|is) (?:low|middle|high)\b)"
    r"|(?=\bthe (?:long|longest|longer) (?:one|beep) is\b)"
    r"|(?=\b(?:low|middle|high) is (?:higher|lower) than\b)"
    r"|(?=\bi hear\b)"
)
_LEAD = re.compile(r"^(?:(?:and|then|also|next)\b[ ,]*)+")
_DANGLING = (" and", " then", ",and", ",then")

_RE_BEEP = re.compile(rf"^beep {_INT}(?: at {_NUM}(?: s)?)?(?:: ?(.*))?$")
_RE_AT = re.compile(rf"^at {_NUM}(?: s)?: ?(?:i hear )?(.+)$")
_RE_TONE_DESC = re.compile(r"^(?:a |an )?(?:steady |pure |constant )?(?:tone|beep)$")
_RE_NOISE_DESC = re.compile(r"^(?:a |an )?(?:(?:white )?noise(?: burst)?|burst of (?:white )?noise)$")
_RE_CHIRP_DESC = re.compile(
    r"^(?:a |an )?(?:(sweeping|rising|falling|upward|downward) )?chirp"
    r"(?: (?:sweeping|going|rising|falling|that sweeps|that goes)(?: (up|down)(?:wards?)?)?)?$"
)
_RE_NO_EVENT = re.compile(
    r"^(?:i hear )?(?:no (?:sound )?events?|no sounds?|nothing(?: else)?)"
    r"(?:,? (?:only|just) (?:the |some )?background (?:hiss|noise))?$"
    r"|^(?:there is |i hear )?(?:only|just) (?:the |some )?background (?:hiss|noise)$"
)
_RE_COUNT = re.compile(
    r"^(?:that is|that's|that makes|there are|there is|i count) (\w+) (beeps?|tones?|events?|sounds?)"
    r"(?: in total| total| in all)?$"
)
_RE_HL = re.compile(rf"^(high|low) beeps?(?::|,| are| =)? {_INT}$")
_RE_DIFF = re.compile(rf"^{_INT} ?- ?{_INT} ?= ?{_INT}$")
_RE_STEP = re.compile(
    rf"^from beep {_INT} to beep {_INT},? (?:it |the pitch )?(?:(?:goes|steps|moves|is) (up|down)(?:wards?)?|(rises|falls))"
    r"(?: in pitch)?$"
)
_RE_ODD = re.compile(  # "three beeps are low, beep 3 is high" (older gold form)
    rf"^(\w+) beeps? (?:are|is) {_PITCH}(?:,? (?:and|but|while|whereas))?,? beep {_INT} is {_PITCH}$"
)
_RE_ODD_NAMED = re.compile(  # "three beeps are low, the high one is beep 3" (gold form)
    rf"^(\w+) beeps? (?:are|is) {_PITCH}(?:,? (?:and|but|while|whereas))?,?"
    rf" the {_PITCH} (?:one|beep) is beep {_INT}$"
)
_RE_TALLY = re.compile(rf"\( ?{_INT} ?(high|low)s? ?(?:, and |, | and | ?/ ?| )?{_INT} ?(high|low)s? ?\)")
_RE_PAREN = re.compile(r"\([^()]*\)?")
_RE_LONGEST = re.compile(
    rf"^(?:the )?(?:long|longest|longer) (?:one|beep) is beep {_INT}$|^beep {_INT} is the (?:long|longest)(?: one)?$"
)
_RE_COMPARE = re.compile(rf"^{_PITCH} is (higher|lower) than {_PITCH}(?: in pitch)?$")
_RE_COMPARE_BEEPS = re.compile(rf"^beep {_INT} is (higher|lower)(?: in pitch)? than beep {_INT}$")
_RE_CONCLUSION = re.compile(r"^(?:(?:so|thus|therefore|hence),? )?the answer is:? (.+)$")


@dataclass
class _Ev:
    """An event, claimed or true; None marks an attribute that was not stated / does not apply."""

    kind: str | None
    onset: float | None = None
    pitch: str | None = None
    length: str | None = None
    level: str | None = None
    direction: str | None = None


@dataclass
class _Claim:
    ev: _Ev
    stated: list[tuple[str, str]] = field(default_factory=list)  # (attribute, value) in order
    unknown: list[str] = field(default_factory=list)
    tallies: list[tuple[int, int]] = field(default_factory=list)  # running (high, low) counts, as stated


@dataclass
class _Trace:
    claims: list[_Claim] = field(default_factory=list)
    no_event: int = 0
    statements: list[tuple[Any, ...]] = field(default_factory=list)  # ("kind", ...args, sentence)
    repeats: list[str] = field(default_factory=list)
    conclusions: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)


def _sentences(text: str) -> list[str]:
    out = []
    for chunk in _SENTENCE_END.split(text.lower().replace("−", "-").replace("–", "-")):
        chunk = _SPACES.sub(" ", chunk).strip()
        if not chunk:
            continue
        chunk = re.sub(r" ?: ?", ": ", chunk)
        chunk = re.sub(r" ?, ?", ", ", chunk)
        chunk = _UNIT.sub(r"\1 s", chunk)
        for piece in _STARTERS.split(chunk):
            piece = _LEAD.sub("", piece.strip(" ,:")).strip(" ,:")
            if piece.endswith(_DANGLING):  # drop dangling "and" / "then" (no regex: no backtracking)
                words = piece.split(" ")
                while words and words[-1].strip(",:") in ("and", "then", ""):
                    words.pop()
                piece = " ".join(words).strip(" ,:")
            if piece:
                out.append(piece)
    return out


def _number(word: str) -> int | None:
    return int(word) if word.isascii() and word.isdigit() and len(word) <= 3 else _NUMBER_WORDS.get(word)


def _split_tallies(s: str) -> tuple[str, list[tuple[int, int]]]:
    """The sentence without its running tallies, and the tallies as (high, low)."""
    tallies: list[tuple[int, int]] = []

    def take(m: re.Match[str]) -> str:
        a, word_a, b, word_b = m.groups()
        if word_a == word_b:  # "(1 high, 2 high)" is no tally
            return m.group(0)
        tallies.append((int(a), int(b)) if word_a == "high" else (int(b), int(a)))
        return " "

    rest = _RE_TALLY.sub(take, s)
    if tallies:
        rest = re.sub(r" ?: ?", ": ", _SPACES.sub(" ", rest)).replace(" ,", ",").strip(" ,:")
    return rest, tallies


def _tone_claim(attrs: str | None, tallies: list[tuple[int, int]]) -> _Claim:
    claim = _Claim(_Ev("tone"), tallies=tallies)
    attrs = attrs or ""
    if "(" in attrs:  # a parenthesised group that is not a tally is one unknown attribute
        claim.unknown.extend(g.strip() for g in _RE_PAREN.findall(attrs))
        attrs = _RE_PAREN.sub(" ", attrs)
    for word in re.split(r"[ ,]+", attrs):
        if not word or word in _FILLER:
            continue
        if word in _ATTR_WORDS:
            if _ATTR_WORDS[word] not in claim.stated:  # a repeated word is one claim
                claim.stated.append(_ATTR_WORDS[word])
        else:
            claim.unknown.append(word)
    for key in ("pitch", "length", "level"):
        values = {v for k, v in claim.stated if k == key}
        setattr(claim.ev, key, values.pop() if len(values) == 1 else None)  # conflicting → undetermined
    return claim


def _event_desc(desc: str) -> _Claim | None:
    if _RE_TONE_DESC.match(desc):
        return _Claim(_Ev("tone"))
    if _RE_NOISE_DESC.match(desc):
        return _Claim(_Ev("noise"))
    m = _RE_CHIRP_DESC.match(desc)
    if m:
        word = m.group(2) or {"rising": "up", "upward": "up", "falling": "down", "downward": "down"}.get(
            m.group(1) or ""
        )
        claim = _Claim(_Ev("chirp", direction=word))
        if word:
            claim.stated.append(("direction", word))
        return claim
    return None


def _parse(text: str) -> _Trace:
    trace = _Trace()
    seen: set[str] = set()
    for s in _sentences(text):
        rest, tallies = _split_tallies(s) if s.startswith("beep ") else (s, [])
        if m := _RE_BEEP.match(rest):
            claim = _tone_claim(m.group(3), tallies)
            claim.ev.onset = float(m.group(2)) if m.group(2) else None
            trace.claims.append(claim)
            continue
        if (m := _RE_AT.match(s)) and (claim := _event_desc(m.group(2))):
            claim.ev.onset = float(m.group(1))
            trace.claims.append(claim)
            continue
        if m := _RE_CONCLUSION.match(s):
            trace.conclusions.append(m.group(1))
            continue
        stmt: tuple[Any, ...] | None = None
        if _RE_NO_EVENT.match(s):
            stmt = ("no_event",)
        elif (m := _RE_COUNT.match(s)) and (n := _number(m.group(1))) is not None:
            stmt = ("count", n, m.group(2).startswith(("beep", "tone")))
        elif m := _RE_HL.match(s):
            stmt = (m.group(1), int(m.group(2)))
        elif m := _RE_DIFF.match(s):
            stmt = ("diff", int(m.group(1)), int(m.group(2)), int(m.group(3)))
        elif m := _RE_STEP.match(s):
            word = m.group(3) or {"rises": "up", "falls": "down"}[m.group(4)]
            stmt = ("step", int(m.group(1)), int(m.group(2)), word)
        elif m := _RE_ODD.match(s):
            stmt = ("odd", _number(m.group(1)), m.group(2), int(m.group(3)), m.group(4))
        elif m := _RE_ODD_NAMED.match(s):
            stmt = ("odd", _number(m.group(1)), m.group(2), int(m.group(4)), m.group(3))
        elif m := _RE_LONGEST.match(s):
            stmt = ("longest", int(m.group(1) or m.group(2)))
        elif m := _RE_COMPARE.match(s):
            stmt = ("compare", m.group(1), m.group(2), m.group(3))
        elif m := _RE_COMPARE_BEEPS.match(s):
            stmt = ("compare_beeps", int(m.group(1)), m.group(2), int(m.group(3)))
        if stmt is None:
            trace.unsupported.append(s)
        elif s in seen:
            trace.repeats.append(s)
        else:
            seen.add(s)
            if stmt[0] == "no_event":
                trace.no_event += 1
            else:
                trace.statements.append((*stmt, s))
    return trace


# --------------------------------------------------------------------------------------------------
# Oracle: evaluation


def _true_events(raw: Any) -> list[_Ev] | None:
    """The item's events as _Ev, or None when they are malformed."""
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        return None
    out = []
    for e in raw:
        get = e.get if isinstance(e, Mapping) else (lambda k, _e=e: getattr(_e, k, None))
        kind, onset = get("kind"), get("onset")
        if kind not in ("tone", "noise", "chirp") or not isinstance(onset, int | float):
            return None
        direction = get("direction")
        if kind == "chirp" and direction is None:
            f0, f1 = get("f_start"), get("f_end")
            if isinstance(f0, int | float) and isinstance(f1, int | float):
                direction = "up" if f1 > f0 else "down"
        out.append(
            _Ev(
                kind,
                float(onset),
                get("pitch") if kind == "tone" else None,
                get("length") if kind == "tone" else None,
                get("level"),
                direction if kind == "chirp" else None,
            )
        )
    return out


def _pitch_counts(world: list[_Ev]) -> tuple[int, int] | None:
    tones = [e for e in world if e.kind == "tone"]
    if any(e.pitch is None for e in tones):
        return None
    return sum(e.pitch == "high" for e in tones), sum(e.pitch == "low" for e in tones)


def _tally_holds(world: list[_Ev], k: int, tally: tuple[int, int]) -> bool:
    """Whether (high, low) are the numbers of high and low beeps among events 1..k of ``world``."""
    return 1 <= k <= len(world) and _pitch_counts(world[:k]) == tally


def _at(world: list[_Ev], k: int) -> _Ev | None:
    return world[k - 1] if 1 <= k <= len(world) else None


def _comparison(a: str | None, b: str | None) -> str | None:
    """'higher' if pitch b is above a, 'lower' if below, None if equal or unknown."""
    if a is None or b is None or a == b:
        return None
    return "higher" if PITCH_ORDER[b] > PITCH_ORDER[a] else "lower"


def _holds(stmt: tuple[Any, ...], world: list[_Ev]) -> bool:
    """Whether a derivation statement is true of ``world`` (unknown attributes → False)."""
    kind, args = stmt[0], stmt[1:-1]
    if kind == "count":
        n, tones_only = args
        return n == (sum(e.kind == "tone" for e in world) if tones_only else len(world))
    if kind in ("high", "low", "diff"):
        counts = _pitch_counts(world)
        if counts is None:
            return False
        high, low = counts
        if kind == "high":
            return args[0] == high
        if kind == "low":
            return args[0] == low
        a, b, c = args
        return a == max(high, low) and b == min(high, low) and a - b == c
    if kind == "compare":
        b, word, a = args
        first, second = _at(world, 1), _at(world, 2)
        return (
            first is not None
            and second is not None
            and (first.pitch, second.pitch) == (a, b)
            and _comparison(a, b) == word
        )
    if kind in ("compare_beeps", "step"):
        i, word, j = args if kind == "compare_beeps" else (args[1], args[2], args[0])
        # compare_beeps: beep i is <word> than beep j; step: from beep j to beep i it goes <word>
        ei, ej = _at(world, i), _at(world, j)
        if ei is None or ej is None:
            return False
        rel = _comparison(ej.pitch, ei.pitch)
        return rel is not None and (rel == word or {"higher": "up", "lower": "down"}[rel] == word)
    if kind == "odd":
        n_common, common, k, odd = args
        target = _at(world, k)
        others = [e for i, e in enumerate(world, 1) if i != k]
        return (
            target is not None
            and common != odd
            and target.pitch == odd
            and all(e.pitch == common for e in others)
            and n_common == len(others)
        )
    if kind == "longest":
        target = _at(world, args[0])
        others = [e for i, e in enumerate(world, 1) if i != args[0]]
        return (
            target is not None
            and target.length == "long"
            and all(e.length is not None and e.length != "long" for e in others)
        )
    return False


def _all_same(values: list[str | None]) -> str | None:
    return values[0] if values and values[0] is not None and all(v == values[0] for v in values) else None


def _derive(task: str, trace: _Trace) -> str | None:
    """The answer the trace's own claims imply for ``task`` (None: not determined)."""
    world = [c.ev for c in trace.claims]
    if task == "sound_type":
        if trace.no_event:
            return SOUND_TYPES["none"] if not world else None
        kind = _all_same([e.kind for e in world])
        return SOUND_TYPES.get(kind) if kind else None
    if task == "pitch_level":
        return _all_same([e.pitch for e in world])
    if task == "loudness":
        return _all_same([e.level for e in world])
    if task == "count":
        return str(sum(e.kind == "tone" for e in world))
    if task == "compare_pitch":
        return _comparison(world[0].pitch, world[1].pitch) if len(world) >= 2 else None
    if task == "longest":
        lengths = [e.length for e in world]
        if None in lengths or lengths.count("long") != 1:
            return None
        k = lengths.index("long")
        return ORDINALS[k] if k < len(ORDINALS) else None
    if task == "high_low_difference":
        counts = _pitch_counts(world)
        if not world or counts is None:
            return None
        return str(abs(counts[0] - counts[1]))
    if task == "pitch_pattern":
        if len(world) < 3:
            return None
        s1 = _comparison(world[0].pitch, world[1].pitch)
        s2 = _comparison(world[1].pitch, world[2].pitch)
        if s1 is None or s2 is None:
            return None
        step = {"higher": "up", "lower": "down"}
        if s1 == s2:
            return "rising" if s1 == "higher" else "falling"
        return f"{step[s1]} then {step[s2]}"
    if task == "odd_one_out":
        pitches = [e.pitch for e in world]
        if len(pitches) < 3 or None in pitches:
            return None
        odd = [k for k, p in enumerate(pitches) if pitches.count(p) == 1]
        if len(odd) != 1 or len(set(pitches)) != 2 or odd[0] >= len(ORDINALS):
            return None
        return ORDINALS[odd[0]]
    return None


def _resolve(derived: str | None, choices: Sequence[str]) -> str | None:
    """The choice with the derived answer's tokens (None if none); with no choices, the answer itself."""
    if derived is None or not choices:
        return derived
    tokens = answer_tokens(derived)
    return next((c for c in choices if answer_tokens(c) == tokens), None)


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _tally_text(world: list[_Ev], k: int) -> str:
    counts = _pitch_counts(world[:k])
    return f"{counts[0]} high, {counts[1]} low" if counts else "undetermined"


def _quality_checks(
    trace: _Trace, truth: list[_Ev], tolerance: float = ONSET_TOLERANCE
) -> tuple[int, int, list[str]]:
    """(passed, total, failure messages) of the quality checks."""
    passed = total = 0
    failures: list[str] = []

    def check(ok: bool, message: str) -> None:
        nonlocal passed, total
        total += 1
        passed += ok
        if not ok:
            failures.append(message)

    for k, claim in enumerate(trace.claims, 1):
        ev = claim.ev
        name = f"{'beep' if ev.kind == 'tone' else 'event'} {k}"
        true = _at(truth, k)
        if true is None:
            check(False, f"{name}: extra event")
            continue
        check(ev.kind == true.kind, f"{name} kind: said {ev.kind}, is {true.kind}")
        if ev.onset is not None:
            check(
                abs(ev.onset - true.onset) <= tolerance + 1e-9,
                f"{name} onset: said {ev.onset:g} s, is {true.onset:.2f} s",
            )
        for key, value in claim.stated:
            actual = getattr(true, key)
            check(value == actual, f"{name} {key}: said {value}, is {actual or 'n/a'}")
        for word in claim.unknown:
            check(False, f"{name}: unknown attribute {_short(word, 20)!r}")
        for high, low in claim.tallies:
            check(
                _tally_holds(truth, k, (high, low)),
                f"{name} tally: said {high} high, {low} low, is {_tally_text(truth, k)}",
            )
    for k in range(len(trace.claims) + 1, len(truth) + 1):
        check(False, f"event {k} missing")
    for _ in range(trace.no_event):
        check(not truth, f"said no event, there are {len(truth)}")
    for stmt in trace.statements:
        check(_holds(stmt, truth), f"wrong: {_short(stmt[-1])!r}")
    for s in trace.repeats:
        check(False, f"repeated: {_short(s)!r}")
    for s in trace.unsupported:
        check(False, f"unsupported: {_short(s)!r}")
    return passed, total, failures


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning(message)


@register_judge("oracle")
class OracleJudge:
    """Checks synth-aqa traces against the item's ground-truth events (see the module docstring)."""

    name = "oracle"

    def __init__(self, onset_tolerance: float = ONSET_TOLERANCE) -> None:
        self.onset_tolerance = onset_tolerance

    def score_batch(self, requests: Sequence[JudgeRequest]) -> list[Verdict]:
        return [self.judge(r) for r in requests]

    def judge(self, request: JudgeRequest) -> Verdict:
        item = request.item
        if not isinstance(item, Mapping) or "events" not in item:
            _warn_once("oracle judge needs synth-aqa items with 'events'; giving neutral verdicts")
            return Verdict.neutral("oracle needs synth-aqa events")
        truth = _true_events(item["events"])
        if truth is None:
            _warn_once("oracle judge got malformed 'events'; giving neutral verdicts")
            return Verdict.neutral("malformed synth-aqa events")
        task = item.get("sub-category")
        if task not in KNOWN_TASKS:
            task = TASK_QUESTIONS.get(str(item.get("question", request.question)))
        if task is None:
            _warn_once(f"oracle judge does not know the task {item.get('sub-category')!r}; neutral verdicts")
            return Verdict.neutral(f"unknown synth-aqa task {item.get('sub-category')!r}")
        choices = list(request.choices or item.get("choices") or [])
        trace = _parse(request.think or "")

        passed, total, failures = _quality_checks(trace, truth, self.onset_tolerance)
        quality = quantize_quality(passed / total) if total else 0.0
        if failures:
            quality = min(quality, 0.9)

        consistent, why = self._consistency(task, trace, request.answer, choices)
        notes = failures[:3] + ([f"+{len(failures) - 3} more"] if len(failures) > 3 else [])
        if not total:
            notes = ["no checkable claim"]
        detail = "; ".join([why, *notes] if why else notes) or "ok"
        return Verdict(consistent=consistent, quality=quality, detail=detail)

    @staticmethod
    def _consistency(task: str, trace: _Trace, answer: str, choices: Sequence[str]) -> tuple[int, str]:
        derived = _resolve(_derive(task, trace), choices)
        if derived is None:
            return 0, "claims do not determine an answer"
        world = [c.ev for c in trace.claims]
        if "tally" in TASK_STATEMENTS.get(task, ()):
            for k, claim in enumerate(trace.claims, 1):
                for high, low in claim.tallies:
                    if not _tally_holds(world, k, (high, low)):
                        return 0, f"tally of beep {k} ({high} high, {low} low) contradicts the claims"
        for stmt in trace.statements:
            if stmt[0] in TASK_STATEMENTS.get(task, ()) and not _holds(stmt, world):
                return 0, f"{_short(stmt[-1])!r} contradicts the claims"
        for stated in trace.conclusions:
            if not match_choice(stated, derived, choices):
                return 0, f"concludes {_short(stated)!r}, claims imply {derived!r}"
        if not match_choice(answer, derived, choices):
            return 0, f"answer {_short(answer or '')!r} does not follow (claims imply {derived!r})"
        return 1, ""


# ==================================================================================================
# LLM judge: a prompted causal LM (the paper's setup: Qwen3-8B-Base)
# ==================================================================================================
#
# Two prompts per request, for a *base* model (no chat template, no few-shot examples), each ending in a
# cue. Default scoring ("logits") reads the model's probabilities of the candidate continuations after the
# cue (" yes"/" Yes" vs " no"/" No"; " 0" … " 10"), each candidate scored as the full log-probability of its
# tokens, so tokenizers that split " yes" or " 10" into several tokens work. R_c = 1 iff P(yes) > P(no);
# R_t = the expected score E[s]/10 over the renormalised 0–10 distribution, snapped to the 0.1 grid (a
# candidate's probability excludes the candidates that extend it, e.g. " 1" excludes " 10").
# scoring="generate": greedy generation of max_new_tokens and :func:`parse_consistency` /
# :func:`parse_quality` on the replies. A reply that cannot be parsed, non-finite scores, or a model error
# give ``Verdict.neutral`` (failed), a logged warning and ``failures += 1``; never an exception.

__all__ += [
    "CONSISTENCY_PROMPT",
    "DEFAULT_LLM_JUDGE",
    "LLMJudge",
    "QUALITY_PROMPT",
    "parse_consistency",
    "parse_quality",
]

DEFAULT_LLM_JUDGE = "Qwen/Qwen3-8B-Base"


def llm_judge_source(path: str | None) -> str:
    """The llm judge's model (``path`` or the paper's default), checked loadable; else a one-line ValueError
    that says what the default weighs and how to pick another."""
    from .models import check_model_source

    try:
        return check_model_source(path or DEFAULT_LLM_JUDGE)
    except ValueError as err:
        hint = (
            ""
            if path
            else f" (the llm judge defaults to the paper's {DEFAULT_LLM_JUDGE}, an 8B model of about 16 GB; "
            "--judge-model picks another causal LM)"
        )
        raise ValueError(f"{err}{hint}") from None


CONSISTENCY_PROMPT = (
    "Below are a question about an audio clip, a student's step-by-step reasoning about the clip, and the "
    "student's final answer. You cannot hear the clip. Do not judge whether the answer is correct. Judge "
    "only whether the reasoning supports the final answer: the final answer is the one that the "
    "reasoning's own observations and steps lead to, and the reasoning does not conclude something else.\n"
    "\n"
    "Question: {question}\n"
    "Choices: {choices}\n"
    "\n"
    "Reasoning:\n"
    "{think}\n"
    "\n"
    "Final answer: {answer}\n"
    "\n"
    'Does the reasoning support the final answer? Reply "yes" or "no".\n'
    "Answer (yes or no):"
)

QUALITY_PROMPT = (
    "Below are a question about an audio clip, a student's step-by-step reasoning about the clip, and the "
    "student's final answer. You cannot hear the clip. Rate the quality of the reasoning from 0 to 10, "
    "regardless of whether the final answer is correct: every step is stated clearly; the observations "
    "about the audio are specific (what is heard, when, and how it sounds); the logic from the "
    "observations to the answer is sound; nothing is repeated or irrelevant. 0 means no useful reasoning, "
    "10 means flawless reasoning.\n"
    "\n"
    "Question: {question}\n"
    "Choices: {choices}\n"
    "\n"
    "Reasoning:\n"
    "{think}\n"
    "\n"
    "Final answer: {answer}\n"
    "\n"
    "Score (0-10):"
)

PROMPTS = {"consistency": CONSISTENCY_PROMPT, "quality": QUALITY_PROMPT}
TRUNCATION_MARKER = "\n[... part of the reasoning cut ...]\n"
# candidate continuations of the cues (logits scoring): text -> label
_CANDIDATES: dict[str, dict[str, int]] = {
    "consistency": {" yes": 1, " Yes": 1, " no": 0, " No": 0},
    "quality": {f" {k}": k for k in range(11)},
}
# policy text that imitates a cue is neutralised, so a trace cannot answer for the judge
_CUE_ECHO = re.compile(r"answer\s*\(\s*yes\s+or\s+no\s*\)|score\s*\(\s*0\s*[-–]\s*10\s*\)", re.IGNORECASE)
_MAX_REPLY_CHARS = 256
_MAX_ANSWER_TOKENS = 64
_THINK_HEAD = 1 / 3  # share of the think budget kept from the start when cutting (the rest from the end)


def _fit_reply(reply: Any) -> str | None:
    """The lower-cased reply, or None when it is not a string or too long to be a short answer."""
    if not isinstance(reply, str) or len(reply) > _MAX_REPLY_CHARS:
        return None
    return reply.lower()


_REPLY_TOKEN = re.compile(r"[a-z]+|[0-9]+(?:\.[0-9]+)?|[^\sa-z0-9]")
_LABELS = {"yes": 1, "true": 1, "1": 1, "no": 0, "false": 0, "0": 0}
_ECHO_JOINERS = {"or", "and", "/", ",", "|", "-"}


def parse_consistency(reply: str) -> int | None:
    """1 / 0 for a yes / no reply (also true/false, 1/0; case and surrounding junk ignored), else None.

    The first label word decides; a label followed (through "or", "/", "," …) by the opposite label is an
    echo of the options ("yes or no", "yes no") → None. Over 256 characters → None.
    """
    text = _fit_reply(reply)
    if text is None:
        return None
    tokens = _REPLY_TOKEN.findall(text)
    first = next((i for i, t in enumerate(tokens) if t in _LABELS), None)
    if first is None:
        return None
    label = _LABELS[tokens[first]]
    for t in tokens[first + 1 :]:
        if t in _ECHO_JOINERS:
            continue
        if _LABELS.get(t, label) != label:
            return None
        break
    return label


_RANGE_ECHO = re.compile(r"\(?\b0\s*(?:-|–|to)\s*10\b\)?")
_SCORE = re.compile(
    r"(-\s*)?([0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:\s*(/)\s*([0-9]+(?:\.[0-9]+)?)|\s*(%)|([eE][+-]?[0-9]))?"
)


def parse_quality(reply: str) -> float | None:
    """The first number of the reply as a quality in [0, 1] (snapped to 0.1), else None.

    An integer or a number above 1 is on the 0–10 scale ("7" → 0.7, "7.5" → 0.8); a decimal up to 1 is a
    fraction ("0.7"); "7/10" and "70%" are ratios. Negative, above the scale, exponent notation, no ASCII
    number (NaN, "٣"), a first number after "/" ("nan/10"), over 256 characters → None. An echoed
    "(0-10)" is skipped.
    """
    text = _fit_reply(reply)
    if text is None:
        return None
    text = _RANGE_ECHO.sub(" ", text)
    m = _SCORE.search(text)
    if m is None or m.group(1) or m.group(6) or text[: m.start()].rstrip().endswith("/"):
        return None  # no number, negative, exponent, or only a denominator ("nan/10")
    number = m.group(2)
    value = float(number)
    if m.group(3):
        denominator = float(m.group(4))
        if denominator <= 0 or value > denominator:
            return None
        q = value / denominator
    elif m.group(5):
        if value > 100:
            return None
        q = value / 100
    elif "." in number and value <= 1:
        q = value
    elif value <= 10:
        q = value / 10
    else:
        return None
    return quantize_quality(q) if math.isfinite(q) else None


def _format_choices(choices: Sequence[str]) -> str:
    return "; ".join(str(c) for c in choices) if choices else "(none given)"


def _clean(text: str) -> str:
    return _CUE_ECHO.sub("[...]", text).strip()


@register_judge("llm")
class LLMJudge:
    """A prompted causal LM as the judge (see the section comment above and docs/judge.md).

    ``path``: any HF causal-LM id or folder (default: the paper's Qwen3-8B-Base); or pass a built
    ``model`` and ``tokenizer``. ``scoring``: "logits" (candidate probabilities, default) or "generate"
    (greedy ``max_new_tokens`` and parsing). ``batch_size``: prompts per forward pass (each request has
    two). ``device``/``dtype``: default CUDA in bfloat16 when available, else CPU in float32.
    ``max_prompt_tokens``: longer prompts are cut in the middle of the think text, with a marker.
    ``failures`` counts the requests that got a neutral verdict.
    """

    name = "llm"

    def __init__(
        self,
        path: str | None = None,
        *,
        model: Any = None,
        tokenizer: Any = None,
        scoring: str = "logits",
        max_new_tokens: int = 8,
        batch_size: int = 8,
        device: str | None = None,
        dtype: str | Any = None,
        max_prompt_tokens: int = 2048,
    ) -> None:
        import torch

        if scoring not in ("logits", "generate"):
            raise ValueError(f"scoring must be 'logits' or 'generate', got {scoring!r}")
        if batch_size < 1 or max_new_tokens < 1:
            raise ValueError("batch_size and max_new_tokens must be positive")
        if max_prompt_tokens < 64:
            raise ValueError("max_prompt_tokens must be at least 64")
        if model is None:
            path = llm_judge_source(path)
            from transformers import AutoModelForCausalLM

            device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            if dtype is None:
                dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
            model = AutoModelForCausalLM.from_pretrained(path, dtype=_torch_dtype(dtype)).to(device)
        else:
            if device is not None:
                model = model.to(device)
            if dtype is not None:
                model = model.to(_torch_dtype(dtype))
        if tokenizer is None:
            if path is None:
                raise ValueError("the llm judge needs a tokenizer with a given model (or a path)")
            from .models import auto_tokenizer

            tokenizer = auto_tokenizer(path)
        self.model = model.eval() if hasattr(model, "eval") else model
        self.tokenizer = tokenizer
        self.scoring = scoring
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.max_prompt_tokens = max_prompt_tokens
        self.failures = 0
        param = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
        self.device = param.device if param is not None else torch.device(device or "cpu")
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id
        self.pad_id = 0 if pad is None else int(pad)  # padded positions are masked: any id works
        eos = tokenizer.eos_token_id
        self.eos_id = None if eos is None else int(eos)
        self._candidates = {kind: self._candidate_ids(kind) for kind in PROMPTS}

    # ---------------------------------------------------------------- prompts

    def _encode(self, text: str, special: bool = True) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def _shorten(self, text: str, max_tokens: int, marker: str = TRUNCATION_MARKER) -> str:
        """``text`` cut in the middle to about ``max_tokens`` tokens (head: a third), with ``marker``."""
        ids = self._encode(text, special=False)
        if len(ids) <= max_tokens:
            return text
        keep = max(0, max_tokens - len(self._encode(marker, special=False)))
        head = int(keep * _THINK_HEAD)
        tail = keep - head
        return self._decode(ids[:head]) + marker + (self._decode(ids[-tail:]) if tail else "")

    def encode_prompt(self, request: JudgeRequest, kind: str) -> list[int]:
        """Token ids of the ``kind`` ("consistency" | "quality") prompt, at most ``max_prompt_tokens``."""
        template = PROMPTS[kind]
        fields = {
            "question": _clean(str(request.question)),
            "choices": _clean(_format_choices(request.choices)),
            "answer": self._shorten(_clean(str(request.answer)), _MAX_ANSWER_TOKENS, " [...] "),
        }
        think = _clean(str(request.think))
        budget = self.max_prompt_tokens - len(self._encode(template.format(think="", **fields)))
        ids = self._encode(template.format(think=think, **fields))
        for _ in range(4):  # re-tokenising around the cut can shift the count by a few tokens
            if len(ids) <= self.max_prompt_tokens or budget <= 0:
                break
            ids = self._encode(template.format(think=self._shorten(think, budget), **fields))
            budget -= max(1, len(ids) - self.max_prompt_tokens)
        if len(ids) > self.max_prompt_tokens:  # question or choices alone too long: keep the end (cue)
            _warn_once(
                "llm judge: a prompt is too long even without the think text; cutting it from the left"
            )
            ids = ids[-self.max_prompt_tokens :]
        return ids

    def _candidate_ids(self, kind: str) -> list[tuple[tuple[int, ...], int]]:
        """(token ids, label) of each candidate continuation of the ``kind`` cue."""
        cue = PROMPTS[kind].rsplit("\n", 1)[-1]
        ctx = self._encode(cue, special=False)
        out = []
        for text, label in _CANDIDATES[kind].items():
            whole = self._encode(cue + text, special=False)
            ids = whole[len(ctx) :] if whole[: len(ctx)] == ctx and len(whole) > len(ctx) else None
            out.append((tuple(ids or self._encode(text, special=False)), label))
        return out

    # ---------------------------------------------------------------- model calls

    def _batch(self, seqs: Sequence[Sequence[int]]) -> tuple[Any, Any, Any]:
        """Left-padded input ids, attention mask and position ids on the model's device."""
        import torch

        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, s in enumerate(seqs):
            ids[row, width - len(s) :] = torch.tensor(list(s), dtype=torch.long)
            mask[row, width - len(s) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return ids.to(self.device), mask.to(self.device), positions.to(self.device)

    def _generate(self, prompts: Sequence[Sequence[int]]) -> list[str]:
        """Greedy replies (decoded new tokens) for one batch of prompt ids."""
        import torch
        from transformers import GenerationConfig

        ids, mask, _ = self._batch(prompts)
        config = GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            pad_token_id=self.pad_id,
            eos_token_id=self.eos_id,
        )
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
        return [self.tokenizer.decode(row, skip_special_tokens=True) for row in out[:, ids.shape[1] :]]

    def _candidate_logprobs(self, prompts: Sequence[Sequence[int]], kind: str) -> list[list[float]]:
        """log P(candidate | prompt) for each candidate of ``kind`` (rows: prompts), one batch.

        Each prompt is extended by the longest candidate contexts (usually one), so one forward pass
        gives every candidate token's probability; only the last positions' logits are computed.
        """
        import torch

        cands = [c for c, _ in self._candidates[kind]]
        contexts = {c[:j] for c in cands for j in range(1, len(c))}
        exts = [x for x in contexts if not any(len(y) > len(x) and y[: len(x)] == x for y in contexts)] or [
            ()
        ]
        ext_of = [next(e for e in exts if e[: len(c) - 1] == c[:-1]) for c in cands]
        seqs = [list(p) + list(e) for p in prompts for e in exts]
        keep = max(len(e) for e in exts) + 1
        ids, mask, positions = self._batch(seqs)
        inputs = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
        with torch.inference_mode():
            try:
                logits = self.model(**inputs, logits_to_keep=keep).logits[:, -keep:]
            except TypeError:  # an architecture without logits_to_keep: all positions
                logits = self.model(**inputs).logits[:, -keep:]
        logp = torch.log_softmax(logits.float(), dim=-1).cpu()
        rows: list[list[float]] = []
        for i in range(len(prompts)):
            scores = []
            for c, e in zip(cands, ext_of, strict=True):
                row = i * len(exts) + exts.index(e)
                start = keep - len(e) - 1  # kept index of the logits after the prompt's last token
                scores.append(sum(float(logp[row, start + j, t]) for j, t in enumerate(c)))
            rows.append(scores)
        return rows

    def _run(self, prompts: list[list[int]], kind: str) -> list[Any]:
        """Replies (generate) or candidate log-probs (logits) per prompt; a failed batch → error strings."""
        results: list[Any] = [None] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))  # similar lengths batch together
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            batch = [prompts[i] for i in chunk]
            try:
                out = (
                    self._generate(batch)
                    if self.scoring == "generate"
                    else self._candidate_logprobs(batch, kind)
                )
                if len(out) != len(batch):
                    raise RuntimeError(f"{len(out)} results for {len(batch)} prompts")
            except Exception as exc:  # noqa: BLE001 - a judge error must never stop training
                log.warning(
                    "llm judge: %s batch of %d failed: %s: %s", kind, len(batch), type(exc).__name__, exc
                )
                _free_cuda_memory()
                out = [_ModelError(f"{type(exc).__name__}: {str(exc)[:200]}")] * len(batch)
            for i, r in zip(chunk, out, strict=True):
                results[i] = r
        return results

    # ---------------------------------------------------------------- readouts

    def _readout(self, kind: str, result: Any) -> tuple[float | None, str]:
        """(score or None, detail): consistency 1/0 or quality in [0, 1] from one prompt's result."""
        if isinstance(result, _ModelError):
            return None, f"model error ({result})"
        if isinstance(result, str):
            value = parse_consistency(result) if kind == "consistency" else parse_quality(result)
            return value, f"{kind} reply {result[:60]!r}"
        probs = _exclusive_probs([c for c, _ in self._candidates[kind]], result)
        labels = [label for _, label in self._candidates[kind]]
        total = sum(probs)
        if not (math.isfinite(total) and total > 0):
            return None, f"{kind}: no probability on the candidates"
        if kind == "consistency":
            p_yes = sum(p for p, label in zip(probs, labels, strict=True) if label == 1) / total
            return float(p_yes > 0.5), f"p(yes)={p_yes:.2f}"
        expected = sum(p * label for p, label in zip(probs, labels, strict=True)) / total
        return quantize_quality(expected / 10), f"E[score]={expected:.1f}"

    def score_batch(self, requests: Sequence[JudgeRequest]) -> list[Verdict]:
        verdicts: list[Verdict | None] = [None] * len(requests)
        todo = []
        for i, r in enumerate(requests):
            if not str(r.think or "").strip():
                verdicts[i] = Verdict(consistent=0, quality=0.0, detail="empty think")
            else:
                todo.append(i)
        if todo:
            results = {
                kind: self._run([self.encode_prompt(requests[i], kind) for i in todo], kind)
                for kind in PROMPTS
            }
            for n, i in enumerate(todo):
                c, c_detail = self._readout("consistency", results["consistency"][n])
                q, q_detail = self._readout("quality", results["quality"][n])
                if c is None or q is None:
                    self.failures += 1
                    detail = f"llm judge failed: {c_detail}; {q_detail}"
                    log.warning("%s (failures so far: %d)", detail, self.failures)
                    verdicts[i] = Verdict.neutral(detail=detail)
                else:
                    verdicts[i] = Verdict(consistent=int(c), quality=q, detail=f"{c_detail}; {q_detail}")
        return [v for v in verdicts if v is not None]


class _ModelError(str):
    """The error message standing in for a prompt's result when its batch raised."""


def _exclusive_probs(cands: Sequence[tuple[int, ...]], logprobs: Sequence[float]) -> list[float]:
    """P of each candidate minus the candidates that extend it (" 1" excludes " 10"), clipped at 0."""
    probs = [math.exp(lp) if math.isfinite(lp) else (0.0 if lp == -math.inf else math.nan) for lp in logprobs]
    out = []
    for c, p in zip(cands, probs, strict=True):
        longer = [k for k, d in enumerate(cands) if len(d) > len(c) and d[: len(c)] == c]
        direct = [
            k for k in longer if not any(cands[k][: len(cands[j])] == cands[j] for j in longer if j != k)
        ]
        out.append(max(0.0, p - sum(probs[k] for k in direct)) if math.isfinite(p) else math.nan)
    return out


def _torch_dtype(dtype: Any) -> Any:
    import torch

    return getattr(torch, dtype) if isinstance(dtype, str) else dtype


def _free_cuda_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
