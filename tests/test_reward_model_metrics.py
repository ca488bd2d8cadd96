"""The reward model's held-out metrics and calibration from given scores: no model, no training."""

from __future__ import annotations

import numpy as np
import pytest

from audio_thinker.reward_model.data import CORRUPTED_RUN, Pair, Trace
from audio_thinker.reward_model.metrics import (
    Split,
    calibrate,
    heldout_arrays,
    heldout_metrics,
    pair_accuracy,
)


def _trace(gid: int, item: int, quality: float, consistent: int, run: str | None = "bootstrap", human=False):
    return Trace(gid, item, f"q{item}", f"trace {gid}", consistent, quality, 3 if human else 1,
                 ("human",) if human else ("oracle",), run)  # fmt: skip


def _pair(a: Trace, b: Trace, origin: str = "ratings") -> Pair:
    return Pair(a.item_id, a.prompt, a.completion, b.completion, round(a.quality - b.quality, 2), 1, origin,
                a.generation_id, b.generation_id, a.quality, b.quality)  # fmt: skip


def _world():
    """Item 1 trains, items 2 and 3 are held out; the reward head ranks item 2 right, item 3 wrong."""
    t = [
        _trace(1, 1, 1.0, 1), _trace(2, 1, 0.5, 0),  # training
        _trace(3, 2, 1.0, 1), _trace(4, 2, 0.8, 1, human=True),  # held out, gap 0.2: ranked right
        _trace(5, 3, 0.9, 1), _trace(6, 3, 0.3, 0, run=CORRUPTED_RUN),  # held out, gap 0.6: ranked wrong
    ]  # fmt: skip
    reward = {1: 2.0, 2: -1.0, 3: 1.5, 4: 0.5, 5: -0.5, 6: 0.0}
    p_cons = {1: 0.9, 2: 0.2, 3: 0.8, 4: 0.6, 5: 0.4, 6: 0.3}
    pairs = [_pair(t[0], t[1]), _pair(t[2], t[3]), _pair(t[4], t[5])]
    split = Split(t, t[:2], t[2:], {2, 3}, pairs, pairs[:1], pairs[1:], [])
    return split, reward, p_cons


def test_pair_accuracy_counts_chosen_above_rejected():
    split, reward, _ = _world()
    score = lambda p: (reward[p.chosen_id], reward[p.rejected_id])  # noqa: E731
    assert pair_accuracy(split.eval_pairs, score) == 0.5
    assert pair_accuracy(split.train_pairs, score) == 1.0
    assert np.isnan(pair_accuracy([], score))


def test_calibration_maps_the_training_scores_to_their_rated_quality():
    split, reward, p_cons = _world()
    cal = calibrate(split.train_traces, reward)
    assert cal == {"x": [-1.0, 2.0], "y": [0.5, 1.0]}
    held = heldout_arrays(split.eval_traces, reward, p_cons, cal)
    assert held.rated.tolist() == [1.0, 0.8, 0.9, 0.3]
    assert held.labels.tolist() == [1, 1, 1, 0] and held.probs.tolist() == [0.8, 0.6, 0.4, 0.3]
    assert all(0.5 <= q <= 1.0 for q in held.predicted)  # within the calibration's range, on the grid


def test_heldout_metrics_by_hand():
    split, reward, p_cons = _world()
    m = heldout_metrics(split, reward, p_cons, calibrate(split.train_traces, reward))
    assert m["pairwise_accuracy"] == 0.5 and m["train_pairwise_accuracy"] == 1.0
    assert m["pairwise_accuracy_by_gap"] == {
        "gap_0.1": {"pairs": 0, "accuracy": None},
        "gap_0.2-0.3": {"pairs": 1, "accuracy": 1.0},
        "gap_0.4+": {"pairs": 1, "accuracy": 0.0},
    }
    # held-out consistency: labels 1,1,1,0 with P 0.8,0.6,0.4,0.3: every positive above the negative
    assert m["consistency_auc"] == 1.0 and m["consistency_accuracy"] == 0.75
    assert m["by_origin"]["pairwise_accuracy_with_corrupted"] == 0.0
    assert m["by_origin"]["pairwise_accuracy_policy"] == 1.0 and m["by_origin"]["policy_pairs"] == 1
    assert (
        m["by_origin"]["pairwise_accuracy_votes"] is None and m["by_origin"]["consistency_auc_policy"] is None
    )
    assert m["train_consistency_auc"] == 1.0
    c = m["counts"]
    assert (c["traces"], c["train_traces"], c["eval_traces"], c["items"], c["eval_items"]) == (6, 2, 4, 3, 2)
    assert (c["human_traces"], c["corrupted_traces"], c["pairs"]) == (1, 1, 3)
    assert c["corrupted_share"] == pytest.approx(1 / 6) and c["consistent_share"] == pytest.approx(4 / 6)


def test_vote_pairs_are_scored_by_the_given_scorer():
    split, reward, p_cons = _world()
    vote = Pair(2, "q2", "a vote's answer", "another answer", 0.5, 3, "vote", -1, -2)
    split.eval_pairs = [*split.eval_pairs, vote]
    texts = {"a vote's answer": 1.0, "another answer": 2.0}

    def score(p):
        if p.origin == "vote":
            return texts[p.chosen], texts[p.rejected]
        return reward[p.chosen_id], reward[p.rejected_id]

    m = heldout_metrics(split, reward, p_cons, calibrate(split.train_traces, reward), score)
    assert m["by_origin"]["pairwise_accuracy_votes"] == 0.0 and m["pairwise_accuracy"] == pytest.approx(1 / 3)
