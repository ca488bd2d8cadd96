"""Traces, labels and preference pairs from the ratings store (what the reward model learns from).

A trace's label is the weighted mean of its ratings, a human rating weighing :data:`HUMAN_WEIGHT` times an
oracle or judge rating (consistency: weighted majority). Pairs: for every item, each two rated traces whose
quality differs by at least ``min_gap`` (chosen = the better one, ``margin`` = the quality gap), plus the
studio's A/B votes (``margin`` = :data:`VOTE_MARGIN`; ties and both-bad are skipped).
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..judges import JudgeRequest
from ..judges.learned import render

__all__ = [
    "BOOTSTRAP_RUN",
    "CORRUPTED_RUN",
    "HUMAN_WEIGHT",
    "VOTE_MARGIN",
    "Pair",
    "RewardModelError",
    "Trace",
    "build_pairs",
    "collect_traces",
    "replicate",
    "split_items",
    "vote_pairs",
]

BOOTSTRAP_RUN = "bootstrap"
CORRUPTED_RUN = "bootstrap-corrupted"
ORACLE = "oracle"
HUMAN_WEIGHT = 3
"""A human rating weighs this many oracle/judge ratings; human pairs and votes are replicated this often."""
VOTE_MARGIN = 0.3
"""The TRL margin of a pair from an A/B vote (rating pairs use their quality gap)."""


class RewardModelError(RuntimeError):
    """A problem the CLI reports with exit status 2 (no ratings, unknown source, bad model folder, ...)."""


# --------------------------------------------------------------------------------------------------
# Traces, labels and pairs from the store


@dataclass(frozen=True)
class Trace:
    """One rated generation with its aggregated labels."""

    generation_id: int
    item_id: int
    prompt: str
    completion: str
    consistent: int
    quality: float
    weight: int  # HUMAN_WEIGHT when a human rated it, else 1
    sources: tuple[str, ...]
    run: str | None


@dataclass(frozen=True)
class Pair:
    """A preference: ``chosen`` (completion text) beats ``rejected`` for the same prompt."""

    item_id: int
    prompt: str
    chosen: str
    rejected: str
    margin: float
    weight: int
    origin: str  # "ratings" | "vote"
    chosen_id: int
    rejected_id: int
    chosen_quality: float | None = None
    rejected_quality: float | None = None

    def trl_row(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "chosen": self.chosen,
            "rejected": self.rejected,
            "margin": self.margin,
        }


def _source_weight(source: str) -> int:
    return HUMAN_WEIGHT if source == "human" else 1


def check_sources(sources: Iterable[str] | None) -> tuple[str, ...] | None:
    """The rating sources as a tuple (None: every source); RewardModelError for an unknown one."""
    from ..store import RATING_SOURCES

    if sources is None:
        return None
    out = tuple(s.strip() for s in sources if s.strip())
    bad = [s for s in out if s not in RATING_SOURCES]
    if bad or not out:
        raise RewardModelError(
            f"unknown rating source(s) {bad or list(sources)}; choose from {list(RATING_SOURCES)}"
        )
    return out


def collect_traces(
    store: Any, sources: Iterable[str] | None = None, *, reference: bool = True
) -> list[Trace]:
    """Submitted ratings of think traces, aggregated per generation (human ratings weigh more)."""
    sources_ = check_sources(sources)
    grouped: dict[int, list[Any]] = defaultdict(list)
    for rec in store.ratings(sources_):
        if rec.consistent is None or rec.quality is None or not (rec.think or "").strip():
            continue
        grouped[rec.generation_id].append(rec)
    traces = []
    for gid in sorted(grouped):
        recs = grouped[gid]
        first = recs[0]
        weights = np.array([_source_weight(r.source) for r in recs], dtype=float)
        quality = float(np.dot(weights, [r.quality for r in recs]) / weights.sum())
        consistent = float(np.dot(weights, [float(r.consistent) for r in recs]) / weights.sum())
        prompt, completion = render(
            JudgeRequest(first.question, first.choices, first.think or "", first.answer or "", first.meta),
            reference=reference,
        )
        traces.append(
            Trace(
                generation_id=gid,
                item_id=first.item_id,
                prompt=prompt,
                completion=completion,
                consistent=int(consistent >= 0.5),
                quality=round(quality, 4),
                weight=int(weights.max()),
                sources=tuple(sorted({r.source for r in recs})),
                run=first.run,
            )  # fmt: skip
        )
    return traces


def vote_pairs(store: Any, *, reference: bool = True) -> list[Pair]:
    """Pairs from A/B votes (ties and both-bad skipped), weighted as human preferences."""
    from ..rewards import parse_completion

    metas: dict[int, Any] = {}
    pairs = []
    for v in store.votes():
        if v.preferred is None:
            continue
        if v.item_id not in metas:
            metas[v.item_id] = store.get_item(v.item_id).meta
        texts = {"A": (v.text_a, v.generation_a_id), "B": (v.text_b, v.generation_b_id)}
        (win, win_id), (lose, lose_id) = texts[v.preferred], texts["B" if v.preferred == "A" else "A"]
        rendered = []
        for raw in (win, lose):
            parsed = parse_completion(raw)
            rendered.append(
                render(
                    JudgeRequest(
                        v.question, v.choices, parsed.think or "", parsed.answer or "", metas[v.item_id]
                    ),
                    reference=reference,
                )
            )
        pairs.append(
            Pair(
                item_id=v.item_id,
                prompt=rendered[0][0],
                chosen=rendered[0][1],
                rejected=rendered[1][1],
                margin=VOTE_MARGIN,
                weight=HUMAN_WEIGHT,
                origin="vote",
                chosen_id=win_id,
                rejected_id=lose_id,
            )  # fmt: skip
        )
    return pairs


def build_pairs(traces: Sequence[Trace], votes: Sequence[Pair] = (), *, min_gap: float = 0.1) -> list[Pair]:
    """Rating pairs (same item, quality gap >= ``min_gap``, margin = gap) followed by the vote pairs."""
    by_item: dict[int, list[Trace]] = defaultdict(list)
    for t in traces:
        by_item[t.item_id].append(t)
    pairs = []
    for item_id in sorted(by_item):
        group = by_item[item_id]
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                gap = abs(a.quality - b.quality)
                if gap < min_gap - 1e-6:
                    continue
                hi, lo = (a, b) if a.quality > b.quality else (b, a)
                pairs.append(
                    Pair(
                        item_id=item_id,
                        prompt=hi.prompt,
                        chosen=hi.completion,
                        rejected=lo.completion,
                        margin=round(gap, 4),
                        weight=max(hi.weight, lo.weight),
                        origin="ratings",
                        chosen_id=hi.generation_id,
                        rejected_id=lo.generation_id,
                        chosen_quality=hi.quality,
                        rejected_quality=lo.quality,
                    )  # fmt: skip
                )
    return pairs + list(votes)


def replicate(pairs: Sequence[Pair]) -> list[Pair]:
    """Each pair ``weight`` times (how human pairs and votes outweigh oracle pairs in training)."""
    return [p for p in pairs for _ in range(max(1, int(p.weight)))]


def split_items(item_ids: Iterable[int], eval_frac: float, seed: int) -> set[int]:
    """The held-out item ids: a seeded ``eval_frac`` share of the distinct ids (at least one if > 0)."""
    ids = sorted(set(item_ids))
    if eval_frac <= 0 or len(ids) < 2:
        return set()
    random.Random(seed).shuffle(ids)
    n = min(len(ids) - 1, max(1, round(eval_frac * len(ids))))
    return set(ids[:n])
