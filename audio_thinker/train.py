"""``python -m audio_thinker.train``: GRPO with the Audio-Thinker rewards, then a before/after report.

    python -m audio_thinker.train --out runs/default                  # configs/tiny.yaml, full reward
    python -m audio_thinker.train --out runs/atar --reward-set atar --max-steps 50
    python -m audio_thinker.train --config configs/qwen2-audio-7b.yaml --out runs/7b
    python -m audio_thinker.train --out runs/default --resume latest

Settings come from the dataclass defaults, then the YAML ``--config`` (default: configs/tiny.yaml), then
any ``--flag`` given on the command line (list fields take several values: ``--eval-modes think adaptive``,
``--adam-betas 0.9 0.95``; booleans ``--lora`` or ``--lora false``). The resolved config is saved as
``OUT/config.json``. After training, the starting model (think and adaptive prompts) and ``OUT/final`` (adaptive and think) are
evaluated on a fresh synth-aqa set and ``OUT/report.md`` is written with its plots.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

from .checkpoints import resume_point
from .config_args import config_parser
from .grpo import train
from .grpo_config import GRPOConfig
from .judges import llm_judge_source
from .judges.learned import read_reward_model
from .models import check_model_source, default_model_path

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(GRPOConfig))


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> GRPOConfig:
    """Dataclass defaults < YAML file < overrides; unknown keys are an error naming them."""
    values: dict[str, Any] = {}
    if path:
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ValueError(f"cannot read config {path}: {err}") from err
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    if unknown := sorted(set(values) - FIELD_NAMES):
        raise ValueError(f"unknown config key(s) {unknown}; known: {sorted(FIELD_NAMES)}")
    cfg = GRPOConfig(**values)
    cfg.validate()
    return cfg


def _parser() -> HfArgumentParser:
    """``HfArgumentParser`` over :class:`GRPOConfig` (a ``--flag`` and a help line per field, from the
    field's ``metadata["help"]``), plus ``--config`` and ``--no-report``.

    Field flags default to "not given" (absent from the parsed namespace), so that :func:`load_config` can
    put the given ones over the YAML. An optional field reads ``none`` / ``null`` as None (not given).
    """
    p = config_parser(
        GRPOConfig,
        given_only=True,
        prog="python -m audio_thinker.train",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument(
        "--config",
        default=str(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else None,
        help="YAML file of GRPOConfig fields (default: configs/tiny.yaml); flags given here override it",
    )
    p.add_argument("--no-report", action="store_true", help="skip the before/after evaluation and report")
    optional = {f.name for f in dataclasses.fields(GRPOConfig) if f.default is None}
    for action in p._actions:
        if action.dest in optional:
            action.type = _optional(action.type)
    return p


def _optional(convert):
    return lambda text: None if text.lower() in ("none", "null") else convert(text)


def main(argv=None) -> None:
    p = _parser()
    args = vars(p.parse_args(argv))
    config_path, no_report = args.pop("config"), args.pop("no_report")
    try:
        cfg = load_config(config_path, args)
    except ValueError as err:
        p.exit(2, f"error: {err}\n")
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        p.exit(2, f"error: --out {cfg.out} is a file; give a folder for the run\n")
    if cfg.resume is None and (Path(cfg.out) / "final").exists():
        p.exit(
            2,
            f"error: {cfg.out}/final exists; choose another --out, or continue that run with "
            "--resume latest and a larger --max-steps\n",
        )
    try:
        resume_point(cfg)
        check_model_source(cfg.model or default_model_path())
        if cfg.judge == "llm":
            llm_judge_source(cfg.judge_model)
        if cfg.judge == "learned":
            read_reward_model(cfg.judge_model)
    except ValueError as err:
        p.exit(2, f"error: {err}\n")
    result = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        from .report import mark_report_stale, write_report

        if not no_report and cfg.eval_per_task > 0:
            print(f"report: {write_report(cfg)}")
        elif stale := mark_report_stale(cfg.out, cfg.max_steps):
            print(f"report: {stale} is from before this run and is marked stale")
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"final": result["final"]}))


if __name__ == "__main__":
    main()
