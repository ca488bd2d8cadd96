"""Tests for audio_thinker.judges (the judge interface and the synth-aqa oracle)."""

from __future__ import annotations

import copy
import logging
import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audio_thinker import synth
from audio_thinker.judges import (
    Judge,
    JudgeRequest,
    OracleJudge,
    Verdict,
    available_judges,
    make_judge,
    oracle_grammar,
    register_judge,
    score,
)
from audio_thinker.judges import base as judge_base
from audio_thinker.rewards import quantize_quality

TASKS = list(synth.TASKS)
SEEDS = range(30)
GRID = {k / 10 for k in range(11)}


@pytest.fixture(scope="module")
def items() -> dict[str, list[dict]]:
    """30 items per task (item 0 of seeds 0..29)."""
    return {task: [synth.generate_item(task, seed, 0)[0] for seed in SEEDS] for task in TASKS}


@pytest.fixture(scope="module")
def oracle() -> OracleJudge:
    return OracleJudge()


def judged(oracle: OracleJudge, item: dict, think: str, answer: str | None = None) -> Verdict:
    answer = item["answer"] if answer is None else answer
    (verdict,) = oracle.score_batch([JudgeRequest(item["question"], item["choices"], think, answer, item)])
    return verdict


# ---------------------------------------------------------------- helpers: traces from (edited) events


def trace_for(task: str, events: list[synth.Event]) -> tuple[str, str]:
    """(gold-style trace, answer) that the given events imply, mirroring synth's task logic."""
    po = synth.PITCH_ORDER
    why = ""
    if task == "sound_type":
        answer = synth.SOUND_TYPES[events[0].kind if events else "none"]
    elif task == "pitch_level":
        answer = events[0].pitch
    elif task == "loudness":
        answer = events[0].level
    elif task == "count":
        answer = str(len(events))
    elif task == "compare_pitch":
        a, b = events[0].pitch, events[1].pitch
        answer = "higher" if po[b] > po[a] else "lower"
        why = f"{b.capitalize()} is {answer} than {a}."
    elif task == "longest":
        k = [e.length for e in events].index("long")
        answer, why = synth.ORDINALS[k], f"The long one is beep {k + 1}."
    elif task == "high_low_difference":
        pitches = [e.pitch for e in events]
        high, low = pitches.count("high"), pitches.count("low")
        answer = str(abs(high - low))
        why = f"High beeps: {high}. Low beeps: {low}. {max(high, low)} - {min(high, low)} = {answer}."
    elif task == "pitch_pattern":
        steps = [
            "up" if po[b.pitch] > po[a.pitch] else "down" for a, b in zip(events, events[1:], strict=False)
        ]
        answer = {("up", "up"): "rising", ("down", "down"): "falling"}.get(tuple(steps), " then ".join(steps))
        why = f"From beep 1 to beep 2 it goes {steps[0]}, from beep 2 to beep 3 it goes {steps[1]}."
    elif task == "odd_one_out":
        pitches = [e.pitch for e in events]
        k = next(i for i, p in enumerate(pitches) if pitches.count(p) == 1)
        common = next(p for p in pitches if p != pitches[k])
        answer, why = synth.ORDINALS[k], f"Three beeps are {common}, the {pitches[k]} one is beep {k + 1}."
    else:
        raise AssertionError(task)
    return synth.gold_trace(task, events, answer, why), answer


OTHER = {"low": "high", "high": "low", "middle": "low"}


def consistently_wrong(task: str, item: dict) -> list[synth.Event]:
    """Events with one or two facts changed so that the answer they imply changes."""
    events = copy.deepcopy(synth.events_from_item(item))
    if task == "sound_type":
        if not events:
            return [synth.Event("noise", 0.5, 0.3, 0.5, "loud")]
        ev = events[0]
        return [
            synth.Event("noise" if ev.kind != "noise" else "tone", ev.onset, ev.duration, ev.peak, "loud")
        ]
    if task == "pitch_level":
        events[0].pitch = OTHER[events[0].pitch]
    elif task == "loudness":
        events[0].level = "quiet" if events[0].level == "loud" else "loud"
    elif task == "count":
        n = len(events)
        target = min((int(c) for c in item["choices"] if int(c) != n), key=lambda c: abs(c - n))
        events = events[:target]
        while len(events) < target:  # hallucinate beeps after the last one
            events.append(synth.Event("tone", events[-1].onset + 0.25, 0.1, 0.5, "loud", "high", "short"))
    elif task == "compare_pitch":
        events[0].pitch, events[1].pitch = events[1].pitch, events[0].pitch
    elif task == "longest":
        k = [e.length for e in events].index("long")
        events[k].length, events[(k + 1) % 3].length = "short", "long"
    elif task == "high_low_difference":
        pitches = [e.pitch for e in events]
        high, low = pitches.count("high"), pitches.count("low")
        for flip in ("high", "low"):  # a flip whose new difference is among the choices
            if flip in pitches and str(abs(high - low + (-2 if flip == "high" else 2))) in item["choices"]:
                next(e for e in events if e.pitch == flip).pitch = OTHER[flip]
                break
    elif task == "pitch_pattern":
        events[1].pitch, events[2].pitch = events[2].pitch, events[1].pitch
    elif task == "odd_one_out":
        pitches = [e.pitch for e in events]
        k = next(i for i, p in enumerate(pitches) if pitches.count(p) == 1)
        j = (k + 1) % 4
        events[k].pitch, events[j].pitch = events[j].pitch, events[k].pitch
    return events


def shift_onset(trace: str, item: dict, k: int, delta: float = 0.5) -> str:
    """The trace with the k-th event's stated onset moved by ``delta`` seconds (stated first if it was not)."""
    old = f"{item['events'][k]['onset']:.1f} s"
    new = f"{item['events'][k]['onset'] + delta:.1f} s"
    if f"Beep {k + 1}: " in trace:  # a trace without onsets (synth.LOOKUP_TASKS)
        return trace.replace(f"Beep {k + 1}: ", f"Beep {k + 1} at {new}: ", 1)
    start = trace.index(f"Beep {k + 1} at ") if f"Beep {k + 1} at " in trace else trace.index("At ")
    assert trace[start:].count(old) >= 1
    return trace[:start] + trace[start:].replace(old, new, 1)


# ---------------------------------------------------------------- interface


def test_make_judge_oracle():
    j = make_judge("oracle")
    assert isinstance(j, OracleJudge)
    assert j.name == "oracle"
    assert isinstance(j, Judge)
    assert "oracle" in available_judges()


def test_make_judge_unknown_names_known_backends():
    with pytest.raises(ValueError, match="oracle"):
        make_judge("nope")


def test_make_judge_knows_the_builtin_judges_whatever_was_imported():
    """``make_judge("learned")`` needs no import of the training code (reward_model) first."""
    code = (
        "import sys\n"
        "from audio_thinker.judges import available_judges, make_judge\n"
        "try:\n"
        "    make_judge('learned', path=sys.argv[1])\n"
        "except ValueError as err:\n"
        "    print(available_judges(), 'not a trained reward model folder' in str(err))\n"
        "print('audio_thinker.reward_model' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "/nonexistent"], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[:2] == ["['learned', 'llm', 'oracle'] True", "False"]


def test_register_judge_adds_backend(monkeypatch):
    monkeypatch.setattr(judge_base, "_REGISTRY", dict(judge_base._REGISTRY))

    @register_judge("constant")
    class Constant:
        name = "constant"

        def __init__(self, quality: float = 0.3):
            self.quality = quality

        def score_batch(self, requests):
            return [Verdict(1, self.quality) for _ in requests]

    j = make_judge("constant", quality=0.7)
    assert score(j, "q", ["a", "b"], "t", "a") == (1, 0.7)
    assert "constant" in available_judges()


def test_register_judge_refuses_a_taken_name_unless_replace(monkeypatch):
    monkeypatch.setattr(judge_base, "_REGISTRY", dict(judge_base._REGISTRY))
    oracle = judge_base._REGISTRY["oracle"]

    class Impostor:
        name = "oracle"

    with pytest.raises(ValueError, match="a judge named 'oracle' is already registered.*replace=True"):
        register_judge("oracle")(Impostor)
    assert judge_base._REGISTRY["oracle"] is oracle
    register_judge("oracle")(oracle)  # the same factory again (a module imported twice) is no change
    register_judge("oracle", replace=True)(Impostor)
    assert judge_base._REGISTRY["oracle"] is Impostor


def test_verdict_validation_and_quantisation():
    assert Verdict(1, 0.34).quality == 0.3
    assert Verdict(0, 0.35).quality == 0.4
    assert Verdict(True, 1.0).consistent == 1
    for bad in [(2, 0.5), (-1, 0.5), (1, 1.5), (1, -0.1), (1, float("nan"))]:
        with pytest.raises(ValueError):
            Verdict(*bad)
    neutral = Verdict.neutral("why")
    assert (neutral.consistent, neutral.quality, neutral.failed, neutral.detail) == (1, 0.5, True, "why")
    assert [quantize_quality(x) for x in (-1, 0.05, 0.149, 0.25, 0.95, 3)] == [0.0, 0.1, 0.1, 0.3, 1.0, 1.0]


def test_request_from_completion():
    req = JudgeRequest.from_completion("q", ["x"], "<think>because</think><answer>x</answer>", {"a": 1})
    assert (req.think, req.answer, req.item) == ("because", "x", {"a": 1})
    req = JudgeRequest.from_completion("q", ["x"], "<answer>x</answer>")
    assert (req.think, req.answer) == ("", "x")


def test_score_batch_keeps_order_and_length(oracle, items):
    reqs = [
        JudgeRequest(it["question"], it["choices"], it["reasoning"], it["answer"], it)
        for it in items["count"]
    ]
    reqs[3] = JudgeRequest(reqs[3].question, reqs[3].choices, "", reqs[3].answer, reqs[3].item)
    verdicts = oracle.score_batch(reqs)
    assert len(verdicts) == len(reqs)
    assert [(v.consistent, v.quality) for v in verdicts].count((0, 0.0)) == 1
    assert (verdicts[3].consistent, verdicts[3].quality) == (0, 0.0)
    assert oracle.score_batch([]) == []


# ---------------------------------------------------------------- oracle: gold and answers


@pytest.mark.parametrize("task", TASKS)
def test_gold_traces_are_perfect(oracle, items, task):
    more = [synth.generate_item(task, seed, 1)[0] for seed in SEEDS]
    for item in items[task] + more:
        v = judged(oracle, item, item["reasoning"])
        assert (v.consistent, v.quality, v.failed) == (1, 1.0, False), (item["reasoning"], v)
        assert score(oracle, item["question"], item["choices"], item["reasoning"], item["answer"], item) == (
            1,
            1.0,
        )


def test_choices_fall_back_to_item(oracle, items):
    item = items["pitch_pattern"][0]
    assert score(oracle, item["question"], [], item["reasoning"], item["answer"], item) == (1, 1.0)


@pytest.mark.parametrize("task", TASKS)
def test_answer_that_does_not_follow_is_inconsistent(oracle, items, task):
    for item in items[task][:10]:
        wrong = next(c for c in item["choices"] if c != item["answer"])
        v = judged(oracle, item, item["reasoning"], wrong)  # the final <answer> disagrees: R_c only
        assert (v.consistent, v.quality) == (0, 1.0), v
        # the trace's own conclusion changed too: the facts do not imply it, and the trace contradicts
        # itself, which costs quality (a contradiction weighs 6: more than a mis-heard onset, 3)
        think = item["reasoning"].replace(f"So the answer is {item['answer']}.", f"So the answer is {wrong}.")
        v = judged(oracle, item, think, wrong)
        assert v.consistent == 0 and v.quality < 1.0 and "does not follow" in v.detail, v
        if item["events"] and " at " in item["reasoning"]:
            slipped = judged(oracle, item, shift_onset(item["reasoning"], item, 0, 0.5))
            assert v.quality < slipped.quality < 1.0, (v, slipped)


def test_conclusion_contradicting_final_answer_is_inconsistent(oracle, items):
    item = items["compare_pitch"][0]
    wrong = "lower" if item["answer"] == "higher" else "higher"
    think = item["reasoning"].replace(f"So the answer is {item['answer']}.", f"So the answer is {wrong}.")
    assert judged(oracle, item, think).consistent == 0


def test_quality_independent_of_answer_correctness(oracle, items):
    for task in TASKS:
        for item in items[task][:5]:
            qualities = {judged(oracle, item, item["reasoning"], c).quality for c in item["choices"]}
            assert qualities == {1.0}


@pytest.mark.parametrize("task", TASKS)
def test_wrong_facts_leading_consistently_to_wrong_answer(oracle, items, task):
    checked = 0
    for item in items[task]:
        events = consistently_wrong(task, item)
        think, answer = trace_for(task, events)
        if answer == item["answer"]:  # high_low_difference: no flip gives an answer among the choices
            continue
        checked += 1
        v = judged(oracle, item, think, answer)
        assert v.consistent == 1, (think, answer, v)
        assert v.quality < 1.0, (think, v)
        assert v.quality > 0.0 or task == "sound_type", (think, v)
    assert checked >= 10


def test_mislabelled_pitch_recomputed_derivation_example(oracle):
    item = next(
        it
        for seed in range(50)
        if (it := synth.generate_item("high_low_difference", seed, 0)[0])["answer"] != "0"
        and len(it["events"]) == 5
    )
    events = consistently_wrong("high_low_difference", item)
    think, answer = trace_for("high_low_difference", events)
    v = judged(oracle, item, think, answer)
    # one pitch wrong, and the two counts and the subtraction are wrong about the true events
    assert v.consistent == 1
    assert 0.5 <= v.quality <= 0.8, v


# ---------------------------------------------------------------- oracle: quality penalties


def test_grade_weighs_errors_by_kind(oracle, items):
    """The documented grade on pitch-pattern traces (12 checks): a filler sentence 0.9, a mis-heard length
    0.8, a derivation step that contradicts the trace's own claims 0.6."""
    for item in items["pitch_pattern"]:
        gold = item["reasoning"]
        assert judged(oracle, item, gold).quality == 1.0
        filler = gold.replace(" That is 3 beeps.", " Let me listen again. That is 3 beeps.")
        long_claim = re.sub(r"(Beep 2 at [0-9.]+ s: \w+)\.", r"\1, long.", gold)
        m = re.search(r"from beep 2 to beep 3 it goes (up|down)", gold)
        other = {"up": "down", "down": "up"}[m.group(1)]
        step = gold.replace(m.group(0), f"from beep 2 to beep 3 it goes {other}")
        grades = [judged(oracle, item, t) for t in (filler, long_claim, step)]
        assert [v.quality for v in grades] == [0.9, 0.8, 0.6], grades
        assert [v.consistent for v in grades] == [1, 1, 0], grades


@pytest.mark.parametrize("task", TASKS)
def test_one_wrong_onset_lowers_quality(oracle, items, task):
    n = 0
    for item in items[task]:
        if not item["events"]:
            continue
        k = len(item["events"]) - 1
        think = shift_onset(item["reasoning"], item, k, 0.5)
        v = judged(oracle, item, think)
        assert v.quality < 1.0, (think, v)
        # a mis-heard claim weighs 3: the shortest trace ("At 0.6 s: a noise burst.", two checks) 1 / 4
        assert v.quality >= 0.3, (think, v)
        assert v.consistent == 1  # onsets do not enter any derivation
        assert "onset" in v.detail
        n += 1
    assert n > 0


@pytest.mark.parametrize("task", TASKS)
def test_one_corrupted_fact_lowers_quality(oracle, items, task):
    """Change one stated fact (attribute, kind, count or derivation) in the gold trace."""
    swaps = {
        "pitch_level": [(": low", ": high"), (": middle", ": low"), (": high", ": middle")],
        "loudness": [(": loud", ": quiet"), (": quiet", ": loud")],
        "count": [("That is ", "That is 1")],
        "compare_pitch": [("is higher than", "is lower than"), ("is lower than", "is higher than")],
        "longest": [(": long", ": short")],
        "high_low_difference": [(" low). ", " low). 1")],  # "3 - 2 = 1." becomes "13 - 2 = 1."
        "pitch_pattern": [("it goes up", "it goes down"), ("it goes down", "it goes up")],
        "odd_one_out": [("Three beeps are", "Two beeps are")],
        "sound_type": [
            ("sweeping up", "sweeping down"),
            ("sweeping down", "sweeping up"),
            ("noise", "chirp"),
        ],
    }[task]
    for item in items[task]:
        trace = item["reasoning"]
        if task == "sound_type" and not item["events"]:
            think = "At 0.5 s: a noise burst. So the answer is a noise burst."
        elif task == "sound_type" and item["events"][0]["kind"] == "tone":
            think = trace.replace("a steady tone", "a noise burst", 1)
        else:
            old, new = next((o, n) for o, n in swaps if o in trace)
            think = trace.replace(old, new, 1)
        assert think != trace
        v = judged(oracle, item, think)
        assert v.quality < 1.0, (think, v)


@pytest.mark.parametrize("task", [t for t in TASKS if t != "sound_type"])
def test_missing_beep_lowers_quality(oracle, items, task):
    for item in items[task]:
        k = len(item["events"])
        start = item["reasoning"].index(f"Beep {k}")
        end = item["reasoning"].index(". ", start) + 1
        think = item["reasoning"][:start] + item["reasoning"][end:].lstrip()
        v = judged(oracle, item, think)
        assert v.quality < 1.0, (think, v)
        assert "missing" in v.detail


@pytest.mark.parametrize("task", TASKS)
def test_extra_hallucinated_beep_lowers_quality(oracle, items, task):
    for item in items[task]:
        n = len(item["events"])
        extra = f"Beep {n + 1} at 2.8 s: high."
        trace = item["reasoning"]
        cut = trace.index("That is") if "That is" in trace else trace.index("So the answer")
        think = trace[:cut] + extra + " " + trace[cut:]
        v = judged(oracle, item, think)
        assert v.quality < 1.0, (think, v)


def test_unsupported_sentence_costs_quality(oracle, items):
    item = items["count"][0]
    v = judged(oracle, item, "Let me listen carefully. " + item["reasoning"])
    assert v.consistent == 1
    assert v.quality < 1.0
    assert "unsupported" in v.detail


def test_repeated_derivation_does_not_pad_quality(oracle, items):
    item = items["high_low_difference"][0]
    high = sum(e["pitch"] == "high" for e in item["events"])
    low = len(item["events"]) - high
    again = f"{max(high, low)} - {min(high, low)} = {abs(high - low)}. "
    assert again in item["reasoning"]
    v = judged(oracle, item, item["reasoning"].replace("So the answer", again + "So the answer"))
    assert v.quality < 1.0 and "repeated" in v.detail
    wrong = shift_onset(item["reasoning"], item, 0)
    base = judged(oracle, item, wrong).quality
    padded = wrong.replace("So the answer", again * 5 + "So the answer")
    assert judged(oracle, item, padded).quality < base


@pytest.mark.parametrize(
    "think", ["", "   \n\t ", "asdf qwerty zxcv", "!!! ... ???", "<think></think>", "The the the."]
)
def test_garbage_and_empty_score_zero(oracle, items, think):
    for task in TASKS:
        item = items[task][0]
        v = judged(oracle, item, think)
        assert (v.consistent, v.quality, v.failed) == (0, 0.0, False), (task, v)


def test_bare_conclusion_is_not_reasoning(oracle, items):
    for task in TASKS:
        item = items[task][0]
        v = judged(oracle, item, f"So the answer is {item['answer']}.")
        assert (v.consistent, v.quality) == (0, 0.0), (task, v)


def test_no_beeps_for_pitch_task_is_inconsistent(oracle, items):
    item = items["compare_pitch"][0]
    think = f"That is 2 beeps. So the answer is {item['answer']}."
    assert judged(oracle, item, think).consistent == 0


def test_internally_contradictory_derivation_is_inconsistent(oracle, items):
    item = next(it for it in items["count"] if len(it["events"]) > 1)
    n = len(item["events"])
    think = item["reasoning"].replace(f"That is {n} beeps", f"That is {n - 1} beep{'s' if n > 2 else ''}")
    think = think.replace(f"So the answer is {n}", f"So the answer is {n - 1}")
    v = judged(oracle, item, think, str(n - 1))
    assert v.consistent == 0
    assert v.quality < 1.0


# ---------------------------------------------------------------- oracle: running tallies (high_low_difference)


TALLY = re.compile(r" \((\d+) high, (\d+) low\)")


def without_tallies(trace: str) -> str:
    return TALLY.sub("", trace)


def test_gold_tallies_are_parsed_as_checks_not_attribute_words(oracle, items):
    for item in items["high_low_difference"]:
        trace = item["reasoning"]
        assert len(TALLY.findall(trace)) == len(item["events"])
        v = judged(oracle, item, trace)
        assert (v.consistent, v.quality, v.detail) == (1, 1.0, "ok"), v
        (claim, *_) = oracle_grammar.parse_trace(trace.lower()).claims
        assert claim.unknown == [] and len(claim.tallies) == 1


def test_trace_without_tallies_still_scores_perfectly(oracle, items):
    """Tallies are optional: a beep without one has no tally check."""
    for item in items["high_low_difference"]:
        think = without_tallies(item["reasoning"])
        assert "(" not in think
        v = judged(oracle, item, think)
        assert (v.consistent, v.quality) == (1, 1.0), (think, v)
    # some beeps with a tally, some without
    item = items["high_low_difference"][0]
    first = TALLY.search(item["reasoning"])  # only beep 1 keeps its tally
    think = item["reasoning"][: first.end()] + without_tallies(item["reasoning"][first.end() :])
    assert TALLY.findall(think) == [first.groups()]
    assert score(oracle, item["question"], item["choices"], think, item["answer"], item) == (1, 1.0)


def test_wrong_tally_contradicting_claims_is_inconsistent_and_costs_quality(oracle, items):
    for item in items["high_low_difference"]:
        trace = item["reasoning"]
        matches = list(TALLY.finditer(trace))
        for m in (matches[0], matches[-1]):
            high, low = int(m.group(1)), int(m.group(2))
            think = trace[: m.start()] + f" ({high + 1} high, {low} low)" + trace[m.end() :]
            v = judged(oracle, item, think)
            assert v.consistent == 0, (think, v)
            # a contradiction (weight 6) among the 4n + 1 checks (kind, onset, pitch, tally per beep; the
            # subtraction): 4n passed
            n = len(item["events"])
            assert v.quality == min(0.9, quantize_quality(4 * n / (4 * n + 6))), (think, v)
            assert "tally" in v.detail
        # the tally swapped high and low (same total): still wrong where the counts differ
        m = matches[-1]
        if m.group(1) != m.group(2):
            think = trace[: m.start()] + f" ({m.group(2)} high, {m.group(1)} low)" + trace[m.end() :]
            assert judged(oracle, item, think).consistent == 0


def test_tally_following_wrong_claims_is_consistent_but_wrong(oracle):
    item = next(
        it
        for seed in range(50)
        if (it := synth.generate_item("high_low_difference", seed, 0)[0])["answer"] != "0"
        and len(it["events"]) == 5
    )
    events = consistently_wrong("high_low_difference", item)
    flipped = next(
        k for k, (a, b) in enumerate(zip(events, item["events"], strict=True)) if a.pitch != b["pitch"]
    )
    think, answer = trace_for("high_low_difference", events)
    v = judged(oracle, item, think, answer)
    assert v.consistent == 1, v
    assert "tally" in v.detail and f"beep {flipped + 1} tally" in v.detail
    # without the tallies the same wrong pitch costs fewer checks relative to the total
    bare = judged(oracle, item, without_tallies(think), answer)
    assert bare.consistent == 1 and bare.quality >= v.quality


def test_tolerant_tally_forms(oracle, items):
    def low_first(m: re.Match) -> str:
        return f" ({m.group(2)} lows,{m.group(1)}highs )"

    edits = [
        lambda t: TALLY.sub(low_first, t),
        lambda t: TALLY.sub(lambda m: f"({m.group(1)} high and {m.group(2)} low)", t),
        lambda t: TALLY.sub(lambda m: f" ( {m.group(1)} HIGH / {m.group(2)} LOW )", t),
        lambda t: TALLY.sub(lambda m: f" ({m.group(1)} high {m.group(2)} low)", t),
        lambda t: t.replace(" (", " ( ").replace(", ", " , "),
    ]
    for item in items["high_low_difference"][:10]:
        for edit in edits:
            think = edit(item["reasoning"])
            assert think != item["reasoning"]
            v = judged(oracle, item, think)
            assert (v.consistent, v.quality) == (1, 1.0), (think, v)
    # a tally before the colon, or with no attributes, is part of the beep claim too
    item = items["high_low_difference"][0]
    moved = re.sub(r": (high|low|middle)( \(\d+ high, \d+ low\))", r"\2: \1", item["reasoning"])
    assert moved != item["reasoning"]
    assert score(oracle, item["question"], item["choices"], moved, item["answer"], item) == (1, 1.0)
    bare = re.sub(r": (?:high|low|middle) \(", " (", item["reasoning"])
    v = judged(oracle, item, bare)
    assert v.consistent == 0 and v.quality == 1.0  # pitches unstated: no answer, but nothing false


def test_malformed_tally_is_one_unknown_attribute(oracle, items):
    item = items["high_low_difference"][0]
    m = TALLY.search(item["reasoning"])
    for bad in (" (1 high)", " (1 high, 2 high)", " (lots of beeps)"):
        think = item["reasoning"][: m.start()] + bad + item["reasoning"][m.end() :]
        v = judged(oracle, item, think)
        assert v.consistent == 1 and v.quality == 0.9, (think, v)
        assert "unknown attribute" in v.detail and "+" not in v.detail


def test_tally_in_other_tasks_is_a_quality_check_only(oracle, items):
    item = items["count"][0]
    events = item["events"]
    high = sum(e["pitch"] == "high" for e in events[:1])
    right = item["reasoning"].replace(" s.", f" s ({high} high, {1 - high} low).", 1)
    assert right != item["reasoning"]
    assert score(oracle, item["question"], item["choices"], right, item["answer"], item) == (1, 1.0)
    wrong = item["reasoning"].replace(" s.", " s (5 high, 5 low).", 1)
    v = judged(oracle, item, wrong)
    assert v.consistent == 1 and v.quality < 1.0 and "tally" in v.detail


def test_tally_on_extra_beep_fails_once(oracle, items):
    item = items["high_low_difference"][0]
    n = len(item["events"])
    high = sum(e["pitch"] == "high" for e in item["events"])
    low = sum(e["pitch"] == "low" for e in item["events"])
    extra = f"Beep {n + 1} at 2.8 s: middle ({high} high, {low} low). "
    diff = f"{max(high, low)} - {min(high, low)} = "
    think = item["reasoning"].replace(diff, extra + diff)
    assert think != item["reasoning"]
    v = judged(oracle, item, think)
    assert "extra" in v.detail and "tally" not in v.detail
    # one failure among the 4n + 1 checks of the gold trace (kind, onset, pitch, tally per beep; the
    # subtraction) plus one
    assert v.quality == min(0.9, quantize_quality((4 * n + 1) / (4 * n + 2)))


# ---------------------------------------------------------------- oracle: odd one out


def test_odd_one_sentence_new_and_old_forms(oracle, items):
    for item in items["odd_one_out"]:
        trace = item["reasoning"]
        m = re.search(r"Three beeps are (\w+), the (\w+) one is beep (\d)\.", trace)
        assert m, trace
        common, odd, k = m.group(1), m.group(2), int(m.group(3))
        old = trace.replace(m.group(0), f"Three beeps are {common}, beep {k} is {odd}.")
        for think in (trace, old, trace.replace(" one is beep", " beep is beep")):
            v = judged(oracle, item, think)
            assert (v.consistent, v.quality) == (1, 1.0), (think, v)
        # wrong position: contradicts the claims and is false
        other = k % 4 + 1
        for wrong in (
            trace.replace(m.group(0), f"Three beeps are {common}, the {odd} one is beep {other}."),
            trace.replace(m.group(0), f"Three beeps are {common}, beep {other} is {odd}."),
            trace.replace(m.group(0), f"Three beeps are {odd}, the {common} one is beep {k}."),
        ):
            v = judged(oracle, item, wrong)
            # 9 checks pass (kind and pitch of four beeps, the count); the contradiction weighs 6: 9 / 15
            assert v.consistent == 0 and v.quality == 0.6, (wrong, v)
            assert "wrong" in v.detail


def test_odd_one_sentence_consistent_with_wrong_claims(oracle, items):
    for item in items["odd_one_out"][:10]:
        events = consistently_wrong("odd_one_out", item)
        think, answer = trace_for("odd_one_out", events)
        assert ", the " in think
        v = judged(oracle, item, think, answer)
        assert v.consistent == 1 and v.quality < 1.0, (think, v)
        assert any("wrong: 'three beeps are" in part for part in v.detail.split("; ")), v


# ---------------------------------------------------------------- oracle: parsing


def test_tolerant_parsing(oracle, items):
    cases = [
        ("pitch_level", lambda t: t.upper()),
        ("longest", lambda t: t.lower().rstrip(".")),
        ("high_low_difference", lambda t: "  " + t.replace(" ", "   ").replace(". ", ".\n") + "  "),
        ("compare_pitch", lambda t: t.replace(" s:", "s :").rstrip(".")),
        ("pitch_pattern", lambda t: t.replace(" s:", " seconds:")),
        ("odd_one_out", lambda t: t.replace(". ", " ")),  # no periods between sentences at all
        ("count", lambda t: t.replace(" s.", "s").replace(" s:", " sec:")),
        ("loudness", lambda t: t.replace(", ", " ,   ")),
        ("sound_type", lambda t: t.replace(". ", "\n").upper().rstrip(".")),
    ]
    for task, edit in cases:
        for item in items[task][:10]:
            think = edit(item["reasoning"])
            v = judged(oracle, item, think)
            assert (v.consistent, v.quality) == (1, 1.0), (task, think, v)


def test_parses_variants_of_the_grammar(oracle):
    item, _ = synth.generate_item("pitch_pattern", 3, 0)
    ev = item["events"]
    # two-decimal onsets, "pitched" filler, "The answer is:" and no final period
    beeps = " ".join(f"Beep {k + 1} at {e['onset']:.2f} s: {e['pitch']} pitched." for k, e in enumerate(ev))
    v = judged(oracle, item, beeps + f" The answer is: {item['answer']}")
    assert (v.consistent, v.quality) == (1, 1.0), v
    # "- high" instead of ": high" is not the grammar: every sentence is unsupported
    dashed = " ".join(f"beep {k + 1} at {e['onset']:.2f}s - {e['pitch']}." for k, e in enumerate(ev))
    v = judged(oracle, item, dashed)
    assert (v.consistent, v.quality) == (0, 0.0), v
    # an unknown attribute word fails one claim check (weight 3) but keeps the beep and its pitch: the 12
    # checks of the gold trace pass, 12 / 15
    fuzzy = item["reasoning"].replace(f": {ev[0]['pitch']}.", f": {ev[0]['pitch']}, fuzzy.", 1)
    v = judged(oracle, item, fuzzy)
    assert v.consistent == 1 and v.quality == 0.8 and "fuzzy" in v.detail, v


def test_other_event_kinds(oracle):
    found = set()
    for seed in range(40):
        item, _ = synth.generate_item("sound_type", seed, 0)
        kind = item["events"][0]["kind"] if item["events"] else "none"
        found.add(kind)
        if kind == "chirp":
            direction = item["events"][0]["direction"]
            flipped = item["reasoning"].replace(f"sweeping {direction}", f"sweeping {OTHER_DIR[direction]}")
            v = judged(oracle, item, flipped)
            assert v.consistent == 1 and v.quality < 1.0 and "direction" in v.detail
            plain = item["reasoning"].replace(f"a chirp sweeping {direction}", "a sweeping chirp")
            assert score(oracle, item["question"], item["choices"], plain, item["answer"], item) == (1, 1.0)
        if kind == "none":
            v = judged(
                oracle, item, "At 0.5 s: a steady tone. So the answer is a steady tone.", "a steady tone"
            )
            assert (v.consistent, v.quality) == (1, 0.0)
            hiss = "i hear nothing, only background hiss"
            assert score(oracle, item["question"], item["choices"], hiss, item["answer"], item) == (1, 1.0)
        else:
            v = judged(oracle, item, "I hear no sound event, only background hiss.", item["answer"])
            assert (v.consistent, v.quality) == (0, 0.0)
    assert found == {"tone", "noise", "chirp", "none"}


OTHER_DIR = {"up": "down", "down": "up"}


# ---------------------------------------------------------------- oracle: non-synth items, speed


def test_non_synth_item_gives_neutral_failed_verdict(oracle, caplog, monkeypatch):
    monkeypatch.setattr(judge_base, "_WARNED", set())
    mmau = {"question": "What instrument?", "choices": ["piano", "violin"], "answer": "piano"}
    with caplog.at_level(logging.WARNING, logger="audio_thinker.judges"):
        for item in (mmau, None, mmau):
            (v,) = oracle.score_batch(
                [JudgeRequest("q", ["piano", "violin"], "It sounds like a piano.", "piano", item)]
            )
            assert v == Verdict(
                consistent=1, quality=0.5, failed=True, detail="oracle needs synth-aqa events"
            )
    assert sum("events" in r.getMessage() for r in caplog.records) == 1


def test_malformed_events_and_unknown_task_are_neutral(oracle, items):
    item = dict(items["count"][0])
    for bad in ({**item, "events": "nope"}, {**item, "events": [{"kind": "laser"}]}):
        assert judged(oracle, bad, item["reasoning"]).failed
    unknown = {**item, "sub-category": "mystery", "question": "Why?"}
    v = judged(oracle, unknown, item["reasoning"])
    assert v.failed and (v.consistent, v.quality) == (1, 0.5)
    # a missing sub-category is recovered from the question text
    no_task = {k: v for k, v in item.items() if k != "sub-category"}
    assert score(oracle, item["question"], item["choices"], item["reasoning"], item["answer"], no_task) == (
        1,
        1.0,
    )


def test_score_batch_matches_single_requests(oracle, items):
    pool = [it for task in TASKS for it in items[task]]
    reqs = [JudgeRequest(it["question"], it["choices"], it["reasoning"], it["answer"], it) for it in pool]
    reqs = (reqs * 4)[:1000]
    verdicts = oracle.score_batch(reqs)
    assert len(verdicts) == 1000
    assert verdicts[:50] == [oracle.score_batch([r])[0] for r in reqs[:50]]


# ---------------------------------------------------------------- property test

FRAGMENTS = [
    "Beep 1 at 0.2 s: high.",
    "beep 2 at 0.7s: low, long",
    "Beep 3 at .4 s: middle, loud, quiet, weird.",
    "BEEP 999 AT 99999.999999 S: SHORT",
    "At 0.4 s: a noise burst.",
    "at 1 s: a chirp sweeping down",
    "I hear no sound event, only background hiss.",
    "That is 4 beeps.",
    "that is no events",
    "High beeps: 3.",
    "Low beeps: 0",
    "3 - 2 = 1.",
    "9 - 9 = 0",
    "From beep 1 to beep 2 it goes up, from beep 2 to beep 9 it goes down.",
    "Three beeps are low, beep 3 is high.",
    "Three beeps are middle, the low one is beep 2.",
    "two beeps are high the high one is beep 9",
    "Beep 2 at 0.4 s: high (2 high, 0 low).",
    "beep 4 at 1.1s: low ( 3 lows,1highs )",
    "Beep 1 at 0.1 s (0 high and 1 low)",
    "beep 3: (1 high, 1 high) (2 low",
    "(999 high, 999 low)",
    "five beeps are high beep 0 is low",
    "The long one is beep 2.",
    "The long one is beep 0.",
    "High is higher than low.",
    "Beep 2 is lower than beep 7.",
    "So the answer is ",
    "So the answer is the second.",
    "the answer is:",
    "0.5",
    ". ,:;\n",
    "\u00e9\u00df\u2212\u2013 \u0663",
]


@settings(max_examples=150, deadline=None)
@given(
    task=st.sampled_from(TASKS),
    seed=st.integers(0, 3),
    think=st.one_of(
        st.text(max_size=300),
        st.lists(st.sampled_from(FRAGMENTS), max_size=12).map(" ".join),
        st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=15)), max_size=10).map("".join),
    ),
    answer=st.one_of(
        st.text(max_size=30), st.sampled_from(["1", "the second", "higher", "up then down", ""])
    ),
)
def test_arbitrary_text_never_raises(task, seed, think, answer):
    item = _ITEMS_CACHE.setdefault((task, seed), synth.generate_item(task, seed, 0)[0])
    oracle = OracleJudge()
    for it in (item, None):
        (v,) = oracle.score_batch([JudgeRequest(item["question"], item["choices"], think, answer, it)])
        assert v.consistent in (0, 1)
        assert isinstance(v.consistent, int)
        assert v.quality in GRID
        assert isinstance(v.detail, str)


_ITEMS_CACHE: dict[tuple[str, int], dict] = {}
