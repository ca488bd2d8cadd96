"""Agreement and ranking statistics for the Reward model tab (numpy; α by the ``krippendorff`` package).

* :func:`cohen_kappa` — two raters, nominal labels (consistency yes/no).
* :func:`pairwise_kappa` — Cohen's κ for every pair of annotators over the generations both rated.
* :func:`krippendorff_alpha` — any number of raters, missing ratings allowed, interval metric (quality),
  by the ``krippendorff`` package.
* :func:`bradley_terry` — strengths from pairwise outcomes by Hunter's (2004) MM algorithm; ties count
  half a win to each side. :func:`bt_bootstrap` adds percentile intervals by resampling the comparisons.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Cohen's κ of two equally long label sequences; None when empty or chance agreement is 1 and the
    raters disagree somewhere (undefined); 1.0 when both always give the same single label."""
    if len(a) != len(b):
        raise ValueError("cohen_kappa needs two sequences of the same length")
    if not a:
        return None
    labels = sorted(set(a) | set(b), key=str)
    index = {label: i for i, label in enumerate(labels)}
    table = np.zeros((len(labels), len(labels)))
    for x, y in zip(a, b, strict=True):
        table[index[x], index[y]] += 1
    n = table.sum()
    p_o = np.trace(table) / n
    p_e = float((table.sum(0) / n) @ (table.sum(1) / n))
    if p_e >= 1.0:
        return 1.0 if p_o >= 1.0 else None
    return float((p_o - p_e) / (1.0 - p_e))


@dataclass(frozen=True)
class PairKappa:
    """κ of one annotator pair over the ``n`` generations both of them rated."""

    a: str
    b: str
    n: int
    kappa: float | None


def pairwise_kappa(
    labels: Mapping[str, Mapping[Hashable, Hashable]], min_overlap: int = 1
) -> list[PairKappa]:
    """Cohen's κ for each pair of annotators: ``labels[annotator][unit] = label``."""
    out = []
    for a, b in combinations(sorted(labels), 2):
        shared = sorted(set(labels[a]) & set(labels[b]), key=str)
        if len(shared) >= min_overlap:
            kappa = cohen_kappa([labels[a][u] for u in shared], [labels[b][u] for u in shared])
            out.append(PairKappa(a, b, len(shared), kappa))
    return out


def mean_kappa(pairs: Sequence[PairKappa]) -> float | None:
    """Overlap-weighted mean κ over the pairs where κ is defined."""
    defined = [p for p in pairs if p.kappa is not None]
    if not defined:
        return None
    weights = np.array([p.n for p in defined], dtype=float)
    return float(np.average([p.kappa for p in defined], weights=weights))


def krippendorff_alpha(units: Mapping[Hashable, Sequence[float]] | Sequence[Sequence[float]]) -> float | None:
    """Krippendorff's α with the interval metric; ``units`` holds the values each unit received.

    Computed by the ``krippendorff`` package from each unit's value counts (which coder gave a value does
    not matter to α). Units with fewer than two values are not pairable and ignored. None when fewer than
    two pairable values exist or when every value is the same (no expected disagreement).
    """
    import krippendorff

    groups = units.values() if isinstance(units, Mapping) else units
    values = [np.asarray(v, dtype=float) for v in groups if len(v) >= 2]
    if not values:
        return None
    domain = np.unique(np.concatenate(values))
    if len(domain) < 2:
        return None
    value_counts = np.array([np.bincount(np.searchsorted(domain, v), minlength=len(domain)) for v in values])
    return float(
        krippendorff.alpha(value_counts=value_counts, value_domain=domain, level_of_measurement="interval")
    )


def bradley_terry(
    comparisons: Sequence[tuple[int, int, float]],
    n_players: int,
    *,
    iterations: int = 1000,
    tol: float = 1e-10,
    prior: float = 0.1,
) -> np.ndarray:
    """Bradley–Terry strengths (geometric mean 1) by the MM algorithm.

    ``comparisons`` are ``(i, j, s)``: player i met j and scored s ∈ [0, 1] (1 win, 0.5 tie, 0 loss).
    ``prior`` adds that many virtual ties of every player against a virtual average player, which keeps
    the estimate finite for undefeated or winless players (and for players that never met).
    """
    wins = np.zeros(n_players)
    games = np.zeros((n_players, n_players))
    for i, j, s in comparisons:
        wins[i] += s
        wins[j] += 1.0 - s
        games[i, j] += 1
        games[j, i] += 1
    p = np.ones(n_players)
    for _ in range(iterations):
        # MM update: p_i = W_i / Σ_j n_ij / (p_i + p_j), with the prior's virtual games against strength 1
        denom = (games / (p[:, None] + p[None, :])).sum(1) + 2 * prior / (p + 1.0)
        new = (wins + prior) / denom
        new /= np.exp(np.mean(np.log(new)))
        if np.max(np.abs(new - p)) < tol:
            p = new
            break
        p = new
    return p


@dataclass(frozen=True)
class Ranked:
    """One player's Bradley–Terry result on the Elo scale (400·log10 strength + 1000)."""

    name: str
    rating: float
    low: float
    high: float
    games: int
    win_rate: float


def elo_scale(strength: np.ndarray) -> np.ndarray:
    return 400.0 * np.log10(strength) + 1000.0


def bt_bootstrap(
    comparisons: Sequence[tuple[int, int, float]],
    names: Sequence[str],
    *,
    rounds: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> list[Ranked]:
    """Bradley–Terry ratings with bootstrap percentile intervals, best first."""
    n = len(names)
    if not comparisons or n == 0:
        return []
    point = elo_scale(bradley_terry(comparisons, n))
    rng = np.random.default_rng(seed)
    arr = list(comparisons)
    samples = np.empty((rounds, n))
    for r in range(rounds):
        pick = rng.integers(0, len(arr), len(arr))
        samples[r] = elo_scale(bradley_terry([arr[k] for k in pick], n, iterations=300, tol=1e-8))
    lo, hi = np.percentile(samples, [50 * (1 - level), 100 - 50 * (1 - level)], axis=0)
    lo, hi = np.minimum(lo, point), np.maximum(hi, point)  # the interval always holds the estimate
    games = np.zeros(n, dtype=int)
    score = np.zeros(n)
    for i, j, s in comparisons:
        games[i] += 1
        games[j] += 1
        score[i] += s
        score[j] += 1 - s
    rows = [
        Ranked(names[k], float(point[k]), float(lo[k]), float(hi[k]), int(games[k]),
               float(score[k] / games[k]) if games[k] else 0.0)
        for k in range(n)
    ]  # fmt: skip
    return sorted(rows, key=lambda r: -r.rating)
