"""Every command of the package runs from outside the repository (installed as the README says)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

COMMANDS = ["synth", "evaluate", "train", "warmstart", "reward_model", "ablate", "fidelity"]


@pytest.mark.parametrize("module", COMMANDS)
def test_command_runs_from_outside_the_repository(module, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-m", f"audio_thinker.{module}", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage" in proc.stdout.lower()
