"""Export of the preference pairs (or per-trace labels) as TRL JSONL, plain JSONL or an HF dataset."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..config_args import config_field as _arg
from ..store import EXPORT_FORMATS
from .data import Pair, RewardModelError, Trace, build_pairs, collect_traces, replicate, vote_pairs
from .stepwise import STEPWISE, stepwise_rows

__all__ = ["FORMATS", "ExportConfig", "check_out", "export", "label_rows", "pair_rows"]

FORMATS = (*EXPORT_FORMATS, STEPWISE)
"""What ``export`` writes: the preference formats, and TRL stepwise step labels (:mod:`.stepwise`)."""


@dataclass
class ExportConfig:
    """Options of :func:`export` (the ``export`` subcommand: a flag and a help line per field)."""

    out: str = _arg(help="output file (trl, jsonl) or folder (hf)")
    format: str = _arg(help="trl: prompt/chosen/rejected/margin JSONL; jsonl: pairs with provenance; hf: a "
                       "datasets folder; stepwise: TRL prompt/completions/labels JSONL from flawed-step marks",
                       choices=FORMATS)  # fmt: skip
    sources: tuple[str, ...] | None = _arg(None, "rating sources, comma-separated; none: all")
    what: str = _arg(
        "pairs", "pairs (preference pairs) or labels (per-trace labels)", choices=("pairs", "labels")
    )
    reference: bool = _arg(True, "show the items' true events in the prompts (--no-reference: do not)")
    min_gap: float = _arg(0.1, "smallest quality gap that makes a preference pair")


def label_rows(traces: Sequence[Trace]) -> list[dict[str, Any]]:
    """Per-trace labels (what the consistency head trains on), one dict per trace."""
    return [
        {
            "prompt": t.prompt,
            "completion": t.completion,
            "consistent": t.consistent,
            "quality": t.quality,
            "weight": t.weight,
            "item_id": t.item_id,
            "generation_id": t.generation_id,
            "sources": list(t.sources),
            "run": t.run,
        }  # fmt: skip
        for t in traces
    ]


def pair_rows(pairs: Sequence[Pair]) -> list[dict[str, Any]]:
    """Pairs with their provenance (``weight``, ``origin``, ids, qualities), one dict per pair."""
    return [asdict(p) for p in pairs]


FILE_SUFFIXES = frozenset({".jsonl", ".json", ".csv", ".parquet", ".arrow", ".txt", ".tsv"})
"""Names that look like a file, refused as the folder of an ``hf`` dataset."""


def check_out(out: str | os.PathLike[str], fmt: str) -> None:
    """Refuse an ``--out`` that cannot hold ``fmt``: ``hf`` writes a folder, ``trl`` / ``jsonl`` a file."""
    path = Path(out)
    if fmt == "hf":
        if path.exists() and not path.is_dir():
            raise RewardModelError(f"--out {out} is a file; --format hf writes a dataset folder")
        if path.suffix.lower() in FILE_SUFFIXES:
            raise RewardModelError(
                f"--out {out} names a file, but --format hf writes a dataset folder; give a folder name, "
                "or use --format jsonl for one file"
            )
    elif path.is_dir():
        raise RewardModelError(f"--out {out} is a folder; --format {fmt} writes one file")


def export(
    store: Any,
    out: str | os.PathLike[str],
    fmt: str,
    *,
    sources: Iterable[str] | None = None,
    what: str = "pairs",
    reference: bool = True,
    min_gap: float = 0.1,
) -> int:
    """Write pairs (or per-trace labels) as ``trl`` JSONL, plain ``jsonl`` or an ``hf`` dataset, or step labels
    as ``stepwise`` JSONL (:mod:`.stepwise`; ``what`` and ``min_gap`` do not apply); rows written.

    ``trl``: exactly ``prompt``, ``chosen``, ``rejected``, ``margin``, human pairs and votes replicated
    :data:`HUMAN_WEIGHT` times (feed it to ``RewardTrainer`` as is). ``jsonl`` / ``hf``: one row per pair
    with ``weight``, ``origin``, item and generation ids and both qualities.
    """
    if fmt not in FORMATS:
        raise RewardModelError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    if what not in ("pairs", "labels"):
        raise RewardModelError(f"--what must be pairs or labels, got {what!r}")
    if fmt == STEPWISE:
        if what == "labels":
            raise RewardModelError("--format stepwise writes step labels; --what labels does not apply")
        return _export_stepwise(store, out, sources, reference)
    if what == "labels" and fmt == "trl":
        raise RewardModelError("the trl format holds preference pairs; export labels as jsonl or hf")
    check_out(out, fmt)
    traces = collect_traces(store, sources, reference=reference)
    if what == "labels":
        rows = label_rows(traces)
    else:
        pairs = build_pairs(traces, vote_pairs(store, reference=reference), min_gap=min_gap)
        rows = [p.trl_row() for p in replicate(pairs)] if fmt == "trl" else pair_rows(pairs)
    if not rows:
        raise RewardModelError(
            f"nothing to export from {store.display_url}: {len(traces)} rated think traces"
            + ("" if not traces else " but no pairs (no two traces of an item differ in quality, no votes)")
        )
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "hf":
        from datasets import Dataset

        Dataset.from_list(rows).save_to_disk(str(path))
    else:
        _write_jsonl(path, rows)
    return len(rows)


def _export_stepwise(
    store: Any, out: str | os.PathLike[str], sources: Iterable[str] | None, reference: bool
) -> int:
    """The ``stepwise`` export: TRL's ``prompt`` / ``completions`` / ``labels`` JSONL; rows written."""
    check_out(out, STEPWISE)
    rows, skipped = stepwise_rows(store, sources, reference=reference)
    if not rows:
        raise RewardModelError(
            f"nothing to export from {store.display_url}: no submitted rating marks a flawed step or gives "
            f"quality 1.0 ({skipped} found a flaw without marking its step)"
        )
    _write_jsonl(Path(out), rows)
    return len(rows)


def _write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
