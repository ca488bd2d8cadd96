"""``python -m audio_thinker.train``: GRPO with the Audio-Thinker rewards, then a before/after report.

    python -m audio_thinker.train --out runs/default                  # configs/tiny.yaml, full reward
    python -m audio_thinker.train --out runs/atar --reward-set atar --max-steps 50
    python -m audio_thinker.train --config configs/qwen2-audio-7b.yaml --out runs/7b
    python -m audio_thinker.train --out runs/default --resume latest

Settings come from the dataclass defaults, then the YAML ``--config`` (default: configs/tiny.yaml), then
any ``--flag`` given on the command line. The resolved config is saved as ``OUT/config.json``. After
training, the starting model (think and adaptive prompts) and ``OUT/final`` (adaptive and think) are
evaluated on a fresh synth-aqa set and ``OUT/report.md`` is written with its plots.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import yaml

from .grpo import GRPOConfig, resume_point, train
from .judges import llm_judge_source
from .models import check_model_source, default_model_path

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> GRPOConfig:
    """Dataclass defaults < YAML file < overrides; unknown keys are an error naming them."""
    values: dict[str, Any] = {}
    if path:
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ValueError(f"cannot read config {path}: {err}") from err
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    names = {f.name for f in dataclasses.fields(GRPOConfig)}
    if unknown := sorted(set(values) - names):
        raise ValueError(f"unknown config key(s) {unknown}; known: {sorted(names)}")
    cfg = GRPOConfig(**values)
    cfg.validate()
    return cfg


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m audio_thinker.train",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--config", default=str(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else None)
    p.add_argument("--no-report", action="store_true", help="skip the before/after evaluation and report")
    for f in dataclasses.fields(GRPOConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        else:
            p.add_argument(
                flag,
                dest=f.name,
                type=_CONVERTERS.get(f.type, yaml.safe_load),
                default=None,
                metavar=f.type.upper(),
            )
    return p


def _optional(convert):
    return lambda text: None if text.lower() in ("none", "null") else convert(text)


# command-line text -> value, by the field's annotation; anything else (lists, tuples) is read as YAML
_CONVERTERS = {
    "int": int,
    "float": float,
    "str": str,
    "float | None": _optional(float),
    "str | None": _optional(str),
}


def main(argv=None) -> None:
    p = _parser()
    args = vars(p.parse_args(argv))
    config_path, no_report = args.pop("config"), args.pop("no_report")
    try:
        cfg = load_config(config_path, args)
    except ValueError as err:
        p.exit(2, f"error: {err}\n")
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
    except ValueError as err:
        p.exit(2, f"error: {err}\n")
    result = train(cfg)
    if not no_report and cfg.eval_per_task > 0 and int(os.environ.get("RANK", "0")) == 0:
        from .report import write_report

        path = write_report(cfg)
        print(f"report: {path}")
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"final": result["final"]}))


if __name__ == "__main__":
    main()
