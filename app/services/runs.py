"""Runs: the training runs and evaluations under the runs folder, read for the Runs tab (nothing outside it)."""

from __future__ import annotations

import json
from pathlib import Path

from .state import UserError, settings


def runs_root() -> Path:
    """The runs folder (``$AUDIO_THINKER_RUNS``), resolved."""
    return settings().runs_root.resolve()


def inside(path: Path, root: Path) -> bool:
    """Whether ``path`` (resolved) lies under ``root``."""
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


RUN_MARKERS = (
    "history.jsonl",
    "completions.jsonl",
    "ablation.json",
    "ablation.md",
    "report.md",
    "metrics.json",
)


def list_runs() -> list[str]:
    """Run directories under the runs folder (relative names): training runs (with ``history.jsonl``)
    first, newest first within each group."""
    root = runs_root()
    if not root.is_dir():
        return []
    runs = set()
    for marker in RUN_MARKERS:
        for p in root.rglob(marker):
            if len(p.relative_to(root).parts) <= 4 and inside(p, root):
                runs.add(p.parent)
    ordered = sorted(runs, key=lambda d: (not (d / "history.jsonl").is_file(), -d.stat().st_mtime))
    return [str(d.relative_to(root)) for d in ordered]


def run_dir(name: str) -> Path:
    """A run directory by its name under the runs folder (nothing outside it)."""
    root = runs_root()
    path = (root / name).resolve()
    if not name or not inside(path, root) or not path.is_dir():
        raise UserError(f"{name!r} is not a run folder under {root}.")
    return path


def _jsonl(path: Path, limit: int | None = None) -> list[dict]:
    rows: list[dict] = []
    if not path.is_file():
        return rows
    with path.open(errors="replace") as fh:
        for line in fh:
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return rows[-limit:] if limit else rows


def run_history(name: str) -> list[dict]:
    """``history.jsonl`` of a run (one dict per logged step)."""
    return _jsonl(run_dir(name) / "history.jsonl")


def run_completions(name: str, limit: int = 30) -> list[dict]:
    """The last ``limit`` sampled completions of a run."""
    return _jsonl(run_dir(name) / "completions.jsonl", limit)


def run_predictions(name: str, limit: int = 30) -> list[dict]:
    """The first ``limit`` predictions of an evaluation folder."""
    path = run_dir(name) / "predictions.json"
    if not path.is_file():
        return []
    try:
        rows = json.loads(path.read_text())
    except json.JSONDecodeError:
        return []
    return rows[:limit] if isinstance(rows, list) else []


def run_text(name: str, filename: str) -> str | None:
    """A small text file of a run (``ablation.md``, ``report.md``, ``metrics.json``, ...), if present."""
    if filename not in ("ablation.md", "ablation.json", "report.md", "metrics.json", "config.json"):
        raise UserError(f"{filename} is not a run file the studio shows.")
    path = run_dir(name) / filename
    if not path.is_file() or path.stat().st_size > 2 * 2**20:
        return None
    return path.read_text(errors="replace")


def run_images(name: str) -> list[str]:
    """PNG plots a run wrote (report plots)."""
    return [str(p) for p in sorted(run_dir(name).glob("*.png"))]
