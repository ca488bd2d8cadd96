"""``benchmarks/gpu_check.py --tiny``: the GPU check's code path (build, save, ``grpo.train`` 3 steps, timing
and memory report) at tiny size on CPU, as a subprocess; its last line is the JSON summary."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
NUMBERS = (
    "params_b",
    "trained_lora_m",
    "prompt_tokens",
    "mean_step_time_s",
    "mean_rollout_tokens_per_s",
    "peak_mem_gb",
    "predicted_mem_gb",
    "predicted_mem_as_run_gb",
    "build_s",
    "save_s",
    "load_s",
    "train_s",
)
PER_STEP = ("step_time_s", "rollout_s", "rollout_tokens_per_s", "mean_completion_tokens")


def _run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "OUT": str(tmp_path / "out"),
        "TMPDIR": str(tmp_path),
    }
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_tiny_run_reports_both_models(tmp_path):
    proc = _run(tmp_path, "--tiny", "--workdir", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary == json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert summary["mode"] == "tiny" and summary["steps"] == 3
    assert set(summary["models"]) == {"qwen2_audio", "omni_thinker"}
    for key, m in summary["models"].items():
        assert "error" not in m, (key, m["error"])
        for k in NUMBERS:
            assert isinstance(m[k], (int, float)) and math.isfinite(m[k]) and m[k] >= 0, (key, k, m.get(k))
        for k in PER_STEP:
            assert len(m[k]) == 3 and all(math.isfinite(v) and v > 0 for v in m[k]), (key, k, m[k])
        assert m["prompt_tokens"] > 75  # 3-s clip: 75 audio tokens + the text
    assert "Qwen2-Audio-7B-Instruct" in proc.stdout and "Qwen2.5-Omni-7B thinker" in proc.stdout
    assert not list(tmp_path.glob("gpu_check_*"))  # the saved models and runs are deleted


def test_without_cuda_it_says_so_and_fails(tmp_path):
    import torch

    if torch.cuda.is_available():
        return
    proc = _run(tmp_path)
    assert proc.returncode == 2
    assert proc.stdout.strip().splitlines() == [
        "gpu_check: no CUDA device found; this check needs one GPU (use --tiny for the CPU smoke run)"
    ]
