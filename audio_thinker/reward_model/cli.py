"""The command line: ``python -m audio_thinker.reward_model bootstrap|train|export``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config_args import HelpFormatter, config_flags
from .bootstrap import BootstrapConfig, bootstrap
from .data import RewardModelError, check_sources
from .export import ExportConfig, export
from .train import METRICS_FILE, TrainConfig, train

__all__ = ["main"]

DESCRIPTION = (
    "The ``learned`` judge: a reward model trained from the ratings store (bootstrap, export, train, judge)."
)

# --------------------------------------------------------------------------------------------------
# CLI


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _sources(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


COMMANDS = {
    "bootstrap": (BootstrapConfig, "policy traces on synth-aqa items, rated by the oracle"),
    "train": (TrainConfig, "train both heads; write DIR/metrics.json and a plot"),
    "export": (ExportConfig, "export preference pairs (or per-trace labels)"),
}
"""Each subcommand, its config dataclass (a flag and a help line per field) and its one-line help."""
TYPES = {"temperatures": _floats, "sources": _sources, "tiny": json.loads}
"""Fields argparse cannot parse by their type: comma-separated lists, JSON."""


def _parser() -> argparse.ArgumentParser:
    """The subcommands, each an ``HfArgumentParser`` over its config dataclass, plus ``--db``, ``--threads``
    and ``--quiet`` (the same as ``--no-progress``)."""
    from transformers import HfArgumentParser

    p = argparse.ArgumentParser(prog="python -m audio_thinker.reward_model", description=DESCRIPTION)
    sub = p.add_subparsers(dest="command", required=True, parser_class=HfArgumentParser)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db", default=None,
        help="SQLAlchemy URL of the ratings store (default: $AUDIO_THINKER_DB, else annotations/ratings.db)",
    )  # fmt: skip
    common.add_argument(
        "--threads", type=int, default=1,
        help="torch CPU threads (default 1: on a shared box extra threads spin and slow everything down)",
    )  # fmt: skip
    for name, (config, help_line) in COMMANDS.items():
        c = sub.add_parser(
            name, dataclass_types=[config], parents=[common], help=help_line, description=help_line,
            formatter_class=HelpFormatter,
        )  # fmt: skip
        if any(f.name == "progress" for f in dataclasses.fields(config)):
            c.add_argument("--quiet", action="store_true", help="no progress bars (as --no-progress)")
        config_flags(c, [config], types=TYPES)
    return p


def _config(config: type, args: argparse.Namespace) -> Any:
    """The subcommand's config from the parsed flags."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(config)}
    if "progress" in values and getattr(args, "quiet", False):
        values["progress"] = False
    return config(**values)


def _run(args: argparse.Namespace) -> None:
    from ..store import Store

    if args.threads < 1:
        raise RewardModelError(f"--threads must be at least 1, got {args.threads}")
    import torch

    torch.set_num_threads(args.threads)
    if args.command == "train":
        if not 0.0 <= args.eval_frac < 1.0:
            raise RewardModelError(f"--eval-frac must be in [0, 1), got {args.eval_frac}")
        check_sources(args.sources)
    from ..store import _sqlite_file, database_url

    url = database_url(args.db)
    db_file = _sqlite_file(url)
    if args.command != "bootstrap" and db_file is not None and not db_file.is_file():
        raise RewardModelError(
            f"no database at {db_file} ({args.command} reads an existing one; bootstrap makes one)"
        )
    try:
        store = Store(url)
    except ValueError as err:
        raise RewardModelError(str(err)) from None
    with store:
        if args.command == "bootstrap":
            from ..inference import AudioLM
            from ..models import default_model_path

            cfg = _config(BootstrapConfig, args)
            path = cfg.model or default_model_path()
            try:
                lm = AudioLM.from_pretrained(path)
            except (OSError, ValueError) as err:
                raise RewardModelError(f"cannot load the policy {path}: {err}") from err
            with (
                torch.no_grad()
            ):  # own the weights: a checkpoint rewritten in place must not crash us (SIGBUS)
                for tensor in [*lm.model.parameters(), *lm.model.buffers()]:
                    tensor.data = tensor.data.clone()
            t0 = time.perf_counter()
            added = bootstrap(
                store, lm, n=cfg.n, seed=cfg.seed, temperatures=cfg.temperatures, batch_size=cfg.batch_size,
                corrupt_share=cfg.corrupt_share, max_new_tokens=cfg.max_new_tokens, model_name=path,
                split=cfg.split, progress=cfg.progress,
            )  # fmt: skip
            print(
                json.dumps(
                    {"added": added, "seconds": round(time.perf_counter() - t0, 1), "counts": store.counts()}
                )
            )
        elif args.command == "train":
            cfg = _config(TrainConfig, args)
            if not cfg.reference:  # no reference for either head
                cfg.consistency_reference = False
            metrics = train(store, cfg)
            keys = ("pairwise_accuracy", "consistency_auc", "pairwise_accuracy_by_gap", "counts", "seconds")
            print(json.dumps({k: metrics[k] for k in keys}))
            print(f"wrote {Path(args.out) / METRICS_FILE}")
        else:
            cfg = _config(ExportConfig, args)
            n = export(
                store, cfg.out, cfg.format, sources=cfg.sources, what=cfg.what, reference=cfg.reference,
                min_gap=cfg.min_gap,
            )  # fmt: skip
            print(f"wrote {n} rows to {args.out} ({args.format})")


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; problems with the input exit with status 2 and a message."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        _run(args)
    except RewardModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
