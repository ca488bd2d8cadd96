"""The paper's Table 1 in miniature: one GRPO run per reward set and training seed, all from the same base,
evaluated on an in-distribution set, a shifted set and a hiss set, reported as mean ± spread over the seeds.

    python -m audio_thinker.ablate --out runs/ablation                       # grpo, atar, atar+rc, full; seeds 0, 1, 2
    python -m audio_thinker.ablate --out runs/ablation --max-steps 40 --sets grpo,full --seeds 0

Runs live in ``OUT/<set>/seed-<s>`` and differ only in ``reward_set`` and ``seed`` (the rest comes from
``--config``, default configs/tiny.yaml, and ``--max-steps``). One command runs it all and can be repeated:
a run whose ``final`` exists is reused, a run with checkpoints but no ``final`` is resumed from its latest
checkpoint, anything else is trained. A run whose saved ``config.json`` differs from the config asked for is
never reused or resumed: the command stops and names the keys that differ. Evaluations are saved with the
sha256 of the weights, the prompt mode and the sha256 of the items (audio included); a repeated command
evaluates only what is missing.

Evaluation (greedy, the oracle judging every think trace): the base in think mode (the paper's base row) and
each final model in the prompt mode it was trained with (``grpo``: think; the ATAR sets: adaptive), on three
sets of ``--eval-per-task`` items per task drawn with ``--eval-seed``: ``standard`` (the training
distribution), ``shift`` (``synth --shift``: more events, closer pitches, louder hiss, tighter onsets) and
``hiss`` (the standard items with every clip replaced by hiss: accuracy there comes from answering without
listening). Writes ``OUT/ablation.json`` and ``OUT/ablation.md``: per set, accuracy by difficulty, the change
against the base next to the paper's Table 1 deltas, no-think rate by difficulty, mean tokens, consistency
rate and mean think quality, each as mean ± sample standard deviation over the seeds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import synth
from .config_args import config_field as _arg
from .config_args import config_parser
from .grpo import train
from .grpo_config import GRPOConfig
from .prompts import THINK
from .rewards import REWARD_SETS
from .train import DEFAULT_CONFIG, load_config

# MMAU test-mini average accuracy (%) from the paper's Table 1: base, GRPO, +ATAR, +CR, +TR (= full).
PAPER_TABLE1 = {
    "Qwen2-Audio-7B-Instruct": {"base": 54.90, "grpo": 63.80, "atar": 66.90, "atar+rc": 67.70, "full": 68.00},
    "Qwen2.5-Omni-7B": {"base": 66.30, "grpo": 69.70, "atar": 71.50, "atar+rc": 72.50, "full": 73.70},
}
DEFAULT_SETS = ("grpo", "atar", "atar+rc", "full")
DEFAULT_SEEDS = (0, 1, 2)
EVAL_SETS = ("standard", "shift", "hiss")
# what the table reports per row (metrics.json keys), in order
REPORTED = (
    "accuracy",
    "no_think_rate",
    "mean_completion_tokens",
    "consistency_rate",
    "mean_think_quality",
    "right_inconsistent_rate",
    "right_flawed_rate",
)
NOT_COMPARED = (
    "resume",
    "threads",
)  # how a run was resumed or how many CPU threads it used: not what it trains  # config keys that may differ between the asked-for and the saved config


@dataclass
class AblationConfig:
    """What ``python -m audio_thinker.ablate`` runs (a flag and a help line per field)."""

    out: str = _arg("runs/ablation", "output folder: OUT/<set>/seed-<s> runs, OUT/ablation.json and .md")
    sets: str = _arg(",".join(DEFAULT_SETS), f"comma-separated reward sets, of: {', '.join(REWARD_SETS)}")
    seeds: str = _arg(",".join(map(str, DEFAULT_SEEDS)), "comma-separated training seeds")
    config: str = _arg(str(DEFAULT_CONFIG), "YAML file of GRPOConfig fields every run starts from")
    max_steps: int | None = _arg(None, "GRPO steps per run; none: the config's max_steps")
    eval_per_task: int = _arg(40, "evaluation items per synth-aqa task, in each of the three sets")
    eval_seed: int = _arg(55_555, "synth-aqa seed of the evaluation sets")


class AblationError(ValueError):
    """A run on disk that cannot be reused for the ablation asked for."""


def run_config(
    out: Path, config: str | Path | None, name: str, seed: int, max_steps: int | None
) -> GRPOConfig:
    """The config of run ``name`` with training seed ``seed``."""
    return load_config(
        config,
        {"out": str(out / name / f"seed-{seed}"), "reward_set": name, "seed": seed, "max_steps": max_steps},
    )


def ensure_run(cfg: GRPOConfig) -> str:
    """Reuse, resume or train the run of ``cfg``; returns its ``final`` folder.

    Raises AblationError when the run's saved config differs from ``cfg`` (naming the keys).
    """
    out = Path(cfg.out)
    saved_path = out / "config.json"
    if saved_path.exists():
        saved, wanted = json.loads(saved_path.read_text()), json.loads(json.dumps(asdict(cfg)))
        # a key a run saved before it existed holds its default (older runs stay reusable)
        defaults = json.loads(json.dumps(asdict(GRPOConfig())))
        differ = sorted(
            k
            for k in set(saved) | set(wanted)
            if k not in NOT_COMPARED and saved.get(k, defaults.get(k)) != wanted.get(k)
        )
        if differ:
            raise AblationError(
                f"{out} was run with another config ({', '.join(f'{k}: {saved.get(k)!r} != {wanted.get(k)!r}' for k in differ)}); "
                "choose another --out or remove that run"
            )
    if not (out / "final").exists():
        resume = "latest" if any((out / "checkpoints").glob("step-*")) else None
        train(GRPOConfig(**{**asdict(cfg), "resume": resume}))
    return str(out / "final")


def eval_sets(seed: int, per_task: int) -> dict[str, list[dict]]:
    """The three evaluation sets, held in memory (items carry their ``audio``)."""
    from .evaluate import ablate as replace_audio

    def draw(shift: bool) -> list[dict]:
        items = []
        for task in synth.TASKS:
            for i in range(per_task):
                item, audio = synth.generate_item(task, seed, i, "eval", shift=shift)
                items.append({**item, "audio": audio})
        return items

    standard = draw(False)
    hiss = [{**it, "audio": replace_audio(it["audio"], "hiss", seed + k)} for k, it in enumerate(standard)]
    return {"standard": standard, "shift": draw(True), "hiss": hiss}


def weights_digest(path: str | Path) -> str:
    """sha256 of a model folder's weight files (what an evaluation is cached against)."""
    h = hashlib.sha256()
    for f in sorted(Path(path).glob("*.safetensors")):
        h.update(f.name.encode())
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def items_digest(items: list[dict]) -> str:
    """sha256 of an evaluation set: every item's fields and audio samples, in order."""
    h = hashlib.sha256()
    for it in items:
        h.update(json.dumps({k: v for k, v in it.items() if k != "audio"}, sort_keys=True).encode())
        h.update(np.ascontiguousarray(it["audio"], dtype=np.float32).tobytes())
    return h.hexdigest()


def evaluate_row(
    path: str, mode: str, sets: dict[str, list[dict]], digests: dict[str, str], out: Path, judge
) -> dict[str, dict]:
    """Metrics of one model on every evaluation set (``out/<set>/metrics.json`` and ``predictions.json``).

    A set whose saved metrics were measured on the same weights, prompt mode and items (``digests``: the
    :func:`items_digest` of each set, audio included) is read back instead of evaluated again, so a repeated
    or interrupted ablation only evaluates what is missing."""
    from .evaluate import evaluate
    from .inference import AudioLM

    weights = weights_digest(path)
    lm, result = None, {}
    for name, items in sets.items():
        key = {"weights_sha256": weights, "mode": mode, "items_sha256": digests[name]}
        d = out / name
        saved = d / "metrics.json"
        if saved.exists():
            metrics = json.loads(saved.read_text())
            if all(metrics.get("cache_key", {}).get(k) == v for k, v in key.items()):
                result[name] = metrics
                continue
        lm = lm or AudioLM.from_pretrained(path)
        preds, metrics = evaluate(lm, items, mode=mode, progress=False, judge=judge)
        d.mkdir(parents=True, exist_ok=True)
        (d / "predictions.json").write_text(json.dumps(preds, indent=1))
        metrics = {**metrics, "model": path, "mode": mode, "cache_key": key}
        saved.write_text(json.dumps(metrics, indent=1))
        result[name] = metrics
    return result


def run_ablation(
    out: str | Path,
    sets: tuple[str, ...] = DEFAULT_SETS,
    seeds: tuple[int, ...] = DEFAULT_SEEDS,
    config: str | Path | None = DEFAULT_CONFIG,
    max_steps: int | None = None,
    eval_per_task: int = 40,
    eval_seed: int = 55_555,
) -> dict:
    """Train, resume or reuse every (set, seed) run, evaluate them and the base, write the tables."""
    from .judges import make_judge
    from .models import default_model_path

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        configs = {
            (name, seed): run_config(out, config, name, seed, max_steps) for name in sets for seed in seeds
        }
    except ValueError as err:  # a config that does not load or validate
        raise AblationError(str(err)) from None
    finals = {key: ensure_run(cfg) for key, cfg in configs.items()}

    first = next(iter(configs.values()))
    data = eval_sets(eval_seed, eval_per_task)
    judge = make_judge("oracle")
    base_path = first.model or str(default_model_path())
    digests = {name: items_digest(items) for name, items in data.items()}  # once, not once per model
    base = evaluate_row(base_path, THINK, data, digests, out / "eval" / "base", judge)
    rows: dict[str, dict] = {"base": {"mode": THINK, "seeds": {"-": base}}}
    for name in sets:
        mode = REWARD_SETS[name].prompt_mode
        rows[name] = {
            "mode": mode,
            "seeds": {
                str(seed): evaluate_row(
                    finals[name, seed], mode, data, digests, out / "eval" / name / f"seed-{seed}", judge
                )
                for seed in seeds
            },
        }
    result = {
        "sets": list(sets),
        "seeds": list(seeds),
        "max_steps": first.max_steps,
        "config": str(config),
        "eval_seed": eval_seed,
        "eval_per_task": eval_per_task,
        "rows": rows,
    }
    (out / "ablation.json").write_text(json.dumps(result, indent=1))
    (out / "ablation.md").write_text(ablation_table(result) + "\n")
    return result


def _values(row: dict, eval_set: str, key: str, difficulty: str | None = None) -> list[float]:
    """One metric of a row on one evaluation set, one value per training seed (missing values left out)."""
    out = []
    for metrics in row["seeds"].values():
        m = (
            metrics[eval_set]
            if difficulty is None
            else metrics[eval_set]["by_difficulty"].get(difficulty, {})
        )
        if m.get(key) is not None:
            out.append(float(m[key]))
    return out


def _cell(values: list[float], digits: int = 3) -> str:
    """mean ± sample standard deviation over the seeds (the mean alone for one seed; – for none)."""
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def ablation_table(result: dict) -> str:
    """Markdown, one table per evaluation set, with the paper's Table 1 deltas beside the accuracy change."""
    rows = result["rows"]
    parts = []
    for eval_set in EVAL_SETS:
        head = (
            "| run · prompt | acc easy | acc medium | acc hard | acc all | Δ acc vs base (pts) "
            "| paper Δ Qwen2-Audio | paper Δ Omni | no-think easy | no-think medium | no-think hard "
            "| mean tokens | consistency rate | think quality | right but inconsistent | right but flawed |"
        )
        lines = [f"**{eval_set}**", "", head, "|" + "---|" * (head.count("|") - 1)]
        base_acc = float(np.mean(_values(rows["base"], eval_set, "accuracy")))
        for name, row in rows.items():
            acc = [_cell(_values(row, eval_set, "accuracy", d)) for d in synth.DIFFICULTIES]
            nt = [_cell(_values(row, eval_set, "no_think_rate", d), 2) for d in synth.DIFFICULTIES]
            all_acc = _values(row, eval_set, "accuracy")
            delta = "–" if name == "base" else _cell([100 * (a - base_acc) for a in all_acc], 1)
            paper = [
                f"{t[name] - t['base']:+.1f}" if name in t and name != "base" else "–"
                for t in PAPER_TABLE1.values()
            ]
            lines.append(
                f"| {name} · {row['mode']} | {' | '.join(acc)} | {_cell(all_acc)} | {delta} | {paper[0]} | {paper[1]} "
                f"| {' | '.join(nt)} | {_cell(_values(row, eval_set, 'mean_completion_tokens'), 1)} "
                f"| {_cell(_values(row, eval_set, 'consistency_rate'))} | {_cell(_values(row, eval_set, 'mean_think_quality'))} "
                f"| {_cell(_values(row, eval_set, 'right_inconsistent_rate'))} "
                f"| {_cell(_values(row, eval_set, 'right_flawed_rate'))} |"
            )
        parts.append("\n".join(lines))
    seeds = ", ".join(str(s) for s in result["seeds"])
    n = result["eval_per_task"] * len(synth.TASKS)
    parts.append(
        f"{n} items per set ({result['eval_per_task']} per task, seed {result['eval_seed']}), greedy; "
        f"{result['max_steps']} GRPO steps per run from the same base, training seeds {seeds}: mean ± sample "
        "standard deviation over the seeds. standard: the training distribution; shift: `synth --shift`; hiss: the "
        "standard items with hiss for audio (what can be answered without listening). Consistency rate and think "
        "quality: the oracle judge on the think traces; right but inconsistent / flawed: the share of the right "
        "think traces the judge finds inconsistent / below quality 1.0. Paper deltas: MMAU test-mini average, Table 1."
    )
    return "\n\n".join(parts)


def _parser():
    """``HfArgumentParser`` over :class:`AblationConfig`: a flag and a help line per field."""
    return config_parser(
        AblationConfig,
        prog="python -m audio_thinker.ablate",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
    )


def main(argv=None) -> None:
    p = _parser()
    (args,) = p.parse_args_into_dataclasses(argv)
    sets = tuple(s.strip() for s in args.sets.split(",") if s.strip())
    if unknown := [s for s in sets if s not in REWARD_SETS]:
        p.exit(2, f"error: unknown reward set(s) {unknown}; choose from {list(REWARD_SETS)}\n")
    try:
        seeds = tuple(dict.fromkeys(int(s) for s in args.seeds.split(",") if s.strip()))
    except ValueError:
        p.exit(2, f"error: --seeds takes comma-separated integers, got {args.seeds!r}\n")
    if not seeds:
        p.exit(2, "error: --seeds names no seed\n")
    if (args.max_steps is not None and args.max_steps < 1) or args.eval_per_task < 1:
        p.exit(2, "error: --max-steps and --eval-per-task must be positive\n")
    try:
        result = run_ablation(
            args.out, sets, seeds, args.config, args.max_steps, args.eval_per_task, args.eval_seed
        )
    except AblationError as err:
        p.exit(2, f"error: {err}\n")
    print(ablation_table(result))


if __name__ == "__main__":
    main()
