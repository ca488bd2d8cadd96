"""Training both heads from the store's ratings, with held-out metrics and a calibration plot.

R_t: TRL's ``RewardTrainer`` on the preference pairs (human pairs and votes replicated), its raw score
mapped to the quality grid by an isotonic fit on the training traces. R_c: weighted, class-balanced
binary cross-entropy on the per-trace consistency labels. Items are split (seeded) into train and eval;
``metrics.json`` reports the held-out pairwise accuracy, the consistency ROC AUC and more.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..judges.learned import (
    CALIBRATION_FILE,
    CONSISTENCY_DIR,
    FORMAT_VERSION,
    META_FILE,
    QUALITY_DIR,
    apply_calibration,
    batches_by_length,
    encode,
    load_tokenizer,
    pad_batch,
    score_ids,
    sigmoid,
    torch_setup,
)
from ..rewards import QUALITY_GRID, quantize_quality
from .data import (
    CORRUPTED_RUN,
    HUMAN_WEIGHT,
    VOTE_MARGIN,
    Pair,
    RewardModelError,
    Trace,
    build_pairs,
    collect_traces,
    replicate,
    split_items,
    vote_pairs,
)
from .model import build_model, default_tokenizer_path

__all__ = ["METRICS_FILE", "PLOT_FILE", "TrainConfig", "fit_isotonic", "roc_auc", "train"]

METRICS_FILE = "metrics.json"
PLOT_FILE = "calibration.png"


# --------------------------------------------------------------------------------------------------
# Metrics and calibration (numpy only)


def roc_auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """ROC AUC by the rank formula (tied scores get their average rank); NaN with one class only."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=float)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    starts = np.cumsum(counts) - counts  # 0-based first rank of each distinct score
    ranks = (starts + (counts + 1) / 2.0)[inverse]
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def fit_isotonic(x: Sequence[float], y: Sequence[float], w: Sequence[float] | None = None) -> dict[str, list]:
    """Non-decreasing fit of y on x (pool adjacent violators); knots at the pooled blocks' mean x."""
    x_, y_ = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    w_ = np.ones_like(x_) if w is None else np.asarray(w, dtype=float)
    if x_.size == 0:
        return {"x": [0.0], "y": [0.5]}
    ux, inv = np.unique(x_, return_inverse=True)  # pool equal scores first
    sw = np.bincount(inv, w_)
    swy = np.bincount(inv, w_ * y_)
    blocks: list[list[float]] = []  # [sum w, sum w*y, sum w*x]
    for xi, wi, wyi in zip(ux, sw, swy, strict=True):
        blocks.append([wi, wyi, wi * xi])
        while len(blocks) > 1 and blocks[-2][1] / blocks[-2][0] >= blocks[-1][1] / blocks[-1][0]:
            last = blocks.pop()
            blocks[-1] = [a + b for a, b in zip(blocks[-1], last, strict=True)]
    return {"x": [b[2] / b[0] for b in blocks], "y": [b[1] / b[0] for b in blocks]}


def _train_classifier(
    model: Any,
    seqs: Sequence[Sequence[int]],
    labels: Sequence[int],
    weights: Sequence[float],
    pad_id: int,
    *,
    epochs: float,
    lr: float,
    batch_size: int,
    seed: int,
    progress: bool,
) -> list[dict[str, float]]:
    """Weighted, class-balanced BCE on a one-output classifier (AdamW, warmup + cosine). Returns the log."""
    torch = torch_setup()
    from tqdm.auto import tqdm

    y = np.asarray(labels, dtype=np.float32)
    w = np.asarray(weights, dtype=np.float32)
    pos = float((w * y).sum()) / max(float(w.sum()), 1e-9)
    if 0.0 < pos < 1.0:  # balance the classes: each carries half the loss
        w = w * np.where(y > 0.5, 0.5 / pos, 0.5 / (1.0 - pos)).astype(np.float32)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    lengths = [len(s) for s in seqs]
    per_epoch = math.ceil(len(seqs) / batch_size)
    total = max(1, round(epochs * per_epoch))
    warmup = max(1, total // 20)
    from transformers import get_cosine_schedule_with_warmup

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=warmup, num_training_steps=total)
    device = next(model.parameters()).device
    model.train()
    history: list[dict[str, float]] = []
    step, running = 0, []
    bar = tqdm(total=total, desc="consistency head", disable=not progress, unit="step")
    while step < total:
        for batch in batches_by_length(lengths, batch_size, rng):
            ids, mask = pad_batch(torch, [seqs[i] for i in batch], pad_id, device)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, 0].float()
            target = torch.tensor(y[batch], device=device)
            wt = torch.tensor(w[batch], device=device)
            loss = (
                torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none") * wt
            ).sum()
            loss = loss / wt.sum().clamp(min=1e-6)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            running.append(loss.item())
            bar.update(1)
            if step % 50 == 0 or step == total:
                history.append({"step": step, "loss": round(float(np.mean(running)), 5)})
                bar.set_postfix(loss=history[-1]["loss"])
                running = []
            if step >= total:
                break
    bar.close()
    model.eval()
    return history


def _train_reward_head(
    model: Any, tokenizer: Any, pairs: Sequence[Pair], cfg: TrainConfig, work_dir: str
) -> list[dict[str, Any]]:
    """TRL ``RewardTrainer`` on the (replicated) preference pairs; returns its log history."""
    torch = torch_setup()
    import datasets
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    if not cfg.progress:
        datasets.disable_progress_bars()

    dataset = Dataset.from_list([p.trl_row() for p in replicate(pairs)])
    cuda = torch.cuda.is_available()
    args = RewardConfig(
        output_dir=work_dir,
        per_device_train_batch_size=cfg.batch_size,
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate(),
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        weight_decay=0.01,
        max_grad_norm=1.0,
        logging_steps=25,
        save_strategy="no",
        report_to="none",
        bf16=bool(cuda and torch.cuda.is_bf16_supported()),
        activation_checkpointing=False,
        use_cpu=not cuda,
        max_length=cfg.max_length,
        seed=cfg.seed,
        data_seed=cfg.seed,
        disable_tqdm=not cfg.progress,
        dataloader_num_workers=0,
    )
    trainer = RewardTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    model.eval()
    return [h for h in trainer.state.log_history if "loss" in h or "train_loss" in h]


# --------------------------------------------------------------------------------------------------
# Training


@dataclass
class TrainConfig:
    """Options of :func:`train` (the ``train`` subcommand)."""

    out: str
    sources: tuple[str, ...] | None = None  # None: every source
    base: str | None = None  # HF sequence-classification base; None: the tiny default
    tokenizer: str | None = None  # default: the base's, or the project's for the tiny model
    reference: bool = True
    consistency_reference: bool = False  # R_c is about the reasoning and its answer, not the truth
    eval_frac: float = 0.2
    min_gap: float = 0.1
    epochs: float = 4.0  # reward head (passes over the replicated pairs)
    consistency_epochs: float = 6.0
    lr: float | None = None  # default: 1e-3 for the tiny model, 2e-5 for a base
    batch_size: int = 16
    max_length: int = 1024
    seed: int = 0
    progress: bool = True
    tiny: dict[str, Any] | None = None  # overrides of TINY_CONFIG, e.g. {"num_hidden_layers": 3}
    init: str | None = None  # policy folder whose text decoder initialises the tiny model

    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (1e-3 if self.base is None else 2e-5)


def _write_plot(
    path: Path, rated: np.ndarray, predicted: np.ndarray, labels: np.ndarray, probs: np.ndarray
) -> None:
    """Calibrated vs rated quality (held-out traces) and the consistency head's reliability."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.4))
    jitter = np.random.default_rng(0).uniform(-0.02, 0.02, size=rated.shape)
    ax1.scatter(rated + jitter, predicted, s=8, alpha=0.35, label="held-out trace")
    grid = np.asarray(QUALITY_GRID)
    means = [(g, predicted[np.isclose(rated, g)].mean()) for g in grid if np.isclose(rated, g).any()]
    if means:
        ax1.plot(*zip(*means, strict=True), "o-", color="C1", label="mean per rated value")
    ax1.plot([0, 1], [0, 1], "k--", lw=1, label="ideal")
    ax1.set(xlabel="rated quality (R_t)", ylabel="predicted quality (calibrated)", xlim=(-0.05, 1.05),
            ylim=(-0.05, 1.05), title="think quality")  # fmt: skip
    ax1.legend(loc="upper left", fontsize=8)
    edges = np.linspace(0, 1, 11)
    centers, rates, counts = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (probs >= lo) & ((probs < hi) if hi < 1 else (probs <= hi))
        if sel.any():
            centers.append(probs[sel].mean())
            rates.append(labels[sel].mean())
            counts.append(int(sel.sum()))
    ax2.plot([0, 1], [0, 1], "k--", lw=1)
    ax2.plot(centers, rates, "o-", color="C2")
    for c, r, n in zip(centers, rates, counts, strict=True):
        ax2.annotate(str(n), (c, r), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax2.set(xlabel="predicted P(consistent)", ylabel="rated consistent (share)", xlim=(-0.05, 1.05),
            ylim=(-0.05, 1.05), title="consistency (R_c) reliability")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _finite(x: float) -> float | None:
    return round(float(x), 4) if x is not None and math.isfinite(x) else None


def train(store: Any, cfg: TrainConfig) -> dict[str, Any]:
    """Train both heads from the store's ratings (and votes), save them under ``cfg.out``; the metrics."""
    t_start = time.perf_counter()
    traces = collect_traces(store, cfg.sources, reference=cfg.reference)
    cons_traces = (  # what the consistency head reads
        traces if cfg.consistency_reference == cfg.reference
        else collect_traces(store, cfg.sources, reference=cfg.consistency_reference)
    )  # fmt: skip
    votes = vote_pairs(store, reference=cfg.reference)
    if not traces:
        where = f" from source(s) {', '.join(cfg.sources)}" if cfg.sources else ""
        raise RewardModelError(
            f"no submitted ratings of think traces{where} in {store.display_url}: rate some traces in the "
            "studio first, or seed the store with python -m audio_thinker.reward_model bootstrap"
        )
    eval_items = split_items(
        [t.item_id for t in traces] + [p.item_id for p in votes], cfg.eval_frac, cfg.seed
    )
    train_traces = [t for t in traces if t.item_id not in eval_items]
    eval_traces = [t for t in traces if t.item_id in eval_items]
    pairs = build_pairs(traces, votes, min_gap=cfg.min_gap)
    train_pairs = [p for p in pairs if p.item_id not in eval_items]
    eval_pairs = [p for p in pairs if p.item_id in eval_items]
    if not train_pairs:
        raise RewardModelError(
            f"no preference pairs to train on: {len(traces)} rated traces but no two for the same item differ in "
            f"quality by >= {cfg.min_gap}, and {len(votes)} votes that prefer one answer (ties and both-bad "
            f"give no pair), none on a training item; rate more traces per item or vote between answers"
        )
    if len({t.consistent for t in train_traces}) < 2:
        raise RewardModelError(
            "the consistency labels of the training traces are all the same; rate more traces"
        )

    torch = torch_setup()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    tok_path = cfg.tokenizer or cfg.base or cfg.init or default_tokenizer_path()
    try:
        tokenizer = load_tokenizer(tok_path)
    except ValueError as err:  # a tokenizer without an eos token
        raise RewardModelError(str(err)) from None
    tokenizer.padding_side = "right"

    # R_t: the reward head through TRL
    t0 = time.perf_counter()
    quality_model = build_model(tokenizer, cfg.base, seed=cfg.seed, overrides=cfg.tiny, init=cfg.init)
    with tempfile.TemporaryDirectory(prefix="rm-trl-") as work:
        quality_log = _train_reward_head(quality_model, tokenizer, train_pairs, cfg, work)
    t_quality = time.perf_counter() - t0

    # R_c: the consistency head
    t0 = time.perf_counter()
    consistency_model = build_model(tokenizer, cfg.base, seed=cfg.seed + 1, overrides=cfg.tiny, init=cfg.init)

    def encode_all(ts: Sequence[Trace]) -> dict[int, list[int]]:
        return {t.generation_id: encode(tokenizer, t.prompt, t.completion, cfg.max_length) for t in ts}

    all_seqs = encode_all(traces)
    cons_seqs = all_seqs if cons_traces is traces else encode_all(cons_traces)
    seqs = [cons_seqs[t.generation_id] for t in train_traces]
    consistency_log = _train_classifier(
        consistency_model, seqs, [t.consistent for t in train_traces], [t.weight for t in train_traces],
        tokenizer.pad_token_id, epochs=cfg.consistency_epochs, lr=cfg.learning_rate(),
        batch_size=max(cfg.batch_size, 16), seed=cfg.seed, progress=cfg.progress,
    )  # fmt: skip
    t_consistency = time.perf_counter() - t0

    # scores, calibration, held-out metrics
    pad = tokenizer.pad_token_id
    gids = list(all_seqs)
    reward = dict(zip(gids, score_ids(quality_model, [all_seqs[g] for g in gids], pad), strict=True))
    p_cons = dict(
        zip(gids, sigmoid(score_ids(consistency_model, [cons_seqs[g] for g in gids], pad)), strict=True)
    )
    calibration = fit_isotonic(
        [reward[t.generation_id] for t in train_traces], [t.quality for t in train_traces],
        [t.weight for t in train_traces],
    )  # fmt: skip

    def pair_scores(ps: Sequence[Pair]) -> tuple[np.ndarray, np.ndarray]:
        vote_seqs = [
            encode(tokenizer, p.prompt, c, cfg.max_length)
            for p in ps
            if p.origin == "vote"
            for c in (p.chosen, p.rejected)
        ]
        vote_scores = iter(score_ids(quality_model, vote_seqs, pad)) if vote_seqs else iter(())
        chosen, rejected = [], []
        for p in ps:
            if p.origin == "vote":
                chosen.append(next(vote_scores))
                rejected.append(next(vote_scores))
            else:
                chosen.append(reward[p.chosen_id])
                rejected.append(reward[p.rejected_id])
        return np.asarray(chosen, dtype=float), np.asarray(rejected, dtype=float)

    def accuracy(ps: Sequence[Pair]) -> float:
        if not ps:
            return float("nan")
        c, r = pair_scores(ps)
        return float(np.mean(c > r))

    runs = {t.generation_id: t.run for t in traces}

    def corrupted(p: Pair) -> bool:
        return p.origin == "ratings" and CORRUPTED_RUN in (runs[p.chosen_id], runs[p.rejected_id])

    eval_labels = np.array([t.consistent for t in eval_traces], dtype=float)
    eval_probs = np.array([p_cons[t.generation_id] for t in eval_traces], dtype=float)
    eval_rated = np.array([t.quality for t in eval_traces], dtype=float)
    eval_pred = np.array(
        [
            quantize_quality(v)
            for v in apply_calibration(calibration, [reward[t.generation_id] for t in eval_traces])
        ]
    )
    by_gap = {}
    for name, lo, hi in (("gap_0.1", 0.05, 0.15), ("gap_0.2-0.3", 0.15, 0.35), ("gap_0.4+", 0.35, 9.0)):
        sel = [p for p in eval_pairs if p.origin == "ratings" and lo <= p.margin < hi]
        by_gap[name] = {"pairs": len(sel), "accuracy": _finite(accuracy(sel))}
    train_items = {t.item_id for t in train_traces}
    metrics: dict[str, Any] = {
        "pairwise_accuracy": _finite(accuracy(eval_pairs)),
        "consistency_auc": _finite(roc_auc(eval_labels, eval_probs)) if eval_traces else None,
        "pairwise_accuracy_by_gap": by_gap,
        "by_origin": {  # policy: neither trace is a corrupted gold trace
            "pairwise_accuracy_policy": _finite(
                accuracy([p for p in eval_pairs if p.origin == "ratings" and not corrupted(p)])
            ),
            "pairwise_accuracy_with_corrupted": _finite(accuracy([p for p in eval_pairs if corrupted(p)])),
            "pairwise_accuracy_votes": _finite(accuracy([p for p in eval_pairs if p.origin == "vote"])),
            "consistency_auc_policy": _finite(
                roc_auc(
                    [t.consistent for t in eval_traces if t.run != CORRUPTED_RUN],
                    [p_cons[t.generation_id] for t in eval_traces if t.run != CORRUPTED_RUN],
                )
            ),
            "policy_pairs": sum(p.origin == "ratings" and not corrupted(p) for p in eval_pairs),
        },
        "train_pairwise_accuracy": _finite(accuracy(train_pairs)),
        "train_consistency_auc": _finite(
            roc_auc([t.consistent for t in train_traces], [p_cons[t.generation_id] for t in train_traces])
        ),
        "consistency_accuracy": _finite(float(np.mean((eval_probs >= 0.5) == (eval_labels > 0.5))))
        if eval_traces
        else None,
        "quality_mae": _finite(float(np.mean(np.abs(eval_pred - eval_rated)))) if eval_traces else None,
        "quality_exact": _finite(float(np.mean(np.isclose(eval_pred, eval_rated)))) if eval_traces else None,
        "counts": {
            "traces": len(traces),
            "train_traces": len(train_traces),
            "eval_traces": len(eval_traces),
            "items": len(train_items | eval_items),
            "train_items": len(train_items),
            "eval_items": len(eval_items),
            "pairs": len(pairs),
            "train_pairs": len(train_pairs),
            "train_pairs_replicated": len(replicate(train_pairs)),
            "eval_pairs": len(eval_pairs),
            "vote_pairs": len(votes),
            "human_traces": sum("human" in t.sources for t in traces),
            "corrupted_traces": sum(t.run == CORRUPTED_RUN for t in traces),
            "corrupted_share": _finite(sum(t.run == CORRUPTED_RUN for t in traces) / len(traces)),
            "consistent_share": _finite(float(np.mean([t.consistent for t in traces]))),
            "mean_quality": _finite(float(np.mean([t.quality for t in traces]))),
        },  # fmt: skip
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("out", "progress")}
        | {"learning_rate": cfg.learning_rate(), "human_weight": HUMAN_WEIGHT, "vote_margin": VOTE_MARGIN},
        "seconds": {
            "quality_head": round(t_quality, 1),
            "consistency_head": round(t_consistency, 1),
            "total": round(time.perf_counter() - t_start, 1),
        },  # fmt: skip
        "quality_log": quality_log,
        "consistency_log": consistency_log,
    }

    # save: both heads (with the tokenizer), calibration, meta, metrics, plot
    for name, model in ((QUALITY_DIR, quality_model), (CONSISTENCY_DIR, consistency_model)):
        model.save_pretrained(out / name)
        tokenizer.save_pretrained(out / name)
    (out / CALIBRATION_FILE).write_text(json.dumps({"method": "isotonic", **calibration}, indent=1))
    meta = {
        "format_version": FORMAT_VERSION, "reference": cfg.reference,
        "consistency_reference": cfg.consistency_reference, "max_length": cfg.max_length,
        "base": cfg.base, "tokenizer": tok_path, "human_weight": HUMAN_WEIGHT, "sources": cfg.sources,
        "db": store.engine.url.render_as_string(hide_password=True), "torch": torch.__version__,
    }  # fmt: skip
    (out / META_FILE).write_text(json.dumps(meta, indent=1))
    if eval_traces:
        _write_plot(out / PLOT_FILE, eval_rated, eval_pred, eval_labels, eval_probs)
    metrics["seconds"]["total"] = round(time.perf_counter() - t_start, 1)
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=1))
    return metrics
