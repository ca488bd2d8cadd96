"""Reward model: what has been collected, how much annotators agree, how models and modes rank, and the
buttons that export the ratings and train the learned judge.

Agreement is Cohen's κ on consistency for every annotator pair (over the generations both submitted)
and Krippendorff's α (interval) on quality over every generation rated by two or more; the ranking is a
Bradley–Terry fit of the side-by-side votes with bootstrap 95 % intervals (``app/stats.py``).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from . import stats
from .services import rating as rating_service
from .services import reward as service
from .services.auth import annotator, is_admin
from .ui import user_error

BOOTSTRAP_ROUNDS = 200
FEW_OVERLAPS = 20
"""Below this many generations rated by two or more annotators, κ and α are said to be unreliable."""


def agreement_note(overlap: int, pair_overlap: int) -> str:
    """What κ and α mean, and why they cannot be trusted yet when few traces were rated twice."""
    meaning = "1 is full agreement, 0 what chance gives, below 0 less than chance"
    if overlap >= FEW_OVERLAPS:
        return f"<sub>κ and α: {meaning}.</sub>"
    return (
        f"<sub>κ and α: {meaning}. Only **{overlap}** generations were rated by two or more annotators "
        f"({pair_overlap} shared between the pairs): with fewer than {FEW_OVERLAPS}, one differing label "
        "moves them a lot, so values near 0 or below 0 say little yet. More raters per trace (overlap) fix "
        "that.</sub>"
    )


def _pct(x: Any) -> str:
    return "–" if x is None else f"{100 * float(x):.0f}%"


def _num(x: Any, digits: int = 2) -> str:
    return "–" if x is None else f"{float(x):.{digits}f}"


def metrics_markdown(m: dict | None) -> str:
    """The trained reward model's held-out numbers in words and a small table (not raw JSON)."""
    if not m:
        return ""
    c = m.get("counts", {}) or {}
    secs = (m.get("seconds", {}) or {}).get("total")
    rows = [
        ("Picks the better of two held-out traces (pairwise accuracy)", _pct(m.get("pairwise_accuracy")),
         f"{c.get('eval_pairs', '–')} held-out pairs"),
        ("Tells consistent from inconsistent (ROC AUC; 0.5 is chance)", _num(m.get("consistency_auc")),
         f"{c.get('eval_traces', '–')} held-out traces"),
        ("Consistency right at the 0.5 threshold", _pct(m.get("consistency_accuracy")), ""),
        ("Quality: mean error on the 0–1 scale", _num(m.get("quality_mae")), ""),
        ("Quality: exactly the rated tenth", _pct(m.get("quality_exact")), ""),
        ("On its own training pairs (for comparison)", _pct(m.get("train_pairwise_accuracy")),
         f"{c.get('train_pairs', '–')} pairs"),
    ]  # fmt: skip
    table = "\n".join(f"| {a} | **{b}** | {n} |" for a, b, n in rows)
    return (
        f"**Reward model trained** on {c.get('traces', '–')} rated traces of {c.get('items', '–')} items "
        f"({c.get('vote_pairs', 0)} vote pairs)"
        + (f" in {secs:.0f} s" if isinstance(secs, (int, float)) else "")
        + ". Judged on held-out items it did not train on:\n\n| measure | value | on |\n|---|---|---|\n"
        + table
        + "\n\n<sub>The full metrics are in metrics.json beside the model.</sub>"
    )


def _table(rows: list[list[Any]], headers: list[str]) -> dict:
    return {"headers": headers, "data": rows or [["–"] * len(headers)]}


def summary(request: gr.Request) -> tuple[Any, ...]:
    """Counts, agreement and the ranking, as (markdown, counts table, κ table, ranking table, plot, the
    gold-agreement table and the queue settings).

    Admins see every annotator's row and every pair's κ; other annotators see their own row and the
    aggregates only (no one else's name or counts)."""
    with user_error():
        user = annotator(request)
        admin = is_admin(user)
        c = service.counts()
        by_source = c.get("ratings_by_source", {})
        by_ann = c.get("ratings_by_annotator", {})
        votes_by = c.get("votes_by_annotator", {})
        rows = []
        for name in sorted(set(by_ann) | set(votes_by)):
            if not admin and name != user:
                continue
            s = by_ann.get(name, {})
            rows.append([name, s.get("submitted", 0), s.get("draft", 0), s.get("skipped", 0),
                         s.get("discarded", 0), votes_by.get(name, 0)])  # fmt: skip
        data = service.agreement_data()
        pairs = stats.pairwise_kappa(data["consistency"])
        kappa = stats.mean_kappa(pairs)
        alpha = stats.krippendorff_alpha(data["quality"])
        overlap = sum(1 for v in data["quality"].values() if len(v) >= 2)
        comps, names = service.vote_comparisons()
        ranked = stats.bt_bootstrap(comps, names, rounds=BOOTSTRAP_ROUNDS) if comps else []
        fmt = lambda x: "–" if x is None else f"{x:.3f}"  # noqa: E731
        src = " · ".join(f"{k}: {sum(v.values())}" for k, v in sorted(by_source.items())) or "none yet"
        items = " · ".join(f"{k}: {v}" for k, v in sorted(c.get("items_by_source", {}).items())) or "none yet"
        empty = ""
        if not c["ratings"] and not c["votes"]:
            empty = (
                "### No ratings or votes yet\nThis tab fills in as people rate and vote. To start: "
                "**rate** think traces in the **Rate** tab (each submitted rating trains the reward model), "
                "or **vote** between two answers in **Ask & compare**. "
                + (
                    "As an admin you can also import a run's traces (Rate → Import traces) and then train "
                    "the reward model here once there are ratings."
                    if admin
                    else "An admin can import a run's traces into your queue."
                )
                + "\n\n"
            )
        md = empty + (
            f"**{c['ratings']}** ratings · **{c['votes']}** votes · {c['generations']} generations · "
            f"{c['items']} items · {c['clips']} clips · {c['annotators']} annotators  \n"
            f"Ratings by source: {src}  \nItems by source: {items}  \n"
            f"**Agreement** — Cohen's κ (consistency, overlap-weighted mean of {len(pairs)} annotator pairs): "
            f"**{fmt(kappa)}** · Krippendorff's α (quality, interval, {overlap} generations rated twice or "
            f"more): **{fmt(alpha)}**  \n" + agreement_note(overlap, sum(p.n for p in pairs))
        )
        kappa_rows = [[p.a, p.b, p.n, fmt(p.kappa)] for p in pairs] if admin else []
        gold = service.gold_agreement() if admin else {}
        gold_rows = [
            [name, g["n"], _pct(g["consistency"]), _num(g["quality_mae"])] for name, g in gold.items()
        ]
        queue_cfg = rating_service.queue_settings()
        rank_rows = [[k + 1, r.name, round(r.rating), f"{r.low:.0f} – {r.high:.0f}", r.games, f"{r.win_rate:.2f}"]
                     for k, r in enumerate(ranked)]  # fmt: skip
        return (
            md,
            _table(rows, ["annotator", "submitted", "drafts", "skipped", "discarded", "votes"]),
            _table(kappa_rows, ["annotator A", "annotator B", "overlap", "κ consistency"]),
            _table(rank_rows, ["rank", "model · mode", "BT rating", "95% interval", "votes", "win rate"]),
            gr.update(value=_ranking_plot(ranked), visible=bool(ranked)),  # no empty box without votes
            gr.update(value=_table(gold_rows, GOLD_HEADERS), visible=admin),
            gr.update(value=queue_cfg["overlap"]),
            gr.update(value=queue_cfg["gold_rate"]),
        )


GOLD_HEADERS = ["annotator", "gold traces", "consistency agrees", "quality: mean error"]


def save_queue_settings(overlap: Any, gold_rate: Any, request: gr.Request) -> str:
    """Admins: how many raters see each trace, and the share of gold traces in each queue."""
    with user_error():
        cfg = rating_service.set_queue_settings(annotator(request), overlap, gold_rate)
        gr.Info("Queue settings saved.")
        return (
            f"Each trace goes to **{cfg['overlap'] or 'every'}** rater(s); "
            f"**{100 * cfg['gold_rate']:.0f}%** of each queue is gold traces."
        )


def _ranking_plot(ranked: list[stats.Ranked]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not ranked:
        return None
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.45 * len(ranked)))
    ys = list(range(len(ranked)))[::-1]
    ax.errorbar(
        [r.rating for r in ranked], ys,
        xerr=[[max(0.0, r.rating - r.low) for r in ranked], [max(0.0, r.high - r.rating) for r in ranked]],
        fmt="o", capsize=4,
    )  # fmt: skip
    ax.set_yticks(ys, [r.name for r in ranked])
    ax.set_xlabel("Bradley–Terry rating (Elo scale) with bootstrap 95% interval")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    plt.close(fig)
    return fig


def export(fmt: str, request: gr.Request) -> Any:
    """Write an export and offer it for download."""
    with user_error():
        user = annotator(request)
        path, note = service.export_with_note(user, fmt)
        if note:
            gr.Warning(note, title="No pairs yet")
        gr.Info("Export ready: download it below (on a Space, the disk is not kept: export often).")
        return gr.update(value=path, visible=True)


def backup(request: gr.Request) -> Any:
    """Admins: the whole store as one zip, offered for download."""
    with user_error():
        path = service.backup(annotator(request))
        gr.Info(
            "Backup ready: download it below. Restore: python -m audio_thinker.store restore --from FILE."
        )
        return gr.update(value=path, visible=True)


def train(request: gr.Request, progress=gr.Progress(track_tqdm=True)) -> str:  # noqa: B008
    """Train the learned judge on all submitted ratings and votes (progress bars from its tqdm loops);
    returns its held-out metrics in words."""
    with user_error():
        user = annotator(request)
        progress(0.0, desc="collecting ratings")
        return metrics_markdown(service.train_reward_model(user))


def build() -> tuple[Any, list[Any], list[Any]]:
    """Add the tab's components and events; returns (refresh fn, its outputs) for the tab's select event
    and the admin-only components (hidden until the page knows its user is an admin)."""
    overview = gr.Markdown(elem_id="rm-overview")
    with gr.Row():
        counts = gr.Dataframe(label="Annotators", interactive=False, elem_id="rm-counts")
        kappas = gr.Dataframe(
            label="Pairwise agreement on consistency", interactive=False, elem_id="rm-kappa"
        )
    gold = gr.Dataframe(
        label="Agreement with gold traces (oracle labels; admins)", interactive=False, visible=False,
        elem_id="rm-gold",
    )  # fmt: skip
    # the ranking table on a row of its own (beside the plot its last column, the win rate, was cut off)
    ranking = gr.Dataframe(label="Ranking from votes (Bradley–Terry)", interactive=False, elem_id="rm-rank")
    plot = gr.Plot(label="Ranking", show_label=False, elem_id="rm-plot")
    refresh = gr.Button("Refresh", size="sm")
    with gr.Row():
        with gr.Column():
            fmt = gr.Radio(
                list(service.EXPORT_FORMATS), value=service.LABELS, label="Export format (admins: labels = "
                "every rating with its annotator and labels; trl / jsonl / hf = preference pairs for the reward "
                "model. Annotators: their own ratings, as JSONL)", elem_id="rm-format",
            )  # fmt: skip
            export_btn = gr.Button("Export ratings", elem_id="rm-export")
            export_file = gr.File(label="Download", interactive=False, visible=False, elem_id="rm-file")
        with gr.Column(visible=False) as admin_column:
            with gr.Group():
                overlap = gr.Number(
                    label="Raters per trace (overlap; 0 = every rater rates every trace)", precision=0,
                    minimum=0, maximum=rating_service.MAX_OVERLAP, elem_id="rm-overlap",
                )  # fmt: skip
                gold_rate = gr.Slider(
                    0.0, rating_service.MAX_GOLD_RATE, step=0.05, label="Share of gold traces in each queue",
                    elem_id="rm-gold-rate",
                )  # fmt: skip
                save_queue = gr.Button("Save queue settings", size="sm", elem_id="rm-save-queue")
                queue_note = gr.Markdown(elem_id="rm-queue-note")
            backup_btn = gr.Button("Back up the whole store (admin)", elem_id="rm-backup")
            backup_file = gr.File(label="Backup", interactive=False, visible=False, elem_id="rm-backup-file")
            train_btn = gr.Button("Train reward model (admin)", variant="primary", elem_id="rm-train")
            metrics = gr.Markdown(elem_id="rm-metrics")
    outputs = [overview, counts, kappas, ranking, plot, gold, overlap, gold_rate]
    refresh.click(summary, None, outputs, api_visibility="private")
    export_btn.click(export, [fmt], export_file, api_visibility="private", concurrency_id="export")
    save_queue.click(
        save_queue_settings, [overlap, gold_rate], queue_note, api_visibility="private", concurrency_id="db"
    )
    backup_btn.click(backup, None, backup_file, api_visibility="private", concurrency_id="export")
    train_btn.click(
        train, None, metrics, api_visibility="private", concurrency_id="train", concurrency_limit=1
    )
    return summary, outputs, [admin_column]
