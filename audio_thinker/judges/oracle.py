"""The oracle judge (synth-aqa): checks the facts a trace states against the item's ground-truth
``events``. Pure Python regular expressions, no model.

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
* each conclusion ``So the answer is X`` in the trace that differs from the answer the trace's own claims
  imply (the R_c derivation above) fails once; a conclusion that follows them is no check (nothing is
  added for it), nor is one where the claims imply no answer. It is compared with the claims, never with
  the truth, so quality still does not depend on the answer's correctness: a trace that follows a
  mis-heard claim to a wrong answer loses what the claim costs and 1 for each derivation carried from it.

**The grade** (issue #23: a wrong claim inside a right trace must cost visibly, and a derivation that
contradicts the trace's own claims more than a slip). Each failed check weighs by what kind of error it
is (:data:`SEVERITY`):

=================  ======  ==============================================================================
kind               weight  failed checks of that kind
=================  ======  ==============================================================================
``claim``          3       a mis-heard event: its kind, onset, a stated attribute, an unknown attribute
                           word, an extra or a missing event, a wrong no-event sentence
``contradiction``  6       a derivation sentence, tally or conclusion that is false of the trace's *own*
                           claims (it contradicts what the trace says it heard)
``carried``        1       a derivation sentence or tally false of the true events but true of the
                           claims: it follows a mis-heard claim, which already cost
``filler``         1       an unsupported or repeated sentence
=================  ======  ==============================================================================

quality = passed / (passed + Σ weights of the failed checks), rounded half up to 0.1, and capped at 0.9
when any check failed (1.0 means a flawless trace); with every weight 1 it would be the earlier grade,
passed / total, but for the conclusion check, which the earlier grade did not have. An empty think has no check → 0.0; gibberish has only failing checks → 0.0. On the
gold traces' sizes (a pitch-pattern trace has 12 checks, a one-tone pitch-level trace 5): one filler
sentence 0.9, one mis-heard length 0.8, one contradicted step 0.6; on a pitch-level trace a mis-heard
length 0.6 and a mis-heard pitch under the right conclusion (a claim and a contradiction) 0.3.

**The first flawed step** (:meth:`OracleJudge.first_flawed_step`, what a simulated rater marks): the first
step (sentence) at which the trace so far fails one of these checks; an event left out counts at the step after
the last event claim.

**Non-synth items** (no ``events``, malformed ``events``, or a task the oracle does not know, looked up
by ``sub-category`` and else by the question text) give ``Verdict.neutral`` with ``failed=True``; each
kind of problem logs one warning per process. Arbitrary text never raises.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .. import synth
from ..rewards import answer_tokens, match_choice, quantize_quality
from .base import JudgeRequest, Verdict, warn_once
from .oracle_grammar import Event, ParsedTrace, Statement, Tally, parse_trace

__all__ = ["ONSET_TOLERANCE", "SEVERITY", "OracleJudge"]

log = logging.getLogger(__name__)

_MISSING_EVENT = re.compile(r"event \d+ missing")
"""The failure :func:`_quality_checks` names for an event a trace leaves out (``first_flawed_step`` places it)."""

# --------------------------------------------------------------------------------------------------
# Tasks

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
SEVERITY = {"claim": 3, "contradiction": 6, "carried": 1, "filler": 1}
"""How much a failed quality check weighs, by kind of error (the module docstring's grade)."""


# --------------------------------------------------------------------------------------------------
# Evaluation


def _true_events(raw: Any) -> list[Event] | None:
    """The item's events as Event, or None when they are malformed."""
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
            Event(
                kind,
                float(onset),
                get("pitch") if kind == "tone" else None,
                get("length") if kind == "tone" else None,
                get("level"),
                direction if kind == "chirp" else None,
            )
        )
    return out


def _pitch_counts(world: list[Event]) -> tuple[int, int] | None:
    tones = [e for e in world if e.kind == "tone"]
    if any(e.pitch is None for e in tones):
        return None
    return sum(e.pitch == "high" for e in tones), sum(e.pitch == "low" for e in tones)


def _tally_holds(world: list[Event], k: int, tally: Tally) -> bool:
    """Whether the tally's high and low are the numbers of high and low beeps among events 1..k of ``world``."""
    return 1 <= k <= len(world) and _pitch_counts(world[:k]) == (tally.high, tally.low)


def _at(world: list[Event], k: int) -> Event | None:
    return world[k - 1] if 1 <= k <= len(world) else None


def _comparison(a: str | None, b: str | None) -> str | None:
    """'higher' if pitch b is above a, 'lower' if below, None if equal or unknown."""
    if a is None or b is None or a == b:
        return None
    return "higher" if PITCH_ORDER[b] > PITCH_ORDER[a] else "lower"


def _holds(stmt: Statement, world: list[Event]) -> bool:
    """Whether a derivation statement is true of ``world`` (unknown attributes → False)."""
    kind = stmt.kind
    if kind == "count":
        return stmt.number == (sum(e.kind == "tone" for e in world) if stmt.tones_only else len(world))
    if kind in ("high", "low", "diff"):
        counts = _pitch_counts(world)
        if counts is None:
            return False
        high, low = counts
        if kind == "high":
            return stmt.number == high
        if kind == "low":
            return stmt.number == low
        if stmt.difference is None:
            return False
        a, b, c = stmt.difference
        return a == max(high, low) and b == min(high, low) and a - b == c
    if kind == "compare":  # "<pitch> is <relation> than <other_pitch>": beep 2 vs beep 1
        first, second = _at(world, 1), _at(world, 2)
        return (
            first is not None
            and second is not None
            and (first.pitch, second.pitch) == (stmt.other_pitch, stmt.pitch)
            and _comparison(stmt.other_pitch, stmt.pitch) == stmt.relation
        )
    if kind in ("compare_beeps", "step"):
        # compare_beeps: beep <beep> is <relation> than beep <other_beep>;
        # step: from beep <other_beep> to beep <beep> it goes <relation>
        ei, ej = _at(world, stmt.beep or 0), _at(world, stmt.other_beep or 0)
        if ei is None or ej is None:
            return False
        rel = _comparison(ej.pitch, ei.pitch)
        return rel is not None and stmt.relation in (rel, {"higher": "up", "lower": "down"}[rel])
    if kind == "odd":  # <number> beeps are <other_pitch>, the <pitch> one is beep <beep>
        target = _at(world, stmt.beep or 0)
        others = [e for i, e in enumerate(world, 1) if i != stmt.beep]
        return (
            target is not None
            and stmt.other_pitch != stmt.pitch
            and target.pitch == stmt.pitch
            and all(e.pitch == stmt.other_pitch for e in others)
            and stmt.number == len(others)
        )
    if kind == "longest":
        target = _at(world, stmt.beep or 0)
        others = [e for i, e in enumerate(world, 1) if i != stmt.beep]
        return (
            target is not None
            and target.length == "long"
            and all(e.length is not None and e.length != "long" for e in others)
        )
    return False


def _all_same(values: list[str | None]) -> str | None:
    return values[0] if values and values[0] is not None and all(v == values[0] for v in values) else None


def _derive(task: str, trace: ParsedTrace) -> str | None:
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


def _tally_text(world: list[Event], k: int) -> str:
    counts = _pitch_counts(world[:k])
    return f"{counts[0]} high, {counts[1]} low" if counts else "undetermined"


def _quality_checks(
    trace: ParsedTrace,
    truth: list[Event],
    derived: str | None,
    choices: Sequence[str],
    tolerance: float = ONSET_TOLERANCE,
) -> tuple[int, int, list[str]]:
    """(passed, weight of the failed checks, failure messages) of the quality checks.

    ``derived``: the answer the trace's claims imply (resolved against ``choices``), None if none.
    """
    passed = failed = 0
    failures: list[str] = []
    claimed = [c.ev for c in trace.claims]

    def check(ok: bool, message: str, kind: str = "claim") -> None:
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += SEVERITY[kind]
            failures.append(message)

    def derivation(true_of_claims: bool) -> str:
        """The kind of a false derivation: it follows the claims, or contradicts them."""
        return "carried" if true_of_claims else "contradiction"

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
        for tally in claim.tallies:
            check(
                _tally_holds(truth, k, tally),
                f"{name} tally: said {tally.high} high, {tally.low} low, is {_tally_text(truth, k)}",
                derivation(_tally_holds(claimed, k, tally)),
            )
    for k in range(len(trace.claims) + 1, len(truth) + 1):
        check(False, f"event {k} missing")
    for _ in range(trace.no_event):
        check(not truth, f"said no event, there are {len(truth)}")
    for stmt in trace.statements:
        check(_holds(stmt, truth), f"wrong: {_short(stmt.sentence)!r}", derivation(_holds(stmt, claimed)))
    for stated in trace.conclusions:  # a penalty only: a conclusion that follows adds no passed check
        if derived is not None and not match_choice(stated, derived, choices):
            check(False, "the conclusion does not follow from the claims", "contradiction")
    for s in trace.repeats:
        check(False, f"repeated: {_short(s)!r}", "filler")
    for s in trace.unsupported:
        check(False, f"unsupported: {_short(s)!r}", "filler")
    return passed, failed, failures


class OracleJudge:
    """Checks synth-aqa traces against the item's ground-truth events (see the module docstring)."""

    name = "oracle"

    def __init__(self, onset_tolerance: float = ONSET_TOLERANCE) -> None:
        self.onset_tolerance = onset_tolerance

    def score_batch(self, requests: Sequence[JudgeRequest]) -> list[Verdict]:
        return [self.judge(r) for r in requests]

    @staticmethod
    def _world(request: JudgeRequest) -> tuple[list[Event], str, list[str]] | Verdict:
        """The item's true events, task and choices, or the neutral verdict saying why there are none."""
        item = request.item
        if not isinstance(item, Mapping) or "events" not in item:
            warn_once(log, "oracle judge needs synth-aqa items with 'events'; giving neutral verdicts")
            return Verdict.neutral("oracle needs synth-aqa events")
        truth = _true_events(item["events"])
        if truth is None:
            warn_once(log, "oracle judge got malformed 'events'; giving neutral verdicts")
            return Verdict.neutral("malformed synth-aqa events")
        task = item.get("sub-category")
        if task not in KNOWN_TASKS:
            task = TASK_QUESTIONS.get(str(item.get("question", request.question)))
        if task is None:
            warn_once(
                log, f"oracle judge does not know the task {item.get('sub-category')!r}; neutral verdicts"
            )
            return Verdict.neutral(f"unknown synth-aqa task {item.get('sub-category')!r}")
        return truth, task, list(request.choices or item.get("choices") or [])

    def first_flawed_step(self, request: JudgeRequest, ends: Sequence[int]) -> int | None:
        """The index of the first step of ``request.think`` that goes wrong (what a rater marks as the first
        flawed sentence), or None when no step does or the item has no ground truth.

        ``ends``: where each step ends in the think text (character offsets, ascending). Step k is the first
        flawed one when the text up to its end fails a quality check (a mis-heard claim, a wrong derivation,
        tally or conclusion, a repeat, an unsupported sentence) and the text up to step k - 1 fails none; an
        event the trace leaves out counts at the first step after its last event claim (the trace moved on
        without it), else at the last step. A trace whose steps all pass may still be inconsistent (its
        answer does not follow): that is :meth:`judge`'s R_c, not a step.
        """
        world = self._world(request)
        if isinstance(world, Verdict) or not ends:
            return None
        truth, task, choices = world
        think = request.think or ""
        claims, first_wrong = [], None
        for k, end in enumerate(ends):
            trace = parse_trace(think[:end])
            derived = _resolve(_derive(task, trace), choices)
            *_, failures = _quality_checks(trace, truth, derived, choices, self.onset_tolerance)
            claims.append(len(trace.claims))
            if first_wrong is None and any(not _MISSING_EVENT.fullmatch(f) for f in failures):
                first_wrong = k
        if claims[-1] < len(truth):  # an event left out
            after_last_claim = claims.index(claims[-1]) + 1 if claims[-1] else 0
            gap = min(after_last_claim, len(ends) - 1)
            return gap if first_wrong is None else min(first_wrong, gap)
        return first_wrong

    def judge(self, request: JudgeRequest) -> Verdict:
        world = self._world(request)
        if isinstance(world, Verdict):
            return world
        truth, task, choices = world
        trace = parse_trace(request.think or "")

        derived = _resolve(_derive(task, trace), choices)
        passed, failed, failures = _quality_checks(trace, truth, derived, choices, self.onset_tolerance)
        quality = quantize_quality(passed / (passed + failed)) if passed + failed else 0.0
        if failures:
            quality = min(quality, 0.9)

        consistent, why = self._consistency(task, trace, derived, request.answer, choices)
        notes = failures[:3] + ([f"+{len(failures) - 3} more"] if len(failures) > 3 else [])
        if not passed + failed:
            notes = ["no checkable claim"]
        detail = "; ".join([why, *notes] if why else notes) or "ok"
        return Verdict(consistent=consistent, quality=quality, detail=detail)

    @staticmethod
    def _consistency(
        task: str, trace: ParsedTrace, derived: str | None, answer: str, choices: Sequence[str]
    ) -> tuple[int, str]:
        if derived is None:
            return 0, "claims do not determine an answer"
        world = [c.ev for c in trace.claims]
        if "tally" in TASK_STATEMENTS.get(task, ()):
            for k, claim in enumerate(trace.claims, 1):
                for tally in claim.tallies:
                    if not _tally_holds(world, k, tally):
                        return (
                            0,
                            f"tally of beep {k} ({tally.high} high, {tally.low} low) contradicts the claims",
                        )
        for stmt in trace.statements:
            if stmt.kind in TASK_STATEMENTS.get(task, ()) and not _holds(stmt, world):
                return 0, f"{_short(stmt.sentence)!r} contradicts the claims"
        for stated in trace.conclusions:
            if not match_choice(stated, derived, choices):
                return 0, f"concludes {_short(stated)!r}, claims imply {derived!r}"
        if not match_choice(answer, derived, choices):
            return 0, f"answer {_short(answer or '')!r} does not follow (claims imply {derived!r})"
        return 1, ""
