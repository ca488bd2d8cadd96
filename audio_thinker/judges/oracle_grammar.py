"""The trace grammar the oracle judge reads, and its parser (the rules: :mod:`.oracle`'s docstring).

:func:`parse_trace` turns a think text into a :class:`ParsedTrace`: the claimed events (a :class:`Claim`
each, with its stated attributes and running :class:`Tally` s), the no-event sentences, the derivation
:class:`Statement` s, the repeated, concluding and unsupported sentences. Pure Python regular expressions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..rewards import sentences

__all__ = [
    "RE_TALLY",
    "Claim",
    "Event",
    "ParsedTrace",
    "Statement",
    "Tally",
    "parse_trace",
    "trace_sentences",
]

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
_END_MARKS = ".!?;"
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
RE_TALLY = re.compile(rf"\( ?{_INT} ?(high|low)s? ?(?:, and |, | and | ?/ ?| )?{_INT} ?(high|low)s? ?\)")
"""A running tally, "(2 high, 1 low)": groups (number, high | low, number, high | low)."""
_RE_PAREN = re.compile(r"\([^()]*\)?")
_RE_LONGEST = re.compile(
    rf"^(?:the )?(?:long|longest|longer) (?:one|beep) is beep {_INT}$|^beep {_INT} is the (?:long|longest)(?: one)?$"
)
_RE_COMPARE = re.compile(rf"^{_PITCH} is (higher|lower) than {_PITCH}(?: in pitch)?$")
_RE_COMPARE_BEEPS = re.compile(rf"^beep {_INT} is (higher|lower)(?: in pitch)? than beep {_INT}$")
_RE_CONCLUSION = re.compile(r"^(?:(?:so|thus|therefore|hence),? )?the answer is:? (.+)$")


@dataclass
class Event:
    """An event, claimed or true; None marks an attribute that was not stated / does not apply."""

    kind: str | None
    onset: float | None = None
    pitch: str | None = None
    length: str | None = None
    level: str | None = None
    direction: str | None = None


@dataclass(frozen=True)
class Tally:
    """A running tally in a beep claim, as stated: the high and low beeps up to and including this one."""

    high: int
    low: int


@dataclass(frozen=True)
class Statement:
    """A derivation sentence, parsed: its ``kind`` and the facts it states (the fields its kind uses).

    ``kind``: count | high | low | diff | step | odd | longest | compare | compare_beeps.
    """

    kind: str
    sentence: str
    number: int | None = None  # count: "that is N beeps"; high / low: "high beeps: N"; odd: the N others
    tones_only: bool = False  # count: beeps / tones counted (else events / sounds)
    difference: tuple[int, int, int] | None = None  # diff: "a - b = c" as (a, b, c)
    beep: int | None = None  # longest, odd: "beep k"; compare_beeps: "beep k is …"; step: "to beep k"
    other_beep: int | None = None  # compare_beeps: "… than beep j"; step: "from beep j"
    relation: str | None = None  # compare, compare_beeps: higher | lower; step: up | down
    pitch: str | None = None  # compare: "<pitch> is higher than …"; odd: the odd beep's pitch
    other_pitch: str | None = None  # compare: "… than <pitch>"; odd: the other beeps' pitch


@dataclass
class Claim:
    """One event sentence: the claimed event, its stated attributes in order, unknown words, tallies."""

    ev: Event
    stated: list[tuple[str, str]] = field(default_factory=list)  # (attribute, value) in order
    unknown: list[str] = field(default_factory=list)
    tallies: list[Tally] = field(default_factory=list)


@dataclass
class ParsedTrace:
    """What a think text says, sentence by sentence (see :func:`parse_trace`)."""

    claims: list[Claim] = field(default_factory=list)
    no_event: int = 0
    statements: list[Statement] = field(default_factory=list)
    repeats: list[str] = field(default_factory=list)
    conclusions: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)


def trace_sentences(text: str) -> list[str]:
    """The trace's sentences (:func:`rewards.sentences`) without their end marks, normalised for the
    grammar, and split further before every known sentence start (a missing period is tolerated)."""
    out = []
    for sentence in sentences(text.lower().replace("−", "-").replace("–", "-")):
        chunk = _SPACES.sub(" ", sentence.rstrip(_END_MARKS)).strip()
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


def _split_tallies(s: str) -> tuple[str, list[Tally]]:
    """The sentence without its running tallies, and the tallies."""
    tallies: list[Tally] = []

    def take(m: re.Match[str]) -> str:
        a, word_a, b, word_b = m.groups()
        if word_a == word_b:  # "(1 high, 2 high)" is no tally
            return m.group(0)
        tallies.append(Tally(int(a), int(b)) if word_a == "high" else Tally(int(b), int(a)))
        return " "

    rest = RE_TALLY.sub(take, s)
    if tallies:
        rest = re.sub(r" ?: ?", ": ", _SPACES.sub(" ", rest)).replace(" ,", ",").strip(" ,:")
    return rest, tallies


def _tone_claim(attrs: str | None, tallies: list[Tally]) -> Claim:
    claim = Claim(Event("tone"), tallies=tallies)
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


def _event_desc(desc: str) -> Claim | None:
    if _RE_TONE_DESC.match(desc):
        return Claim(Event("tone"))
    if _RE_NOISE_DESC.match(desc):
        return Claim(Event("noise"))
    m = _RE_CHIRP_DESC.match(desc)
    if m:
        word = m.group(2) or {"rising": "up", "upward": "up", "falling": "down", "downward": "down"}.get(
            m.group(1) or ""
        )
        claim = Claim(Event("chirp", direction=word))
        if word:
            claim.stated.append(("direction", word))
        return claim
    return None


def parse_trace(text: str) -> ParsedTrace:
    """The claims, statements and other sentences of a think text; never raises."""
    trace = ParsedTrace()
    seen: set[str] = set()
    for s in trace_sentences(text):
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
        kind: str | None = None
        facts: dict[str, Any] = {}
        if _RE_NO_EVENT.match(s):
            kind = "no_event"
        elif (m := _RE_COUNT.match(s)) and (n := _number(m.group(1))) is not None:
            kind, facts = "count", {"number": n, "tones_only": m.group(2).startswith(("beep", "tone"))}
        elif m := _RE_HL.match(s):
            kind, facts = m.group(1), {"number": int(m.group(2))}
        elif m := _RE_DIFF.match(s):
            kind, facts = "diff", {"difference": (int(m.group(1)), int(m.group(2)), int(m.group(3)))}
        elif m := _RE_STEP.match(s):
            word = m.group(3) or {"rises": "up", "falls": "down"}[m.group(4)]
            kind, facts = "step", {"other_beep": int(m.group(1)), "beep": int(m.group(2)), "relation": word}
        elif m := _RE_ODD.match(s):
            kind = "odd"
            facts = {"number": _number(m.group(1)), "other_pitch": m.group(2), "beep": int(m.group(3)),
                     "pitch": m.group(4)}  # fmt: skip
        elif m := _RE_ODD_NAMED.match(s):
            kind = "odd"
            facts = {"number": _number(m.group(1)), "other_pitch": m.group(2), "beep": int(m.group(4)),
                     "pitch": m.group(3)}  # fmt: skip
        elif m := _RE_LONGEST.match(s):
            kind, facts = "longest", {"beep": int(m.group(1) or m.group(2))}
        elif m := _RE_COMPARE.match(s):
            kind, facts = "compare", {"pitch": m.group(1), "relation": m.group(2), "other_pitch": m.group(3)}
        elif m := _RE_COMPARE_BEEPS.match(s):
            kind = "compare_beeps"
            facts = {"beep": int(m.group(1)), "relation": m.group(2), "other_beep": int(m.group(3))}
        if kind is None:
            trace.unsupported.append(s)
        elif s in seen:
            trace.repeats.append(s)
        else:
            seen.add(s)
            if kind == "no_event":
                trace.no_event += 1
            else:
                trace.statements.append(Statement(kind, s, **facts))
    return trace
