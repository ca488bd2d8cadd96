"""A realistic, imperfect teacher for synth-aqa: the traces a flawed base is warm-started on (issue #16).

The paper's bases (Qwen2-Audio, Qwen2.5-Omni at 55-66% on MMAU) reason often unhelpfully and
inconsistently; GRPO with R_c and R_t has something to fix only if the base does. The gold teacher of
:mod:`audio_thinker.synth` never errs, so a base trained on it answers 98% in think mode. This teacher
writes the trace a fallible annotator would, with documented flaw rates (:class:`TeacherConfig`):

**Random flaws** (any think trace, independently per example):

* ``slip_rate`` — a perception slip: one claim is mis-heard (a pitch, a length, a loudness, a sound kind,
  or a beep missed) and the trace follows it to the answer those claims imply, which is wrong. The oracle
  finds it *consistent* (R_c = 1 would be earned if it were right) but wrong, and R_t falls.
* ``inconsistent_rate`` — claims and derivation are right but the trace concludes a different choice:
  the answer contradicts its own claims (oracle R_c = 0; wrong).
* ``ramble_rate`` — 2-3 filler sentences ("Let me listen again.", "Hmm, wait.") and, where the task has
  one, the derivation repeated: the oracle's R_t counts each as a failed check (quality about 0.6-0.8);
  the answer is unaffected.

Flaws drawn at random leave the argmax on the gold path: a model trained on them still decodes gold
traces greedily. **Systematic flaws** make greedy decoding err where a real base errs: keyed on a
property of the item, the teacher takes the flawed path with probability ``systematic_rate`` (above 0.5,
so the flawed continuation is the argmax; below 1, so sampling at temperature 1 still finds the right
one). Each is a single, deterministic wrong turn at one place in the trace:

==================  ==========  =========================================  ==============================
name                task        when (share of the task's items)           what the teacher does
==================  ==========  =========================================  ==============================
middle_heard_low    pitch_lvl   the tone is middle (1/3)                   hears it low (consistent, wrong)
quiet_heard_loud    loudness    the tone is quiet and short (1/4)          hears it loud (consistent, wrong)
lost_count          count       more than four beeps (1/3)                 stops listing after beep 4 and
                                                                           answers 4 (wrong; consistent
                                                                           when 4 is a choice)
middle_compare      compare     the second tone is middle (1/3)            writes "Middle is <wrong> than
                                                                           X" and follows it
                                                                           (inconsistent, wrong)
fifth_beep_flip     hl_diff     five or six beeps (1/2)                    mis-hears beep 5 (high <-> low);
                                                                           tallies follow (wrong but for
                                                                           1 in 10; consistent when the
                                                                           answer is a choice)
middle_last_step    pattern     the third tone is middle (1/3)             the second step repeats the
                                                                           first step's direction
                                                                           (inconsistent, wrong)
middle_odd_shift    odd_one     the odd tone is middle (1/3)               names the neighbouring beep
                                                                           (inconsistent, wrong)
long_last_ramble    longest     the long beep is the third (1/3)           rambles (low R_t, right answer)
==================  ==========  =========================================  ==============================

**Flaws that leave the answer right** (issue #23: the paper's how-to-think premise, that a base often
reaches right answers through reasoning that does not support them, and that the quality of its reasoning
varies apart from correctness). Also keyed on what is heard, at ``systematic_rate``, on items no flaw
above is keyed on; each one keeps the right answer:

=====================  ==========  ===================================  ===================================
name                   task        when (share of the task's items)     what the teacher does
=====================  ==========  ===================================  ===================================
chirp_heard_flipped    sound_type  a chirp sweeping down (1/8)          hears it sweep up (consistent,
                                                                        right; a wrong claim)
high_heard_low         pitch_lvl   the tone is high and long (1/6)      claims low, answers high
                                                                        (inconsistent, right)
long_heard_short       pitch_lvl   the tone is low and long (1/6)       claims short (consistent, right;
                                                                        a wrong claim)
loud_heard_quiet       loudness    the tone is loud and long (1/4)      claims quiet, answers loud
                                                                        (inconsistent, right)
count_heard_long       count       three beeps (1/6)                    claims beep 2 long (consistent,
                                                                        right; a wrong claim)
diff_swapped           hl_diff     four beeps, unequal counts (~1/6)    writes "small - big = d"
                                                                        (inconsistent, right)
hl_heard_long          hl_diff     three beeps (1/4)                    claims beep 1 long (consistent,
                                                                        right; a wrong claim)
pattern_overall_slip   pattern     the first tone is middle (1/3)       adds "From beep 1 to beep 3 it
                                                                        goes <the wrong way>." before the
                                                                        two right steps (inconsistent,
                                                                        right)
pattern_heard_long     pattern     rising or falling (1/3)              claims beep 2 long (consistent,
                                                                        right; a wrong claim)
odd_count_slip         odd_one     the common tone is middle (1/3)      counts every beep as the common
                                                                        ones ("Four beeps are middle")
                                                                        (inconsistent, right)
odd_heard_long         odd_one     neither tone is middle (1/3)         claims the odd beep long
                                                                        (consistent, right; a wrong claim)
=====================  ==========  ===================================  ===================================

``right_slip_rate`` — at random, a claim that does not decide the answer is mis-heard: one onset said
0.4 s off (consistent, right; R_t falls). Traces without a "Beep k at T s" onset are left as they are (odd
one out, longest, and sound_type, whose "At T s: …" is not matched: the shipped base was built so).

**Direct answers** (no-think targets) are the gold answer: the teacher perceives well. How many of them a
difficulty keeps is ``direct_share`` (the rest are shown with a trace instead): compositional (hard)
questions mostly come with a rationale, so the base's direct answers stay weak there and strong on
perception, and thinking is worth something on hard items and can cost something on easy ones (a
middle tone is answered right directly and wrong, more often than not, through a trace).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from . import synth

SYSTEMATIC_FLAWS = (
    "middle_heard_low",
    "quiet_heard_loud",
    "lost_count",
    "middle_compare",
    "fifth_beep_flip",
    "middle_last_step",
    "middle_odd_shift",
    "long_last_ramble",
)
RIGHT_ANSWER_FLAWS = (
    "chirp_heard_flipped",
    "high_heard_low",
    "long_heard_short",
    "loud_heard_quiet",
    "count_heard_long",
    "diff_swapped",
    "hl_heard_long",
    "pattern_overall_slip",
    "pattern_heard_long",
    "odd_count_slip",
    "odd_heard_long",
)
"""The keyed flaws that keep the answer right (the module docstring's second table)."""
ALL_FLAWS = SYSTEMATIC_FLAWS + RIGHT_ANSWER_FLAWS
ONSET_SLIP_SECONDS = 0.4
FILLERS = (
    "Let me listen again.",
    "Hmm, wait.",
    "I am not sure about that one.",
    "Let me think.",
    "Maybe I missed something.",
)
_OPPOSITE = {"low": "high", "high": "low", "middle": "low"}


@dataclass
class TeacherConfig:
    """Flaw rates of the teacher (see the module docstring); ``gold()`` is the perfect teacher."""

    slip_rate: float = 0.08
    inconsistent_rate: float = 0.06
    ramble_rate: float = 0.15
    right_slip_rate: float = 0.08
    systematic_rate: float = 0.8  # 0.7 in it1: greedy took too few keyed flaws (docs/fidelity.md)
    systematic: tuple[str, ...] = ALL_FLAWS
    direct_share: dict = field(default_factory=lambda: {"easy": 1.0, "medium": 1.0, "hard": 0.05})

    @classmethod
    def gold(cls) -> TeacherConfig:
        return cls(
            slip_rate=0.0,
            inconsistent_rate=0.0,
            ramble_rate=0.0,
            right_slip_rate=0.0,
            systematic_rate=0.0,
            systematic=(),
        )

    def __post_init__(self) -> None:
        self.systematic = tuple(self.systematic)
        if bad := [s for s in self.systematic if s not in ALL_FLAWS]:
            raise ValueError(f"unknown systematic flaw(s) {bad}; known: {', '.join(ALL_FLAWS)}")
        for name in ("slip_rate", "inconsistent_rate", "ramble_rate", "right_slip_rate", "systematic_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass
class Target:
    """A think target: the trace, the answer it ends in, and the flaws it carries (empty: gold)."""

    trace: str
    answer: str
    flaws: list[str]


def systematic_flaw(item: dict) -> str | None:
    """The keyed flaw (:data:`ALL_FLAWS`) for this item's properties (None when none applies)."""
    task = item["sub-category"]
    events = item["events"]
    tones = [e for e in events if e["kind"] == "tone"]
    pitches = [e["pitch"] for e in tones]
    lengths = [e["length"] for e in tones]
    if task == "sound_type":
        chirp = events[0] if len(events) == 1 and events[0]["kind"] == "chirp" else None
        return "chirp_heard_flipped" if chirp and chirp["f_end"] < chirp["f_start"] else None
    if task == "pitch_level":
        if pitches == ["middle"]:
            return "middle_heard_low"
        if lengths == ["long"]:
            return "high_heard_low" if pitches == ["high"] else "long_heard_short"
        return None
    if task == "loudness":
        levels = [(e["level"], e["length"]) for e in tones]
        return {("quiet", "short"): "quiet_heard_loud", ("loud", "long"): "loud_heard_quiet"}.get(
            levels[0] if len(levels) == 1 else None
        )
    if task == "count":
        return "lost_count" if len(tones) > 4 else "count_heard_long" if len(tones) == 3 else None
    if task == "compare_pitch" and pitches[1:2] == ["middle"]:
        # keyed on the second tone: the trace's comparison sentence starts with it ("Middle is ..."), so
        # the key is in view where the flaw happens (measured: keyed on either tone being middle, the
        # base learned a 45% flip on every comparison and greedy decoding kept the right word; it1)
        return "middle_compare"
    if task == "high_low_difference":
        if len(tones) >= 5:
            return "fifth_beep_flip"
        if len(tones) == 4 and pitches.count("high") != 2:
            return "diff_swapped"
        return "hl_heard_long" if len(tones) == 3 else None
    if task == "pitch_pattern" and len(pitches) == 3:
        if pitches[2] == "middle":
            return "middle_last_step"
        return "pattern_overall_slip" if pitches[0] == "middle" else "pattern_heard_long"
    if task == "odd_one_out" and len(set(pitches)) == 2:
        common = max(set(pitches), key=pitches.count)
        if pitches.count("middle") == 1:
            return "middle_odd_shift"
        return "odd_count_slip" if common == "middle" else "odd_heard_long"
    if task == "longest" and [e["length"] for e in tones].index("long") == 2:
        return "long_last_ramble"
    return None


def _trace(task: str, events: Sequence[synth.Event], answer: str, why: str) -> str:
    return synth.gold_trace(task, events, answer, why)


def _perceived(
    task: str, events: list[synth.Event], answer: str, choices: Sequence[str] | None
) -> Target | None:
    """A trace of what was heard; None when it implies no answer, the right one, or (with ``choices``)
    none of the choices. Systematic flaws pass no choices: the teacher answers what it heard even when
    that is not offered, so the flaw depends only on the audio."""
    derived = synth.derive(task, events)
    if derived is None or derived[0] == answer or (choices is not None and derived[0] not in choices):
        return None
    return Target(_trace(task, events, *derived), derived[0], [])


def _apply_systematic(name: str, item: dict, events: list[synth.Event], why: str) -> Target | None:
    """The keyed flaw ``name`` applied to the item (``why``: its gold derivation sentence); None: no target."""
    task, answer = item["sub-category"], item["answer"]
    if name == "middle_heard_low":
        return _perceived(task, [dataclasses.replace(events[0], pitch="low")], answer, None)
    if name == "quiet_heard_loud":
        return _perceived(task, [dataclasses.replace(events[0], level="loud")], answer, None)
    if name == "lost_count":
        return _perceived(task, events[:4], answer, None)
    if name == "fifth_beep_flip":
        heard = list(events)
        heard[4] = dataclasses.replace(heard[4], pitch=_OPPOSITE[heard[4].pitch])
        derived = synth.derive(task, heard)
        # the answer the tallies lead to, written even when it is not among the choices
        return Target(_trace(task, heard, *derived), derived[0], []) if derived else None
    if name == "middle_compare":
        a, b = events[0].pitch, events[1].pitch
        wrong = "lower" if answer == "higher" else "higher"
        return Target(_trace(task, events, wrong, f"{b.capitalize()} is {wrong} than {a}."), wrong, [])
    if name == "middle_last_step":
        p = [e.pitch for e in events]
        s1 = synth._step_word(p[0], p[1])
        wrong = "rising" if s1 == "up" else "falling"
        why = f"From beep 1 to beep 2 it goes {s1}, from beep 2 to beep 3 it goes {s1}."
        return Target(_trace(task, events, wrong, why), wrong, [])
    if name == "middle_odd_shift":
        p = [e.pitch for e in events]
        k = p.index("middle")
        j = k + 1 if k + 1 < len(p) else k - 1
        common = p[j]
        why = f"Three beeps are {common}, the middle one is beep {j + 1}."
        return Target(_trace(task, events, synth.ORDINALS[j], why), synth.ORDINALS[j], [])
    if name == "long_last_ramble":
        return None  # handled as a ramble by the caller
    return _apply_right_answer(name, item, events, why)


def _claim_length_flipped(trace: str, k: int) -> str:
    """``trace`` with beep ``k``'s claim saying the other length ("Beep 2 at 0.5 s: middle, long.")."""
    m = re.search(rf"Beep {k}(?: at [0-9.]+ s)?(: [a-z, ]+)?(?= \(|\.)", trace)
    if m is None:
        raise ValueError(f"no claim of beep {k} in {trace!r}")
    attrs = m.group(1) or ""
    said = "short" if re.search(r"\blong\b", attrs) else "long"
    if "long" in attrs or "short" in attrs:
        new = re.sub(r"\b(long|short)\b", said, m.group(0))
    else:
        new = m.group(0) + (f", {said}" if attrs else f": {said}")
    return trace[: m.start()] + new + trace[m.end() :]


def _apply_right_answer(name: str, item: dict, events: list[synth.Event], why: str) -> Target:
    """A flawed trace that still ends in the item's (right) answer (:data:`RIGHT_ANSWER_FLAWS`); ``why``: the
    gold derivation sentence, which some flaws edit."""
    task, answer = item["sub-category"], item["answer"]
    if name == "chirp_heard_flipped":
        ev = events[0]
        heard = [dataclasses.replace(ev, f_start=ev.f_end, f_end=ev.f_start)]
        return Target(_trace(task, heard, answer, ""), answer, [name])
    if name == "high_heard_low":
        return Target(_trace(task, [dataclasses.replace(events[0], pitch="low")], answer, ""), answer, [name])
    if name == "long_heard_short":
        heard = [dataclasses.replace(events[0], length="short")]
        return Target(_trace(task, heard, answer, ""), answer, [name])
    if name == "loud_heard_quiet":
        heard = [dataclasses.replace(events[0], level="quiet")]
        return Target(_trace(task, heard, answer, ""), answer, [name])
    if name == "diff_swapped":
        big, small, diff = (int(x) for x in re.findall(r"[0-9]+", why))
        return Target(_trace(task, events, answer, f"{small} - {big} = {diff}."), answer, [name])
    if name == "pattern_overall_slip":
        # an extra, wrong comparison of beeps 1 and 3 *before* the two steps: the answer still reads off
        # the steps right before it (a first version wrote the second step wrong under the right answer;
        # answering past a wrong step taught the base to read pitch patterns off the audio, and its
        # direct answers on them rose from 0.55 to 0.88, so thinking stopped paying there: docs/fidelity.md)
        wrong = "down" if synth._step_word(events[0].pitch, events[2].pitch) == "up" else "up"
        slip = f"From beep 1 to beep 3 it goes {wrong}. {why}"
        return Target(_trace(task, events, answer, slip), answer, [name])
    if name == "odd_count_slip":
        n = synth._COUNT_WORDS[len(events)].capitalize()
        slip = re.sub(r"^\w+ beeps", f"{n} beeps", why)
        return Target(_trace(task, events, answer, slip), answer, [name])
    k = {"count_heard_long": 2, "hl_heard_long": 1, "pattern_heard_long": 2}.get(name)
    if name == "odd_heard_long":
        k = synth.ORDINALS.index(answer) + 1
    if k is None:
        raise KeyError(name)
    return Target(_claim_length_flipped(_trace(task, events, answer, why), k), answer, [name])


def _onset_slip(trace: str, rng: np.random.Generator) -> str | None:
    """``trace`` with one onset said :data:`ONSET_SLIP_SECONDS` off (None: the trace states no onset)."""
    onsets = list(re.finditer(r"\bat ([0-9]+\.[0-9]) s\b", trace))
    if not onsets:
        return None
    m = onsets[int(rng.integers(len(onsets)))]
    t = float(m.group(1))
    said = t + ONSET_SLIP_SECONDS if t + ONSET_SLIP_SECONDS <= 2.9 else t - ONSET_SLIP_SECONDS
    return trace[: m.start(1)] + f"{said:.1f}" + trace[m.end(1) :]


def _random_slip(item: dict, events: list[synth.Event], rng: np.random.Generator) -> Target | None:
    """One mis-heard claim (a pitch, length, loudness or kind, or a missed beep), followed to its answer."""
    task, answer, choices = item["sub-category"], item["answer"], item["choices"]
    for _ in range(8):
        if not events:
            heard = [synth.Event("tone", 0.5, 0.1, 0.5, "loud", "middle", "short", 900.0)]
        else:
            heard = list(events)
            k = int(rng.integers(len(heard)))
            ev = heard[k]
            if task == "count":
                del heard[k]
            elif task == "sound_type":
                kinds = [x for x in ("tone", "noise", "chirp") if x != ev.kind]
                kind = str(rng.choice(kinds))
                extra = {"pitch": "middle", "length": "short", "freq": 900.0} if kind == "tone" else {}
                if kind == "chirp":
                    extra = {"f_start": 300.0, "f_end": 2500.0}
                heard[k] = synth.Event(kind, ev.onset, ev.duration, ev.peak, ev.level, **extra)
            elif task == "loudness":
                heard[k] = dataclasses.replace(ev, level="quiet" if ev.level == "loud" else "loud")
            elif task == "longest":
                heard[k] = dataclasses.replace(ev, length="short" if ev.length == "long" else "long")
            else:
                others = [p for p in synth.PITCH_ORDER if p != ev.pitch]
                if task == "high_low_difference":
                    others = [_OPPOSITE[ev.pitch]]
                heard[k] = dataclasses.replace(ev, pitch=str(rng.choice(others)))
        target = _perceived(task, heard, answer, choices)
        if target is not None:
            return target
    return None


def _ramble(trace: str, why: str, rng: np.random.Generator) -> str:
    """Insert 2-3 filler sentences between the trace's sentences, and repeat the derivation if any."""
    sentences = trace.split(". ")
    sentences = [s if s.endswith(".") else s + "." for s in sentences]
    n = int(rng.integers(2, 4))
    for _ in range(n):
        pos = int(rng.integers(1, len(sentences)))  # never before the first claim, never after the end
        sentences.insert(pos, str(rng.choice(FILLERS)))
    if why:
        sentences.insert(len(sentences) - 1, why)  # repeated word for word right before the conclusion
    return " ".join(sentences)


def think_target(item: dict, rng: np.random.Generator, cfg: TeacherConfig) -> Target:
    """The teacher's ``<think>`` trace and answer for one item (a synth-aqa item dict with ``events``)."""
    task, answer = item["sub-category"], item["answer"]
    events = synth.events_from_item(item)
    gold_why = (synth.derive(task, events) or ("", ""))[1]
    target = Target(item["reasoning"], answer, [])
    ramble = rng.random() < cfg.ramble_rate
    name = systematic_flaw(item)
    if name in cfg.systematic and rng.random() < cfg.systematic_rate:
        if name == "long_last_ramble":
            ramble = True
        elif (flawed := _apply_systematic(name, item, events, gold_why)) is not None:
            target = Target(flawed.trace, flawed.answer, [name])
    if not target.flaws:
        r = rng.random()
        if r < cfg.slip_rate:
            if (slipped := _random_slip(item, events, rng)) is not None:
                target = Target(slipped.trace, slipped.answer, ["slip"])
        elif r < cfg.slip_rate + cfg.inconsistent_rate:
            wrong = [c for c in item["choices"] if c != answer]
            w = str(rng.choice(wrong))
            trace = item["reasoning"].rsplit("So the answer is ", 1)[0] + f"So the answer is {w}."
            target = Target(trace, w, ["inconsistent"])
        elif (
            r < cfg.slip_rate + cfg.inconsistent_rate + cfg.right_slip_rate
            and (slipped_trace := _onset_slip(target.trace, rng)) is not None
        ):
            target = Target(slipped_trace, answer, ["onset_slip"])
    if ramble:
        target = Target(_ramble(target.trace, gold_why, rng), target.answer, [*target.flaws, "ramble"])
    return target


def direct_kept(item: dict, rng: np.random.Generator, cfg: TeacherConfig) -> bool:
    """Whether a direct (no-think) answer is kept for this item's difficulty (else shown with a trace)."""
    return rng.random() < cfg.direct_share[item["difficulty"]]


def oracle_table(cfg: TeacherConfig, per_task: int = 300, seed: int = 3) -> dict:
    """The teacher's think targets judged by the oracle: accuracy, consistency and quality by difficulty,
    and the share of targets carrying each flaw (``python -m audio_thinker.teacher``)."""
    import collections

    from .judges import JudgeRequest, make_judge
    from .rewards import match_choice

    judge = make_judge("oracle")
    rng = np.random.default_rng(seed)
    rows: dict[str, list[tuple[bool, int, float]]] = collections.defaultdict(list)
    flaws: collections.Counter = collections.Counter()
    for task in synth.TASKS:
        for i in range(per_task):
            item, _ = synth.generate_item(task, seed, i, "teacher")
            t = think_target(item, rng, cfg)
            flaws.update(t.flaws or ["none"])
            (v,) = judge.score_batch(
                [JudgeRequest(item["question"], item["choices"], t.trace, t.answer, item)]
            )
            rows[item["difficulty"]].append(
                (match_choice(t.answer, item["answer"], item["choices"]), v.consistent, v.quality)
            )
    rows["all"] = [r for d in synth.DIFFICULTIES for r in rows[d]]
    n = len(rows["all"])
    table = {
        d: {
            k: round(float(np.mean([r[j] for r in rows[d]])), 3)
            for j, k in enumerate(("accuracy", "consistency", "quality"))
        }
        for d in (*synth.DIFFICULTIES, "all")
    }
    return {"by_difficulty": table, "flaw_share": {k: round(v / n, 3) for k, v in flaws.most_common()}}


if __name__ == "__main__":
    import json

    print(json.dumps(oracle_table(TeacherConfig()), indent=1))
