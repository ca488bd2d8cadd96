"""``benchmarks/paired_think.py``: the judge's numbers on the items a run still thinks on, run against reference."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from audio_thinker.prompts import NO_THINK_OUTPUT, THINK_OUTPUT

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "paired_think.py"


def _pred(i: int, sub: str, mode: str, consistent: int, correct: bool = True) -> dict:
    think = mode == "think"
    return {
        "id": f"x{i}",
        "sub-category": sub,
        "difficulty": "hard" if sub == "hard_task" else "easy",
        "task": "t",
        "output_mode": THINK_OUTPUT if think else NO_THINK_OUTPUT,
        "correct": correct,
        "consistent": consistent if think else None,
        "think_quality": (1.0 if consistent else 0.5) if think else None,
        "completion_tokens": 40 if think else 5,
        "model_prediction": "a",
    }


def _files(tmp_path: Path) -> tuple[Path, Path]:
    # reference thinks everywhere: easy items consistent, hard ones half inconsistent (overall 0.75);
    # the run answers easy items directly and fixes every hard trace but one (overall 0.75 too)
    ref = [_pred(i, "easy_task", "think", 1) for i in range(4)]
    ref += [_pred(4 + i, "hard_task", "think", i % 2) for i in range(4)]
    run = [_pred(i, "easy_task", "no-think", 1) for i in range(4)]
    run += [_pred(4 + i, "hard_task", "think", int(i != 0)) for i in range(4)]
    paths = tmp_path / "ref.json", tmp_path / "run.json"
    for path, rows in zip(paths, (ref, run), strict=True):
        path.write_text(json.dumps(rows))
    return paths


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=ROOT)


def test_paired_compares_on_the_items_the_run_thinks_on(tmp_path: Path) -> None:
    ref, run = _files(tmp_path)
    out = tmp_path / "paired.json"
    proc = _run("--ref", str(ref), "--run", str(run), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["n_run_thinks"] == 4
    assert result["run"]["consistency_rate"] == 0.75 and result["ref"]["consistency_rate"] == 0.5
    assert list(result["by_sub_category"]) == ["hard_task"]
    assert "4 of 8 items thought on by the run" in proc.stdout


def test_paired_refuses_sets_that_differ_in_one_line(tmp_path: Path) -> None:
    ref, run = _files(tmp_path)
    ref.write_text(json.dumps(json.loads(ref.read_text())[:6]))
    proc = _run("--ref", str(ref), "--run", str(run))
    assert proc.returncode != 0
    assert proc.stderr.strip().count("\n") == 0 and "not in the reference" in proc.stderr
    proc = _run("--ref", str(tmp_path / "none.json"), "--run", str(run))
    assert proc.returncode != 0 and "none.json" in proc.stderr and "Traceback" not in proc.stderr
