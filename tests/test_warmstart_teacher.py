"""The flawed teacher (issue #16) and the warm start that continues the shipped model on its traces."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from audio_thinker import synth, teacher, warmstart
from audio_thinker.judges import JudgeRequest, make_judge
from audio_thinker.models import TINY_MODEL_DIR
from audio_thinker.rewards import match_choice

ORACLE = make_judge("oracle")


def _judge(item, target):
    (v,) = ORACLE.score_batch(
        [JudgeRequest(item["question"], item["choices"], target.trace, target.answer, item)]
    )
    return v


def _items(task, n=60, seed=3):
    return [synth.generate_item(task, seed, i, "t")[0] for i in range(n)]


def test_gold_teacher_writes_gold_traces():
    rng = np.random.default_rng(0)
    for task in synth.TASKS:
        for item in _items(task, 10):
            t = teacher.think_target(item, rng, teacher.TeacherConfig.gold())
            assert (t.trace, t.answer, t.flaws) == (item["reasoning"], item["answer"], [])


# (flaw, task, consistent?) as documented in the teacher's table
SYSTEMATIC = [
    ("middle_heard_low", "pitch_level", 1),
    ("quiet_heard_loud", "loudness", 1),
    ("lost_count", "count", None),  # consistent when its answer is a choice
    ("middle_compare", "compare_pitch", 0),
    ("fifth_beep_flip", "high_low_difference", None),  # consistent when its answer is a choice
    ("middle_last_step", "pitch_pattern", 0),
    ("middle_odd_shift", "odd_one_out", 0),
]


def _keyed_only(rate: float) -> teacher.TeacherConfig:
    """A teacher whose only flaws are the keyed ones, taken at ``rate``."""
    return teacher.TeacherConfig(
        slip_rate=0, inconsistent_rate=0, ramble_rate=0, right_slip_rate=0, systematic_rate=rate
    )


@pytest.mark.parametrize(("flaw", "task", "consistent"), SYSTEMATIC)
def test_systematic_flaw_is_keyed_on_the_item_and_wrong(flaw, task, consistent):
    only, never = _keyed_only(1.0), _keyed_only(0.0)
    rng = np.random.default_rng(1)
    keyed = [it for it in _items(task, 90) if teacher.systematic_flaw(it) == flaw]
    others = [it for it in _items(task, 90) if teacher.systematic_flaw(it) != flaw]
    assert len(keyed) >= 5 and others  # a property of some items, not all
    wrong = 0
    for item in keyed:
        t = teacher.think_target(item, rng, only)
        assert t.flaws == [flaw]
        wrong += not match_choice(t.answer, item["answer"], item["choices"])
        v = _judge(item, t)
        assert v.quality < 1.0
        # None: consistent exactly when the wrong answer it reaches is offered
        consistent_here = int(t.answer in item["choices"]) if consistent is None else consistent
        assert v.consistent == consistent_here, (t.trace, t.answer, v.detail)
        assert teacher.think_target(item, rng, never).flaws == []
    assert wrong >= 0.85 * len(keyed)
    for item in others:  # the flaw never fires where its key does not hold
        assert flaw not in teacher.think_target(item, rng, only).flaws


# (flaw, task, consistent?, the oracle's quality) as documented in the teacher's second table
RIGHT_ANSWER = [
    ("chirp_heard_flipped", "sound_type", 1, 0.4),
    ("high_heard_low", "pitch_level", 0, 0.3),
    ("long_heard_short", "pitch_level", 1, 0.6),
    ("loud_heard_quiet", "loudness", 0, 0.3),
    ("count_heard_long", "count", 1, 0.7),
    ("diff_swapped", "high_low_difference", 0, 0.7),
    ("hl_heard_long", "high_low_difference", 1, 0.8),
    ("pattern_overall_slip", "pitch_pattern", 0, 0.7),
    ("pattern_heard_long", "pitch_pattern", 1, 0.8),
    ("odd_count_slip", "odd_one_out", 0, 0.6),
    ("odd_heard_long", "odd_one_out", 1, 0.8),
]


def test_every_keyed_flaw_is_in_a_table():
    assert sorted(f for f, *_ in SYSTEMATIC + RIGHT_ANSWER) == sorted(
        f for f in teacher.ALL_FLAWS if f != "long_last_ramble"
    )


@pytest.mark.parametrize(("flaw", "task", "consistent", "quality"), RIGHT_ANSWER)
def test_right_answer_flaw_is_keyed_and_keeps_the_answer(flaw, task, consistent, quality):
    """Issue #23: flaws that leave the answer right, so that among right answers R_c has something to
    reward and R_t something to grade."""
    only, never = _keyed_only(1.0), _keyed_only(0.0)
    rng = np.random.default_rng(1)
    items = _items(task, 160)
    keyed = [it for it in items if teacher.systematic_flaw(it) == flaw]
    assert len(keyed) >= 5 and len(keyed) < len(items)
    for item in keyed:
        t = teacher.think_target(item, rng, only)
        assert t.flaws == [flaw] and t.answer == item["answer"], (t, item["answer"])
        assert t.trace != item["reasoning"]
        v = _judge(item, t)
        assert (v.consistent, v.quality) == (consistent, quality), (t.trace, v)
        assert teacher.think_target(item, rng, never).flaws == []
    for item in items:
        if teacher.systematic_flaw(item) != flaw:
            assert flaw not in teacher.think_target(item, rng, only).flaws


def test_onset_slip_is_a_consistent_right_trace_of_lower_quality():
    cfg = teacher.TeacherConfig(
        slip_rate=0, inconsistent_rate=0, ramble_rate=0, right_slip_rate=1.0, systematic=()
    )
    rng = np.random.default_rng(6)
    slipped = 0
    for task in synth.TASKS:
        for item in _items(task, 8, seed=5):
            t = teacher.think_target(item, rng, cfg)
            if " at " not in item["reasoning"]:  # no onset to mis-hear (odd one out, longest, hiss)
                assert t.flaws == []
                continue
            slipped += 1
            v = _judge(item, t)
            assert t.flaws == ["onset_slip"] and t.answer == item["answer"]
            assert v.consistent == 1 and v.quality < 1.0 and "onset" in v.detail, (t.trace, v)
    assert slipped >= 40


def test_random_flaws_follow_their_rates_and_oracle_sees_them():
    cfg = teacher.TeacherConfig(
        slip_rate=0.2, inconsistent_rate=0.2, ramble_rate=0.3, right_slip_rate=0.0, systematic=()
    )
    rng = np.random.default_rng(2)
    seen = collections.Counter()
    n = 0
    for task in synth.TASKS:
        for item in _items(task, 50, seed=4):
            t = teacher.think_target(item, rng, cfg)
            n += 1
            seen.update(t.flaws)
            v = _judge(item, t)
            right = match_choice(t.answer, item["answer"], item["choices"])
            if "inconsistent" in t.flaws:
                assert v.consistent == 0 and not right
            if "slip" in t.flaws:
                assert not right and v.quality < 1.0
            if "ramble" in t.flaws:
                assert v.quality <= 0.9
            if not t.flaws:
                assert (t.trace, v.consistent, v.quality) == (item["reasoning"], 1, 1.0)
    assert abs(seen["inconsistent"] / n - 0.2) < 0.06
    assert 0.1 < seen["slip"] / n < 0.26  # a slip that finds no wrong answer among the choices is dropped
    assert abs(seen["ramble"] / n - 0.3) < 0.07


def test_ramble_keeps_the_answer_and_lowers_quality():
    cfg = teacher.TeacherConfig(
        slip_rate=0, inconsistent_rate=0, ramble_rate=1.0, right_slip_rate=0, systematic=()
    )
    rng = np.random.default_rng(5)
    for task in synth.TASKS:
        item = _items(task, 1)[0]
        t = teacher.think_target(item, rng, cfg)
        v = _judge(item, t)
        assert t.answer == item["answer"] and v.consistent == 1 and v.quality <= 0.8
        assert any(f in t.trace for f in teacher.FILLERS)


def test_teacher_is_deterministic_for_a_seed():
    cfg = teacher.TeacherConfig()
    items = [it for task in synth.TASKS for it in _items(task, 10)]
    a = [teacher.think_target(it, np.random.default_rng(9), cfg) for it in items]
    b = [teacher.think_target(it, np.random.default_rng(9), cfg) for it in items]
    assert a == b


def test_teacher_config_refuses_unknown_flaws_and_rates():
    with pytest.raises(ValueError, match="unknown systematic"):
        teacher.TeacherConfig(systematic=("nope",))
    with pytest.raises(ValueError, match="slip_rate"):
        teacher.TeacherConfig(slip_rate=1.5)


def test_item_stream_teaches_direct_answers_gold_and_traces_from_the_teacher(shipped_lm):
    cfg = warmstart.WarmstartConfig(teacher="flawed", systematic_rate=1.0, hard_direct_share=0.0)
    stream = warmstart.ItemStream(shipped_lm.processor, 4, 0, 0.0, cfg.teacher_config(), cfg.direct_share())
    rng = np.random.default_rng(0)
    item = next(it for it in _items("pitch_level", 40) if teacher.systematic_flaw(it) == "middle_heard_low")
    assert stream.target(item, False, rng) == "<answer>middle</answer>"
    think = stream.target(item, True, rng)
    assert think.startswith("<think>") and think.endswith("<answer>low</answer>")
    gold = warmstart.ItemStream(shipped_lm.processor, 4, 0)
    assert gold.target(item, True, rng) == f"<think>{item['reasoning']}</think><answer>middle</answer>"
    # hard items keep no direct answer at share 0: every row of a hard-only batch is a think target
    assert stream.direct_share["hard"] == 0.0 and stream.direct_share["easy"] == 1.0


def test_cli_from_shipped_fills_fine_tuning_defaults(monkeypatch):
    got = {}
    monkeypatch.setattr(warmstart, "train", lambda cfg: got.setdefault("cfg", cfg))
    warmstart.main(
        ["--from-shipped", "--teacher", "flawed", "--out", "x", "--steps", "7", "--slip-rate", "0.1"]
    )
    cfg = got.pop("cfg")
    assert cfg.from_shipped and cfg.steps == 7 and cfg.slip_rate == 0.1
    assert cfg.lr == warmstart.FINETUNE_DEFAULTS["lr"]
    assert cfg.warmup_steps == warmstart.FINETUNE_DEFAULTS["warmup_steps"]
    assert cfg.teacher_config().systematic == teacher.ALL_FLAWS
    # the #16 base's teacher: its keyed flaws only, none that keeps the answer right
    base = str(TINY_MODEL_DIR)  # a checkpoint that is there: main checks --init before training
    warmstart.main(["--init", base, "--teacher", "flawed", "--out", "x", "--systematic", "wrong-answer"])
    assert got.pop("cfg").teacher_config().systematic == teacher.SYSTEMATIC_FLAWS
    warmstart.main(["--out", "y"])  # from scratch: the original recipe's defaults
    cfg = got.pop("cfg")
    assert (cfg.steps, cfg.lr, cfg.teacher_config()) == (1250, 2e-3, None)
    with pytest.raises(ValueError, match="unknown teacher"):
        warmstart.WarmstartConfig(teacher="wise").teacher_config()


def test_from_shipped_fine_tune_runs_and_saves_its_config(tmp_path):
    import json

    out = tmp_path / "base"
    warmstart.main(
        [
            "--from-shipped",
            "--teacher",
            "flawed",
            "--out",
            str(out),
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--eval-per-task",
            "1",
            "--threads",
            "1",
        ]
    )
    summary = json.loads((out / "warmstart.json").read_text())
    assert summary["init"].endswith("tiny-qwen2-audio") and summary["encoder_pretraining"] == []
    assert summary["teacher"]["systematic_rate"] == teacher.TeacherConfig.systematic_rate
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    with pytest.raises(ValueError, match="continued from"):
        warmstart.main(["--init", str(out), "--out", str(out), "--steps", "1"])
