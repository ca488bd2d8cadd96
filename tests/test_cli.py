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


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
    "argv,says",
    [
        (["synth", "--out", "out", "--n", "-3"], "--n must be at least 1, got -3"),
        (["evaluate", "--data", "items.json", "--limit", "-1"], "--limit must be at least 1, got -1"),
        (["evaluate", "--data", "items.json", "--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["evaluate", "--data", "items.json", "--out", "taken.json"], "--out taken.json is a file"),
        (
            ["evaluate", "--data", "items.json", "--out", "out"],
            "1 of 1 items have a clip that cannot be used",
        ),
    ],
    ids=["synth-n", "evaluate-limit", "evaluate-batch-size", "evaluate-out-file", "evaluate-missing-clip"],
)
def test_bad_input_is_a_one_line_error(argv, says, tmp_path):
    """This checkout's commands, as a user runs them: exit status 2, one line on stderr, no traceback."""
    (tmp_path / "items.json").write_text(
        '[{"audio_id": "gone.wav", "question": "q?", "choices": ["a", "b"], "answer": "a"}]'
    )
    (tmp_path / "taken.json").write_text("an earlier evaluation")
    module, *args = argv
    proc = subprocess.run(
        [sys.executable, "-m", f"audio_thinker.{module}", *args],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    err = proc.stderr.strip()
    assert proc.returncode == 2 and "\n" not in err and err.startswith("error: ") and says in err, err
    assert not (tmp_path / "out").exists()
    assert (tmp_path / "taken.json").read_text() == "an earlier evaluation"
