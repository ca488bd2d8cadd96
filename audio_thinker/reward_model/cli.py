"""The command line: ``python -m audio_thinker.reward_model bootstrap|train|export``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..store import EXPORT_FORMATS
from .bootstrap import DEFAULT_TEMPERATURES, bootstrap
from .data import RewardModelError, check_sources
from .export import export
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


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m audio_thinker.reward_model", description=DESCRIPTION)
    sub = p.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db", default=None,
        help="SQLAlchemy URL of the ratings store (default: $AUDIO_THINKER_DB, else annotations/ratings.db)",
    )  # fmt: skip
    common.add_argument(
        "--threads", type=int, default=1,
        help="torch CPU threads (default 1: on a shared box extra threads spin and slow everything down)",
    )  # fmt: skip

    b = sub.add_parser(
        "bootstrap", parents=[common], help="policy traces on synth-aqa items, rated by the oracle"
    )
    b.add_argument("--n", type=int, default=2000, help="synth-aqa items (traces: n x temperatures)")
    b.add_argument(
        "--model", default=None, help="policy folder (default: $AUDIO_THINKER_MODEL or the shipped one)"
    )
    b.add_argument(
        "--temperatures", type=_floats, default=DEFAULT_TEMPERATURES, help="comma-separated ladder"
    )
    b.add_argument(
        "--corrupt-share", type=float, default=0.0, help="share of corrupted gold traces (default 0)"
    )
    b.add_argument("--batch-size", type=int, default=32)
    b.add_argument("--max-new-tokens", type=int, default=None)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--split", default="rm", help="synth split name in the item ids")
    b.add_argument("--quiet", action="store_true", help="no progress bar")

    t = sub.add_parser("train", parents=[common], help="train both heads; write DIR/metrics.json and a plot")
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument(
        "--sources", type=_sources, default=None, help="rating sources, e.g. human,oracle (default: all)"
    )
    t.add_argument(
        "--base", default=None, help="HF sequence-classification base (default: tiny model from scratch)"
    )
    t.add_argument("--tokenizer", default=None, help="tokenizer path (default: the base's or the project's)")
    t.add_argument(
        "--no-reference", action="store_true", help="do not show the items' true events to the model"
    )
    t.add_argument(
        "--consistency-reference", action="store_true",
        help="show the true events to the consistency head too (default: it reads the reasoning alone)",
    )  # fmt: skip
    t.add_argument("--eval-frac", type=float, default=0.2, help="share of items held out for the metrics")
    t.add_argument("--min-gap", type=float, default=0.1, help="smallest quality gap that makes a pair")
    t.add_argument(
        "--epochs", type=float, default=TrainConfig.epochs, help="reward-head epochs over the pairs"
    )
    t.add_argument("--consistency-epochs", type=float, default=TrainConfig.consistency_epochs)
    t.add_argument("--lr", type=float, default=None, help="learning rate (default 1e-3 tiny, 2e-5 base)")
    t.add_argument("--batch-size", type=int, default=TrainConfig.batch_size, help="pairs per step")
    t.add_argument("--max-length", type=int, default=TrainConfig.max_length)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument(
        "--tiny", type=json.loads, default=None, help='TINY_CONFIG overrides, JSON: {"num_hidden_layers": 3}'
    )
    t.add_argument("--init", default=None, help="policy folder whose text decoder initialises the tiny model")
    t.add_argument("--quiet", action="store_true", help="no progress bars")

    e = sub.add_parser("export", parents=[common], help="export preference pairs (or per-trace labels)")
    e.add_argument("--out", required=True, help="output file (trl, jsonl) or folder (hf)")
    e.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    e.add_argument("--sources", type=_sources, default=None, help="rating sources (default: all)")
    e.add_argument("--what", default="pairs", choices=("pairs", "labels"))
    e.add_argument("--no-reference", action="store_true")
    e.add_argument("--min-gap", type=float, default=0.1)
    return p


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

            path = args.model or default_model_path()
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
                store, lm, n=args.n, seed=args.seed, temperatures=args.temperatures, batch_size=args.batch_size,
                corrupt_share=args.corrupt_share, max_new_tokens=args.max_new_tokens, model_name=path,
                split=args.split, progress=not args.quiet,
            )  # fmt: skip
            print(
                json.dumps(
                    {"added": added, "seconds": round(time.perf_counter() - t0, 1), "counts": store.counts()}
                )
            )
        elif args.command == "train":
            cfg = TrainConfig(
                out=args.out, sources=args.sources, base=args.base, tokenizer=args.tokenizer,
                reference=not args.no_reference, consistency_reference=args.consistency_reference and not args.no_reference,
                eval_frac=args.eval_frac, min_gap=args.min_gap,
                epochs=args.epochs, consistency_epochs=args.consistency_epochs, lr=args.lr,
                batch_size=args.batch_size, max_length=args.max_length, seed=args.seed, progress=not args.quiet,
                tiny=args.tiny, init=args.init,
            )  # fmt: skip
            metrics = train(store, cfg)
            keys = ("pairwise_accuracy", "consistency_auc", "pairwise_accuracy_by_gap", "counts", "seconds")
            print(json.dumps({k: metrics[k] for k in keys}))
            print(f"wrote {Path(args.out) / METRICS_FILE}")
        else:
            n = export(
                store, args.out, args.format, sources=args.sources, what=args.what,
                reference=not args.no_reference, min_gap=args.min_gap,
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
