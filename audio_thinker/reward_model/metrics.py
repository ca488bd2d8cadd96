"""The reward model's held-out metrics and calibration, from scores already computed (numpy only: no model,
no training, so each number can be checked by hand).

:func:`train <audio_thinker.reward_model.train.train>` scores every trace with both heads, then calls
:func:`calibrate` (an isotonic map from the reward head's raw score to the quality grid, fitted on the training
traces) and :func:`heldout_metrics` (pairwise accuracy overall, by quality gap and by origin; the consistency
head's ROC AUC and accuracy; the calibrated quality's error; counts).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..judges.learned import apply_calibration
from ..rewards import quantize_quality
from .data import CORRUPTED_RUN, Pair, Trace, replicate

__all__ = [
    "GAP_BINS",
    "Heldout",
    "Split",
    "calibrate",
    "fit_isotonic",
    "heldout_arrays",
    "heldout_metrics",
    "pair_accuracy",
    "roc_auc",
]

GAP_BINS = (("gap_0.1", 0.05, 0.15), ("gap_0.2-0.3", 0.15, 0.35), ("gap_0.4+", 0.35, 9.0))
"""Rated-pair quality gaps the held-out pairwise accuracy is also reported by: (name, low, high)."""

PairScores = Callable[[Pair], tuple[float, float]]
"""The reward head's scores of a pair's chosen and rejected completions."""


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """ROC AUC by the rank formula (tied scores get their average rank); NaN with one class only."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=float)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    starts = np.cumsum(counts) - counts  # 0-based first rank of each distinct score
    ranks = (starts + (counts + 1) / 2.0)[inverse]
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def fit_isotonic(x: Sequence[float], y: Sequence[float], w: Sequence[float] | None = None) -> dict[str, list]:
    """Non-decreasing fit of y on x (pool adjacent violators); knots at the pooled blocks' mean x."""
    x_, y_ = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    w_ = np.ones_like(x_) if w is None else np.asarray(w, dtype=float)
    if x_.size == 0:
        return {"x": [0.0], "y": [0.5]}
    ux, inv = np.unique(x_, return_inverse=True)  # pool equal scores first
    sw = np.bincount(inv, w_)
    swy = np.bincount(inv, w_ * y_)
    blocks: list[list[float]] = []  # [sum w, sum w*y, sum w*x]
    for xi, wi, wyi in zip(ux, sw, swy, strict=True):
        blocks.append([wi, wyi, wi * xi])
        while len(blocks) > 1 and blocks[-2][1] / blocks[-2][0] >= blocks[-1][1] / blocks[-1][0]:
            last = blocks.pop()
            blocks[-1] = [a + b for a, b in zip(blocks[-1], last, strict=True)]
    return {"x": [b[2] / b[0] for b in blocks], "y": [b[1] / b[0] for b in blocks]}


def finite(x: float) -> float | None:
    """``x`` as a float for JSON, None when it is NaN or infinite."""
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass
class Split:
    """The rated traces and preference pairs, split by item into training and held-out parts."""

    traces: Sequence[Trace]
    train_traces: Sequence[Trace]
    eval_traces: Sequence[Trace]
    eval_items: set[int]
    pairs: Sequence[Pair]
    train_pairs: Sequence[Pair]
    eval_pairs: Sequence[Pair]
    votes: Sequence[Pair]


@dataclass
class Heldout:
    """Per held-out trace: rated quality, calibrated predicted quality, consistency label and P(consistent)."""

    rated: np.ndarray
    predicted: np.ndarray
    labels: np.ndarray
    probs: np.ndarray


def calibrate(train_traces: Sequence[Trace], reward: Mapping[int, float]) -> dict[str, list]:
    """The isotonic map from the reward head's score to the rated quality, fitted on the training traces
    (weighted as rated: human ratings count :data:`~audio_thinker.reward_model.data.HUMAN_WEIGHT` times)."""
    return fit_isotonic(
        [reward[t.generation_id] for t in train_traces],
        [t.quality for t in train_traces],
        [t.weight for t in train_traces],
    )


def heldout_arrays(
    eval_traces: Sequence[Trace],
    reward: Mapping[int, float],
    p_consistent: Mapping[int, float],
    calibration: dict,
) -> Heldout:
    """The held-out traces' rated and predicted (calibrated, on the quality grid) quality and consistency."""
    scores = [reward[t.generation_id] for t in eval_traces]
    return Heldout(
        rated=np.array([t.quality for t in eval_traces], dtype=float),
        predicted=np.array(
            [quantize_quality(v) for v in apply_calibration(calibration, scores)], dtype=float
        ),
        labels=np.array([t.consistent for t in eval_traces], dtype=float),
        probs=np.array([p_consistent[t.generation_id] for t in eval_traces], dtype=float),
    )


def pair_accuracy(pairs: Sequence[Pair], score_pair: PairScores) -> float:
    """Share of pairs whose chosen completion scores above the rejected one; NaN without pairs."""
    if not pairs:
        return float("nan")
    scores = np.array([score_pair(p) for p in pairs], dtype=float)
    return float(np.mean(scores[:, 0] > scores[:, 1]))


def stored_pair_scores(reward: Mapping[int, float]) -> PairScores:
    """Scores of pairs of stored traces by their generation ids (votes need their own scorer)."""
    return lambda p: (reward[p.chosen_id], reward[p.rejected_id])


def heldout_metrics(
    split: Split,
    reward: Mapping[int, float],
    p_consistent: Mapping[int, float],
    calibration: dict,
    score_pair: PairScores | None = None,
) -> dict[str, Any]:
    """``metrics.json``'s numbers: pairwise accuracy (held out, by gap, by origin, on training), consistency
    ROC AUC and accuracy, the calibrated quality's mean absolute error and exact share, and counts.

    ``reward`` / ``p_consistent``: each trace's raw reward-head score and P(consistent) by generation id;
    ``score_pair``: scores of any pair (default: both traces looked up in ``reward``; vote pairs need it)."""
    s = split
    score = score_pair or stored_pair_scores(reward)
    runs = {t.generation_id: t.run for t in s.traces}

    def accuracy(ps: Sequence[Pair]) -> float | None:
        return finite(pair_accuracy(ps, score))

    def corrupted(p: Pair) -> bool:
        return p.origin == "ratings" and CORRUPTED_RUN in (runs[p.chosen_id], runs[p.rejected_id])

    held = heldout_arrays(s.eval_traces, reward, p_consistent, calibration)
    by_gap = {}
    for name, lo, hi in GAP_BINS:
        sel = [p for p in s.eval_pairs if p.origin == "ratings" and lo <= p.margin < hi]
        by_gap[name] = {"pairs": len(sel), "accuracy": accuracy(sel)}
    policy = [t for t in s.eval_traces if t.run != CORRUPTED_RUN]
    train_items = {t.item_id for t in s.train_traces}
    any_eval = len(s.eval_traces) > 0
    n = len(s.traces)
    return {
        "pairwise_accuracy": accuracy(s.eval_pairs),
        "consistency_auc": finite(roc_auc(held.labels, held.probs)) if any_eval else None,
        "pairwise_accuracy_by_gap": by_gap,
        "by_origin": {  # policy: neither trace is a corrupted gold trace
            "pairwise_accuracy_policy": accuracy(
                [p for p in s.eval_pairs if p.origin == "ratings" and not corrupted(p)]
            ),
            "pairwise_accuracy_with_corrupted": accuracy([p for p in s.eval_pairs if corrupted(p)]),
            "pairwise_accuracy_votes": accuracy([p for p in s.eval_pairs if p.origin == "vote"]),
            "consistency_auc_policy": finite(
                roc_auc([t.consistent for t in policy], [p_consistent[t.generation_id] for t in policy])
            ),
            "policy_pairs": sum(p.origin == "ratings" and not corrupted(p) for p in s.eval_pairs),
        },
        "train_pairwise_accuracy": accuracy(s.train_pairs),
        "train_consistency_auc": finite(
            roc_auc(
                [t.consistent for t in s.train_traces],
                [p_consistent[t.generation_id] for t in s.train_traces],
            )
        ),
        "consistency_accuracy": finite(float(np.mean((held.probs >= 0.5) == (held.labels > 0.5))))
        if any_eval
        else None,
        "quality_mae": finite(float(np.mean(np.abs(held.predicted - held.rated)))) if any_eval else None,
        "quality_exact": finite(float(np.mean(np.isclose(held.predicted, held.rated)))) if any_eval else None,
        "counts": {
            "traces": n,
            "train_traces": len(s.train_traces),
            "eval_traces": len(s.eval_traces),
            "items": len(train_items | s.eval_items),
            "train_items": len(train_items),
            "eval_items": len(s.eval_items),
            "pairs": len(s.pairs),
            "train_pairs": len(s.train_pairs),
            "train_pairs_replicated": len(replicate(list(s.train_pairs))),
            "eval_pairs": len(s.eval_pairs),
            "vote_pairs": len(s.votes),
            "human_traces": sum("human" in t.sources for t in s.traces),
            "corrupted_traces": sum(t.run == CORRUPTED_RUN for t in s.traces),
            "corrupted_share": finite(sum(t.run == CORRUPTED_RUN for t in s.traces) / n) if n else None,
            "consistent_share": finite(float(np.mean([t.consistent for t in s.traces]))) if n else None,
            "mean_quality": finite(float(np.mean([t.quality for t in s.traces]))) if n else None,
        },
    }
