"""The shipped tiny model hears and reasons: thresholds of the foundation issue on a fresh synth-aqa set.

Greedy decoding on a fixed unseen seed, so the numbers are deterministic; a regression in the model, the
prompts, the processor or the inference path shows up here.
"""

from __future__ import annotations

import pytest

from audio_thinker.evaluate import evaluate
from audio_thinker.report import eval_items

pytestmark = pytest.mark.slow  # minutes of model evaluation

SEED, PER_TASK = 20261122, 20


@pytest.fixture(scope="module")
def items():
    return eval_items(SEED, PER_TASK)


@pytest.fixture(scope="module")
def think(shipped_lm, items):
    return evaluate(shipped_lm, items, mode="think", progress=False)[1]


@pytest.fixture(scope="module")
def no_think(shipped_lm, items):
    return evaluate(shipped_lm, items, mode="no-think", progress=False)[1]


def _acc(metrics, difficulty):
    return metrics["by_difficulty"][difficulty]["accuracy"]


def test_think_mode_accuracy_by_difficulty(think):
    assert _acc(think, "easy") >= 0.90
    assert _acc(think, "medium") >= 0.75
    assert _acc(think, "hard") >= 0.50
    assert think["no_think_rate"] == 0.0  # the think prompt is followed


def test_thinking_matters_on_hard_items(think, no_think):
    # The foundation issue's 15-point gap on hard items (the README measures ~60 on 40-per-task sets).
    assert _acc(think, "hard") >= _acc(no_think, "hard") + 0.15
    for task in ("high_low_difference", "pitch_pattern", "odd_one_out"):  # on every hard task
        assert think["by_sub_category"][task]["accuracy"] > no_think["by_sub_category"][task]["accuracy"]
    assert _acc(no_think, "easy") >= 0.90  # direct answers are fine where no reasoning is needed
    assert no_think["no_think_rate"] == 1.0  # the no-think prompt is followed


def test_the_model_listens(shipped_lm, items, think):
    _, hiss = evaluate(shipped_lm, items, mode="think", audio_ablation="hiss", progress=False)
    assert hiss["accuracy"] <= think["accuracy"] - 0.30


def test_adaptive_prompt_gives_both_modes(shipped_lm, items):
    preds, metrics = evaluate(shipped_lm, items, mode="adaptive", temperature=1.0, seed=0, progress=False)
    assert 0.1 <= metrics["no_think_rate"] <= 0.9
    assert sum(p["output_mode"] == "invalid" for p in preds) <= 0.05 * len(preds)
