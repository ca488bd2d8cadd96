"""The paper's Table 1 on the tiny model: one GRPO run per reward set, same seeds and steps, one table.

    python -m audio_thinker.ablate --out runs/ablation                       # grpo, atar, atar+rc, full
    python -m audio_thinker.ablate --out runs/ablation --max-steps 40 --sets grpo,full

Every run starts from the same model with the same config (``--config``, default configs/tiny.yaml) and
differs only in ``reward_set``; a run whose ``final`` exists is not trained again, so an interrupted
ablation continues where it stopped. Each final model is evaluated greedily on one fresh synth-aqa set
in the prompt mode it was trained with (``grpo``: think; the ATAR sets: adaptive), next to the starting
model in think mode (the paper's base row), and every think trace is judged by the oracle for the
consistency rate. Writes ``OUT/ablation.json`` and ``OUT/ablation.md`` (the table, with the paper's
Table 1 deltas on MMAU test-mini beside ours).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import synth
from .grpo import REWARD_SETS, train
from .report import eval_items
from .train import DEFAULT_CONFIG, load_config

# MMAU test-mini average accuracy (%) from the paper's Table 1: base, GRPO, +ATAR, +CR, +TR (= full).
PAPER_TABLE1 = {
    "Qwen2-Audio-7B-Instruct": {"base": 54.90, "grpo": 63.80, "atar": 66.90, "atar+rc": 67.70, "full": 68.00},
    "Qwen2.5-Omni-7B": {"base": 66.30, "grpo": 69.70, "atar": 71.50, "atar+rc": 72.50, "full": 73.70},
}
DEFAULT_SETS = ("grpo", "atar", "atar+rc", "full")


def run_ablation(
    out: str | Path,
    sets: tuple[str, ...] = DEFAULT_SETS,
    config: str | Path | None = DEFAULT_CONFIG,
    max_steps: int | None = None,
    eval_per_task: int = 40,
    eval_seed: int = 55_555,
) -> dict:
    """Train (or reuse) one run per reward set, evaluate all of them, write the table; returns the rows."""
    from .evaluate import evaluate
    from .inference import AudioLM
    from .judge import make_judge
    from .models import default_model_path

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    finals: dict[str, tuple[str, str]] = {}
    base_cfg = None
    for name in sets:
        cfg = load_config(config, {"out": str(out / name), "reward_set": name, "max_steps": max_steps})
        base_cfg = base_cfg or cfg
        if not (Path(cfg.out) / "final").exists():
            train(cfg)
        finals[name] = (str(Path(cfg.out) / "final"), cfg.prompt_mode)

    items = eval_items(eval_seed, eval_per_task)
    judge = make_judge("oracle")
    models = {"base": (base_cfg.model or str(default_model_path()), "think"), **finals}
    rows = {}
    for name, (path, mode) in models.items():
        preds, metrics = evaluate(
            AudioLM.from_pretrained(path), items, mode=mode, progress=False, judge=judge
        )
        d = out / "eval" / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "predictions.json").write_text(json.dumps(preds, indent=1))
        (d / "metrics.json").write_text(json.dumps({**metrics, "model": path, "mode": mode}, indent=1))
        rows[name] = {"model": path, "mode": mode, **metrics}
    result = {
        "sets": list(sets),
        "max_steps": base_cfg.max_steps,
        "config": str(config),
        "eval_seed": eval_seed,
        "eval_per_task": eval_per_task,
        "rows": rows,
    }
    (out / "ablation.json").write_text(json.dumps(result, indent=1))
    (out / "ablation.md").write_text(ablation_table(result) + "\n")
    return result


def ablation_table(result: dict) -> str:
    """Markdown: accuracy and no-think rate by difficulty, tokens, consistency, Δ vs base next to the paper's."""
    rows = result["rows"]
    base_acc = rows["base"]["accuracy"]
    head = (
        "| run · prompt | acc easy | acc medium | acc hard | acc all | Δ acc vs base (pts) "
        "| paper Δ Qwen2-Audio | paper Δ Omni | no-think easy | no-think medium | no-think hard "
        "| mean tokens | consistency rate |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, m in rows.items():
        bd = m["by_difficulty"]
        acc = " | ".join(f"{bd.get(d, {}).get('accuracy', 0):.3f}" for d in synth.DIFFICULTIES)
        nt = " | ".join(f"{bd.get(d, {}).get('no_think_rate', 0):.2f}" for d in synth.DIFFICULTIES)
        paper = [f"{t[name] - t['base']:+.1f}" if name in t else "–" for t in PAPER_TABLE1.values()]
        delta = "–" if name == "base" else f"{100 * (m['accuracy'] - base_acc):+.1f}"
        cons = m.get("consistency_rate")
        lines.append(
            f"| {name} · {m['mode']} | {acc} | {m['accuracy']:.3f} | {delta} | {paper[0]} | {paper[1]} | {nt} "
            f"| {m['mean_completion_tokens']:.1f} | {'–' if cons is None else f'{cons:.3f}'} |"
        )
    n = sum(m["n"] for m in rows.values()) // max(1, len(rows))
    lines += [
        "",
        f"{n} fresh synth-aqa items (seed {result['eval_seed']}, {result['eval_per_task']} per task), greedy; "
        f"{result['max_steps']} GRPO steps per run from the same start and seeds. Consistency rate: think traces "
        "whose reasoning supports their answer (oracle judge). Paper deltas: MMAU test-mini average, Table 1.",
    ]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m audio_thinker.ablate", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="runs/ablation")
    p.add_argument("--sets", default=",".join(DEFAULT_SETS), help="comma-separated reward sets")
    p.add_argument("--config", default=str(DEFAULT_CONFIG))
    p.add_argument("--max-steps", type=int, default=None, help="default: the config's max_steps")
    p.add_argument("--eval-per-task", type=int, default=40)
    p.add_argument("--eval-seed", type=int, default=55_555)
    args = p.parse_args(argv)
    sets = tuple(s.strip() for s in args.sets.split(",") if s.strip())
    if unknown := [s for s in sets if s not in REWARD_SETS]:
        p.exit(2, f"error: unknown reward set(s) {unknown}; choose from {list(REWARD_SETS)}\n")
    result = run_ablation(args.out, sets, args.config, args.max_steps, args.eval_per_task, args.eval_seed)
    print(ablation_table(result))


if __name__ == "__main__":
    main()
