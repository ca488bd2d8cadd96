"""Runs: a training run's curves (reward terms, accuracy and no-think rate by difficulty over steps, from
``history.jsonl``), its ablation table (``ablation.md``), report plots and sample completions.

Only folders under the runs root (``runs/`` or ``$AUDIO_THINKER_RUNS``) can be opened.
"""

from __future__ import annotations

import json
from typing import Any

import gradio as gr

from .services import runs as service
from .ui import user_error

DIFFICULTIES = ("easy", "medium", "hard")


def _fig(title: str, series: dict[str, tuple[list[int], list[float]]], ylabel: str) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.4))
    for name, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, label=name)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, "no data in history.jsonl", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    plt.close(fig)
    return fig


def _series(history: list[dict], keys: dict[str, str]) -> dict[str, tuple[list[int], list[float]]]:
    out = {}
    for label, key in keys.items():
        pts = [(h["step"], h[key]) for h in history if isinstance(h.get(key), (int, float)) and "step" in h]
        if pts:
            out[label] = ([p[0] for p in pts], [float(p[1]) for p in pts])
    return out


def plots(history: list[dict]) -> tuple[Any, Any, Any]:
    """(reward terms, accuracy by difficulty, no-think rate by difficulty) figures."""
    terms = sorted({k for h in history for k in h if k.startswith("rewards/") and k.endswith("/mean")})
    reward_keys = {"total reward": "reward"} | {k.split("/")[1]: k for k in terms}
    acc = {d: f"accuracy/{d}" for d in DIFFICULTIES} | {"all": "accuracy"}
    nt = {d: f"no_think_rate/{d}" for d in DIFFICULTIES} | {"all": "no_think_rate"}
    return (
        _fig("Reward terms", _series(history, reward_keys), "mean reward"),
        _fig("Accuracy by difficulty", _series(history, acc), "accuracy"),
        _fig("No-think rate by difficulty", _series(history, nt), "no-think rate"),
    )


def _completion_rows(rows: list[dict]) -> dict:
    headers = ["step", "difficulty", "task", "think", "correct", "total", "completion"]
    data = [
        [r.get("step"), r.get("difficulty"), r.get("sub-category"), r.get("think"), r.get("correct"),
         None if r.get("total") is None else round(float(r["total"]), 3), r.get("completion", "")]
        for r in rows
    ]  # fmt: skip
    return {"headers": headers, "data": data or [[None] * len(headers)]}


def _prediction_rows(rows: list[dict]) -> dict:
    headers = ["id", "difficulty", "mode", "output", "correct", "gold", "completion"]
    data = [
        [r.get("id"), r.get("difficulty"), r.get("mode"), r.get("output_mode"), r.get("correct"),
         r.get("answer"), r.get("model_output", "")]
        for r in rows
    ]  # fmt: skip
    return {"headers": headers, "data": data or [[None] * len(headers)]}


NO_RUNS = (
    "### No runs yet\nNothing to show: the runs folder has no training or evaluation output. A run appears "
    "here (press **Refresh list**) once one writes its logs, for example:\n\n"
    "```bash\npython -m audio_thinker.train --out runs/my-run --max-steps 50\n"
    "python -m audio_thinker.evaluate --data data/heldout/test.json --mode think --out runs/heldout-think\n```"
)


def show(name: str | None) -> tuple[Any, ...]:
    """Everything the tab shows for one run."""
    with user_error():
        if not name:
            return (
                "Pick a run." if service.list_runs() else NO_RUNS,
                gr.update(value=None, visible=False),
                gr.update(value=None, visible=False),
                gr.update(value=None, visible=False),
                "",
                gr.update(value=[], visible=False),
                gr.update(visible=False),
            )
        history = service.run_history(name)
        reward_fig, acc_fig, nt_fig = plots(history)
        ablation = service.run_text(name, "ablation.md")
        metrics = service.run_text(name, "metrics.json")
        parts = []
        if ablation:
            parts.append(ablation)
        elif metrics:
            try:
                m = json.loads(metrics)
                raw = m.get("by_difficulty", {})
                by = {d: raw[d] for d in (*DIFFICULTIES, *sorted(set(raw) - set(DIFFICULTIES))) if d in raw}
                parts.append(
                    "| | " + " | ".join(by) + " | all |\n|---|" + "---|" * (len(by) + 1) + "\n"
                    "| accuracy | " + " | ".join(f"{v.get('accuracy', 0):.3f}" for v in by.values())
                    + f" | {m.get('accuracy', 0):.3f} |\n| no-think rate | "
                    + " | ".join(f"{v.get('no_think_rate', 0):.2f}" for v in by.values())
                    + f" | {m.get('no_think_rate', 0):.2f} |"
                )  # fmt: skip
            except (json.JSONDecodeError, AttributeError):
                parts.append(f"```\n{metrics[:4000]}\n```")
        else:
            parts.append("_No ablation.md or metrics.json in this run._")
        last = history[-1] if history else {}
        head = f"**{name}** · {len(history)} logged steps" + (
            f" · last step {last.get('step')}: reward {last.get('reward', float('nan')):.3f}, "
            f"accuracy {last.get('accuracy', float('nan')):.3f}, no-think rate {last.get('no_think_rate', float('nan')):.3f}"
            if last else ""
        )  # fmt: skip
        completions = service.run_completions(name)
        table = (
            _completion_rows(completions) if completions else _prediction_rows(service.run_predictions(name))
        )
        images = service.run_images(name)
        figs = [gr.update(value=f, visible=True) for f in (reward_fig, acc_fig, nt_fig)]
        return (
            head, *figs, "\n\n".join(parts), gr.update(value=images, visible=bool(images)),
            gr.update(value=table, visible=bool(completions) or table["data"][0][0] is not None),
        )  # fmt: skip


def build() -> tuple[Any, list[Any], Any]:
    """Add the tab's components; returns (refresh fn, its outputs, the run dropdown)."""
    runs = service.list_runs()
    with gr.Row():
        run = gr.Dropdown(runs, value=runs[0] if runs else None, label="Run (under runs/)", elem_id="runs-pick",
                          scale=4)  # fmt: skip
        refresh = gr.Button("Refresh list", size="sm", scale=1)
    head = gr.Markdown(elem_id="runs-head")
    with gr.Row():
        reward_plot = gr.Plot(label="Reward terms", show_label=False, elem_id="runs-reward")
        acc_plot = gr.Plot(label="Accuracy by difficulty", show_label=False, elem_id="runs-acc")
        nt_plot = gr.Plot(label="No-think rate by difficulty", show_label=False, elem_id="runs-nothink")
    table = gr.Markdown(elem_id="runs-ablation")
    gallery = gr.Gallery(
        label="Report plots", columns=4, height=260, object_fit="contain", elem_id="runs-gallery"
    )  # whole plots, not cropped
    samples = gr.Dataframe(label="Sample completions (latest)", interactive=False, wrap=True, max_height=400,
                           elem_id="runs-samples")  # fmt: skip
    outputs = [head, reward_plot, acc_plot, nt_plot, table, gallery, samples]
    run.change(show, [run], outputs, api_visibility="private")
    refresh.click(lambda: gr.update(choices=service.list_runs()), None, run, api_visibility="private")
    return show, outputs, run
