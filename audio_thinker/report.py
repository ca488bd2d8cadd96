"""The report of a GRPO run: before/after evaluation on a fresh synth-aqa set, plots, ``report.md``."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from . import synth
from .evaluate import evaluate
from .prompts import ADAPTIVE, THINK


def eval_items(seed: int, per_task: int) -> list[dict]:
    """A fresh synth-aqa set held in memory (items carry their ``audio``)."""
    items = []
    for task in synth.TASKS:
        for i in range(per_task):
            item, audio = synth.generate_item(task, seed, i, "eval")
            items.append({**item, "audio": audio})
    return items


def evaluate_models(models: dict[str, str], modes: Sequence[str], items: list[dict], out: Path) -> dict:
    """metrics[name][mode] for each model folder; predictions and metrics saved under ``out/eval``.

    Shows its progress on stderr: a line per model and prompt mode, then a bar over the items."""
    from .inference import AudioLM

    results: dict[str, dict] = {}
    total = len(models) * len(modes)
    for n_model, (name, path) in enumerate(models.items()):
        lm = AudioLM.from_pretrained(path)
        for n_mode, mode in enumerate(modes):
            k = n_model * len(modes) + n_mode + 1
            print(f"evaluating {name} · {mode} ({k} of {total}) on {len(items)} items", file=sys.stderr)
            preds, metrics = evaluate(lm, items, mode=mode, desc=f"evaluate {name} · {mode}")
            d = out / "eval" / f"{name}-{mode}"
            d.mkdir(parents=True, exist_ok=True)
            (d / "metrics.json").write_text(json.dumps({**metrics, "model": path}, indent=1))
            (d / "predictions.json").write_text(json.dumps(preds, indent=1))
            results.setdefault(name, {})[mode] = metrics
    return results


def _bar_plot(results: dict, key: str, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [(f"{name} · {mode}", m) for name, by_mode in results.items() for mode, m in by_mode.items()]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    width = 0.8 / max(1, len(series))
    for k, (label, m) in enumerate(series):
        vals = [m["by_difficulty"].get(d, {}).get(key, 0.0) for d in synth.DIFFICULTIES]
        ax.bar([i + k * width for i in range(3)], vals, width, label=label)
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(3)], synth.DIFFICULTIES)
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=len(series), loc="upper center", bbox_to_anchor=(0.5, -0.08), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _curves(history: list[dict], keys: Sequence[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    steps = [h["step"] for h in history]
    for key in keys:
        if any(key in h for h in history):
            ax.plot(steps, [h.get(key, float("nan")) for h in history], label=key)
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(results: dict) -> str:
    rows = [
        "| model · prompt | acc easy | acc medium | acc hard | acc all | no-think easy | no-think medium | no-think hard | mean tokens |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, by_mode in results.items():
        for mode, m in by_mode.items():
            bd = m["by_difficulty"]
            acc = " | ".join(f"{bd.get(d, {}).get('accuracy', 0):.3f}" for d in synth.DIFFICULTIES)
            nt = " | ".join(f"{bd.get(d, {}).get('no_think_rate', 0):.2f}" for d in synth.DIFFICULTIES)
            rows.append(
                f"| {name} · {mode} | {acc} | {m['accuracy']:.3f} | {nt} | {m['mean_completion_tokens']:.1f} |"
            )
    return "\n".join(rows)


def error_change(before: float, after: float) -> str:
    """How an error rate moved, in words: "cut by 25%", "up 300%", "unchanged"."""
    if before == after:
        return "unchanged"
    if before == 0:
        return "up from zero"
    change = (after - before) / before
    return f"cut by {-change:.0%}" if change < 0 else f"up {change:.0%}"


STALE_MARK = "> **Stale**"


def mark_report_stale(out: str | Path, step: int) -> Path | None:
    """Put a note atop an earlier ``out/report.md`` when ``out/final`` was retrained (to ``step``) without a
    new report, so the old numbers do not pass for the new model's; returns the report's path, or None."""
    path = Path(out) / "report.md"
    if not path.is_file():
        return None
    text = path.read_text()
    if text.startswith(STALE_MARK):
        text = text.split("\n\n", 1)[1] if "\n\n" in text else ""
    note = (
        f"{STALE_MARK}: `final/` was trained on to step {step} after this report was written; its numbers "
        "describe an earlier model. Evaluate `final/` again (`python -m audio_thinker.evaluate`) for current ones."
    )
    path.write_text(f"{note}\n\n{text}")
    return path


def write_report(cfg) -> Path:
    """Evaluate the starting model and ``out/final``; write plots and ``out/report.md``.

    The curves are drawn from ``out/history.jsonl``: every step of the run, resumed or not.
    """
    from .models import default_model_path

    out = Path(cfg.out)
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines() if line]
    items = eval_items(cfg.eval_seed, cfg.eval_per_task)
    models = {"start": cfg.model or default_model_path(), "final": str(out / "final")}
    results = evaluate_models(models, cfg.eval_modes, items, out)
    (out / "eval" / "summary.json").write_text(json.dumps(results, indent=1))
    _bar_plot(results, "accuracy", "Accuracy by difficulty", out / "accuracy_by_difficulty.png")
    _bar_plot(
        results, "no_think_rate", "No-think rate by difficulty", out / "no_think_rate_by_difficulty.png"
    )
    _curves(
        history,
        [
            "reward",
            "rewards/accuracy_reward/mean",
            "rewards/format/mean",
            "rewards/consistency/mean",
            "rewards/quality/mean",
        ],
        "Reward terms",
        out / "reward_terms.png",
    )
    _curves(
        history,
        ["accuracy", "think_rate", "no_think_rate/easy", "no_think_rate/hard"],
        "Rollout accuracy and thinking",
        out / "rollout_behaviour.png",
    )
    lines = [
        f"# GRPO run: {cfg.reward_set} reward, {cfg.max_steps} steps",
        "",
        f"Model `{models['start']}` → `{models['final']}`; evaluated greedily on {len(items)} fresh synth-aqa items "
        f"(seed {cfg.eval_seed}, {cfg.eval_per_task} per task).",
        "",
        _table(results),
        "",
    ]
    start_think, final_adapt = results.get("start", {}).get(THINK), results.get("final", {}).get(ADAPTIVE)
    if start_think and final_adapt:
        err0, err1 = 1 - start_think["accuracy"], 1 - final_adapt["accuracy"]
        ratio = final_adapt["mean_completion_tokens"] / max(1e-9, start_think["mean_completion_tokens"])
        lines += [
            f"Final model (adaptive) against the starting model (think): error rate {err0:.3f} → {err1:.3f} "
            f"({error_change(err0, err1)}), mean completion tokens × {ratio:.2f}.",
            "",
        ]
    lines += [
        "![accuracy](accuracy_by_difficulty.png)",
        "![no-think rate](no_think_rate_by_difficulty.png)",
        "![reward terms](reward_terms.png)",
        "![rollouts](rollout_behaviour.png)",
        "",
        "Config: [config.json](config.json). Per-step metrics: history.jsonl and the TensorBoard logs.",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
