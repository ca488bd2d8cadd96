"""What a GRPO step logs: the policy updates' sums over the processes, the reward metrics of the global
batch (by difficulty too), and the seconds of each phase."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import astuple, dataclass

import numpy as np
import torch

from . import synth
from .rewards import LOGGED_TERMS


@dataclass
class PolicyStats:
    """This process's sums over a step's policy updates (averaged over the μ iterations), then gathered."""

    loss: float = 0.0
    clip_ratio: float = 0.0  # clipped tokens
    kl: float = 0.0  # KL summed over tokens
    entropy: float = 0.0  # entropy summed over tokens
    tokens: float = 0.0  # completion tokens
    truncated: float = 0.0  # completions that hit max_new_tokens

    def gathered(self, accelerator) -> PolicyStats:
        """The sums over all processes."""
        local = torch.tensor([astuple(self)], device=accelerator.device)
        return PolicyStats(*accelerator.gather(local).sum(0).tolist())


def reward_metrics(scores: dict, items: Sequence[dict], rewards: torch.Tensor, G: int) -> dict[str, float]:
    grouped = rewards.view(-1, G)
    m = {
        "reward": float(rewards.mean()),
        "reward_std": float(grouped.std(1).mean()),
        "frac_reward_zero_std": float((grouped.std(1) < 1e-6).float().mean()),
        "accuracy": float(np.mean(scores["correct"])),
        "think_rate": float(np.mean(scores["think"])),
        "no_think_rate": 1 - float(np.mean(scores["think"])),
        "judge_failures": float(scores["judge_failures"]),
    }
    for term in LOGGED_TERMS:
        m[f"rewards/{term}/mean"] = float(np.mean(scores[term]))
    consistent = [
        c for c, t in zip(scores["judge_consistent"], scores["think"], strict=True) if t and c is not None
    ]
    m["consistency_rate"] = float(np.mean(consistent)) if consistent else float("nan")
    for d in synth.DIFFICULTIES:
        idx = [i for i, it in enumerate(items) if it.get("difficulty") == d]
        if idx:
            m[f"accuracy/{d}"] = float(np.mean([scores["correct"][i] for i in idx]))
            m[f"no_think_rate/{d}"] = 1 - float(np.mean([scores["think"][i] for i in idx]))
    return m


TERM_COLUMNS = {  # Eq. 7's summands (rewards.reward_functions' names) from the columns completions.jsonl logs
    "accuracy_reward": ("accuracy_reward",),
    "consistency_bonus": ("accuracy_reward", "consistency"),
    "format": ("format",),
    "quality": ("quality",),
}


def variance_shares(terms: dict[str, Sequence[float]], group_size: int) -> dict[str, float]:
    """Each weighted reward term's share of the within-group variance of their sum (what the group
    advantages see): Σ_groups Cov(term, total) / Σ_groups Var(total). The shares add up to 1; a term
    constant within every group has share 0. ``terms``: name -> weighted values, G per group in order."""
    values = {k: np.asarray(v, dtype=float).reshape(-1, group_size) for k, v in terms.items()}
    centred = {k: v - v.mean(1, keepdims=True) for k, v in values.items()}
    total = sum(centred.values())
    denom = float((total * total).sum())
    return {k: (float((c * total).sum()) / denom if denom > 0 else 0.0) for k, c in centred.items()}


def completion_variance_shares(records: Sequence[dict], group_size: int, cfg) -> dict[str, float]:
    """:func:`variance_shares` of a run's ``completions.jsonl`` records (whole groups, in order) with the
    weights of ``cfg`` (a GRPOConfig); the terms the run's reward set does not use are left out."""
    funcs = {f.name: f.weight for f in cfg.reward_funcs}
    terms = {
        name: [w * float(np.prod([r[c] for c in cols])) for r in records]
        for name, cols in TERM_COLUMNS.items()
        if (w := funcs.get(name)) is not None
    }
    return variance_shares(terms, group_size)


class PhaseClock:
    """Seconds spent in each phase of a step (summed over the μ iterations); waits for the GPU at each lap."""

    def __init__(self, device: torch.device):
        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        self.sync()
        now = time.perf_counter()
        self.laps[phase] = self.laps.get(phase, 0.0) + now - self.last
        self.last = now

    def total(self) -> float:
        return time.perf_counter() - self.start
