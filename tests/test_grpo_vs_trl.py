"""``benchmarks/grpo_vs_trl.py``'s advantage check: TRL's group normalisation, computed apart from our trainer,
against the advantages our trainer logs (it can tell a different normalisation apart)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

from audio_thinker.grpo import group_advantages

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "grpo_vs_trl.py"


def _benchmark():
    spec = importlib.util.spec_from_file_location("grpo_vs_trl", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _log(path: Path, rewards: torch.Tensor, advantages: torch.Tensor) -> Path:
    """A completions.jsonl as the trainer writes it (the two fields the check reads)."""
    lines = [
        json.dumps({"total": float(r), "advantage": float(a)})
        for r, a in zip(rewards, advantages, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_advantage_check_agrees_with_the_trainer_and_catches_another_std(tmp_path):
    bench = _benchmark()
    g = bench.G
    rewards = torch.tensor([1.0, 2.0, 0.0, 2.0, 1.0, 1.0, 0.0, 2.0] * 2 + [2.0] * g)  # the last group: std 0
    logged = _log(tmp_path / "ours.jsonl", rewards, group_advantages(rewards, g, "group"))
    assert bench.check_advantages(logged) == (3 * g, 3 * g)
    grouped = rewards.view(-1, g)  # the population std (TRL's is the sample std): a different advantage
    population = (grouped - grouped.mean(1, keepdim=True)) / (
        grouped.std(1, correction=0, keepdim=True) + 1e-4
    )
    other = _log(tmp_path / "other.jsonl", rewards, population.view(-1))
    assert bench.check_advantages(other) == (g, 3 * g)  # only the zero-std group agrees
