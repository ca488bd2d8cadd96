"""Training both heads from the store's ratings, with held-out metrics and a calibration plot.

R_t: TRL's ``RewardTrainer`` on the preference pairs (human pairs and votes replicated), its raw score
mapped to the quality grid by an isotonic fit on the training traces. R_c: weighted, class-balanced
binary cross-entropy on the per-trace consistency labels. Items are split (seeded) into train and eval;
``metrics.json`` reports the held-out pairwise accuracy, the consistency ROC AUC and more (computed from
the heads' scores by the pure :mod:`audio_thinker.reward_model.metrics`).
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

from ..config_args import config_field as _arg
from ..judges.learned import (
    CALIBRATION_FILE,
    CONSISTENCY_DIR,
    FORMAT_VERSION,
    META_FILE,
    QUALITY_DIR,
    batches_by_length,
    encode,
    load_tokenizer,
    pad_batch,
    score_ids,
    sigmoid,
    torch_setup,
)
from ..rewards import QUALITY_GRID
from .data import (
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
from .metrics import Split, calibrate, heldout_arrays, heldout_metrics
from .model import build_model, default_tokenizer_path

__all__ = ["METRICS_FILE", "PLOT_FILE", "TrainConfig", "train"]

METRICS_FILE = "metrics.json"
PLOT_FILE = "calibration.png"


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
    """Options of :func:`train` (the ``train`` subcommand: a flag and a help line per field)."""

    out: str = _arg(help="output folder (the two heads, metrics.json, calibration.png)")
    sources: tuple[str, ...] | None = _arg(
        None, "rating sources, comma-separated, e.g. human,oracle; none: all"
    )
    base: str | None = _arg(None, "HF sequence-classification base; none: the tiny model from scratch")
    tokenizer: str | None = _arg(
        None, "tokenizer path; none: the base's, or the project's for the tiny model"
    )
    reference: bool = _arg(True, "show the model the items' true events (--no-reference: do not)")
    consistency_reference: bool = _arg(
        False, "show the true events to the consistency head too (R_c is about the reasoning and its answer)"
    )
    eval_frac: float = _arg(0.2, "share of items held out for the metrics")
    min_gap: float = _arg(0.1, "smallest quality gap that makes a preference pair")
    epochs: float = _arg(4.0, "reward-head epochs over the (replicated) pairs")
    consistency_epochs: float = _arg(6.0, "consistency-head epochs over the labelled traces")
    lr: float | None = _arg(None, "learning rate; none: 1e-3 for the tiny model, 2e-5 for a base")
    batch_size: int = _arg(16, "pairs per step")
    max_length: int = _arg(1024, "longest input in tokens")
    seed: int = _arg(0, "seed of the split, initialisation and shuffling")
    progress: bool = _arg(True, "progress bars (--no-progress or --quiet: none)")
    tiny: dict[str, Any] | None = _arg(
        None, 'overrides of TINY_CONFIG as JSON, e.g. {"num_hidden_layers": 3}'
    )
    init: str | None = _arg(None, "policy folder whose text decoder initialises the tiny model")

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

    # scores of every trace, then calibration and held-out metrics (reward_model/metrics.py)
    pad = tokenizer.pad_token_id
    gids = list(all_seqs)
    reward = dict(zip(gids, score_ids(quality_model, [all_seqs[g] for g in gids], pad), strict=True))
    p_cons = dict(
        zip(gids, sigmoid(score_ids(consistency_model, [cons_seqs[g] for g in gids], pad)), strict=True)
    )
    calibration = calibrate(train_traces, reward)
    vote_texts = list(
        dict.fromkeys((p.prompt, c) for p in pairs if p.origin == "vote" for c in (p.chosen, p.rejected))
    )
    vote_seqs = [encode(tokenizer, prompt, c, cfg.max_length) for prompt, c in vote_texts]
    vote_reward = dict(
        zip(vote_texts, score_ids(quality_model, vote_seqs, pad) if vote_seqs else [], strict=True)
    )

    def score_pair(p: Pair) -> tuple[float, float]:
        if p.origin == "vote":  # a vote's two answers are scored as text (they may not be rated traces)
            return vote_reward[(p.prompt, p.chosen)], vote_reward[(p.prompt, p.rejected)]
        return reward[p.chosen_id], reward[p.rejected_id]

    split = Split(traces, train_traces, eval_traces, eval_items, pairs, train_pairs, eval_pairs, votes)
    metrics: dict[str, Any] = heldout_metrics(split, reward, p_cons, calibration, score_pair) | {
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
        held = heldout_arrays(eval_traces, reward, p_cons, calibration)
        _write_plot(out / PLOT_FILE, held.rated, held.predicted, held.labels, held.probs)
    metrics["seconds"]["total"] = round(time.perf_counter() - t_start, 1)
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=1))
    return metrics
