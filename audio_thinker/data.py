"""Item files: MMAU-layout JSON (what ``evaluate`` scores and ``train --data FILE`` trains on)."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["load_items"]


def load_items(path: str | Path) -> list[dict]:
    """Items of an MMAU-layout JSON file, with ``audio_path`` resolved next to the file."""
    path = Path(path)
    try:
        items = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read MMAU-layout JSON: {err}") from err
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a JSON list of items")
    for i, item in enumerate(items):
        missing = [k for k in ("audio_id", "question", "choices", "answer") if k not in item]
        if missing:
            raise ValueError(f"{path}: item {i} lacks {', '.join(missing)}")
        item.setdefault("id", str(i))
        item["audio_path"] = str((path.parent / item["audio_id"]).resolve())
    return items
