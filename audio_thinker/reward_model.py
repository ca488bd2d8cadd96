"""The ``learned`` judge: a reward model trained from the ratings store (bootstrap, export, train, judge).

    python -m audio_thinker.reward_model bootstrap --db sqlite:////tmp/rm/ratings.db --n 2000
    python -m audio_thinker.reward_model train --db sqlite:////tmp/rm/ratings.db --out /tmp/rm/model
    python -m audio_thinker.reward_model export --db ... --out pairs.jsonl --format trl|jsonl|hf

**What the model reads.** :func:`render` turns a judge request into TRL's explicit-prompt preference
format: ``prompt`` = the question and the choices; ``completion`` = the reasoning and the answer. When the
item carries synth-aqa ground truth, the completion is *aligned* with a reference: each sentence of the
reasoning (``T: …``) is followed by the reference's sentence at the same position (``R: …``; ``-`` where
one side has no sentence left), then ``Answer: …``. The reference is the item's gold trace without its
conclusion (the sentences a flawless trace states), or the true events in the trace grammar when only
``events`` is kept. Without ground truth (uploads, MMAU) the completion is ``Reasoning: …`` and
``Answer: …``, judged on the text alone. Export, training and scoring all use it, followed by the
tokenizer's eos token (as :class:`trl.RewardTrainer` appends it). A text model cannot otherwise tell a true
claim ("Beep 2 at 0.9 s: high") from a false one; the alignment puts each claim beside its reference, so a
small model compares neighbouring tokens instead of finding the matching sentence hundreds of tokens
back.
``train --no-reference`` trains a text-only model. The consistency head reads the reasoning alone by
default (``Reasoning: …``): R_c asks whether the reasoning supports its answer, which the truth does not
decide (the oracle checks the trace against its own claims), and without the reference lines the head
learns the check better (held-out AUC on policy traces 0.937 vs 0.921 on the same data in the same
time: 5 epochs without the reference against 3 with it, whose sequences are twice as long);
``--consistency-reference`` shows it the reference too.

**Two heads.** R_t: a sequence-classification model with one output trained by TRL's ``RewardTrainer``
on preference pairs — for every item, each two rated traces whose quality differs by at least
``min_gap`` (chosen = the better one, ``margin`` = the quality gap), plus the studio's A/B votes
(``margin`` = :data:`VOTE_MARGIN`; ties and both-bad are skipped). Its raw score is mapped to the 0-1
quality grid by an isotonic fit on the training traces (``calibration.json``). R_c: a second one-output
model trained with weighted binary cross-entropy on the per-trace consistency labels (classes balanced).

**Human over oracle.** A trace's label is the weighted mean of its ratings, a human rating weighing
:data:`HUMAN_WEIGHT` (3) times an oracle or judge rating (consistency: weighted majority); a pair in which
either trace carries a human rating, and every vote, is replicated :data:`HUMAN_WEIGHT` times in the
pair set (and in the ``trl`` export); human consistency labels get loss weight :data:`HUMAN_WEIGHT`.

**Default model.** A tiny ``Qwen2ForSequenceClassification`` (:data:`TINY_CONFIG`) on the project's
shipped tokenizer, trained from scratch on CPU in minutes; ``--base NAME_OR_PATH`` fine-tunes any HF
sequence-classification base instead (its own tokenizer).

**Bootstrap.** Synth-aqa items (clips, items with the ground truth in ``meta``) are answered by the policy
in think mode at a ladder of temperatures (one trace per item per temperature, run ``bootstrap``) and
every think trace is rated by the oracle (annotator and source ``oracle``). ``--corrupt-share S`` adds a
share S of corrupted gold traces (one fact, count, onset or the answer changed; run
``bootstrap-corrupted``), rated by the oracle like the others; the default is 0 (policy traces only).
Items that already have bootstrap traces are skipped, so an interrupted bootstrap resumes.

**Held-out metrics.** Items are split (seeded) into train and eval; ``metrics.json`` reports
``pairwise_accuracy`` (eval pairs, unreplicated, where score(chosen) > score(rejected)),
``consistency_auc`` (ROC AUC of the R_c head on eval traces), accuracy by quality gap, calibrated-quality
error, counts and timings; ``calibration.png`` plots calibrated vs rated quality and the R_c reliability.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import math
import os
import random
import re
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .judge import JudgeRequest, Verdict, quantize_quality, register_judge

__all__ = [
    "BOOTSTRAP_RUN",
    "CORRUPTED_RUN",
    "DEFAULT_TEMPERATURES",
    "HUMAN_WEIGHT",
    "LearnedJudge",
    "Pair",
    "Trace",
    "TrainConfig",
    "bootstrap",
    "build_pairs",
    "collect_traces",
    "corrupt_trace",
    "export",
    "main",
    "reference_text",
    "render",
    "roc_auc",
    "train",
]

log = logging.getLogger(__name__)

DEFAULT_TEMPERATURES = (0.7, 1.0, 1.3, 1.6)
BOOTSTRAP_RUN = "bootstrap"
CORRUPTED_RUN = "bootstrap-corrupted"
ORACLE = "oracle"
HUMAN_WEIGHT = 3
"""A human rating weighs this many oracle/judge ratings; human pairs and votes are replicated this often."""
VOTE_MARGIN = 0.3
"""The TRL margin of a pair from an A/B vote (rating pairs use their quality gap)."""
FORMATS = ("trl", "jsonl", "hf")
META_FILE = "reward_model.json"
CALIBRATION_FILE = "calibration.json"
METRICS_FILE = "metrics.json"
PLOT_FILE = "calibration.png"
QUALITY_DIR, CONSISTENCY_DIR = "quality", "consistency"
FORMAT_VERSION = 2
"""2: the reasoning aligned with the reference in the completion (1: the reference in the prompt)."""
TINY_CONFIG = dict(
    hidden_size=128,
    intermediate_size=384,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
    rope_theta=10000.0,
    tie_word_embeddings=False,
)
"""Size of the default reward model (a ``Qwen2Config`` sized for the project's tokenizer)."""


class RewardModelError(RuntimeError):
    """A problem the CLI reports with exit status 2 (no ratings, unknown source, bad model folder, ...)."""


# --------------------------------------------------------------------------------------------------
# What the reward model reads

_SPECIAL = re.compile(r"<\|")


def _clean(text: str) -> str:
    """Defuse special-token spellings (``<|endoftext|>`` in a trace must not end the sequence)."""
    return _SPECIAL.sub("< |", text)


_SENTENCE_SPLIT = re.compile(r"(?<=\.)\s+(?=[A-Z0-9])")
_CONCLUSION = re.compile(r"\s*(?:So|Thus|Therefore|Hence),? the answer is [^.]*\.?\s*$", re.IGNORECASE)


def reference_text(item: Mapping | None) -> str | None:
    """What is true of a synth-aqa item, in the trace grammar; None when the item has no ground truth.

    ``item`` is a synth item dict or a stored item's ``meta`` (both keep ``reasoning`` and ``events``).
    The gold trace without its conclusion when the item has one (the same sentences a flawless trace
    states, so that comparing is aligned), else every event with all its attributes.
    """
    if not isinstance(item, Mapping):
        return None
    gold = item.get("reasoning")
    if isinstance(gold, str) and gold.strip():
        return _CONCLUSION.sub("", gold.strip()).strip() or gold.strip()
    if not isinstance(item.get("events"), list):
        return None
    from . import synth

    try:
        events = synth.events_from_item({"events": item["events"]})
    except (TypeError, ValueError, KeyError, AttributeError):
        return None
    if not events:
        return "I hear no sound event, only background hiss."
    parts = []
    for k, ev in enumerate(events, 1):
        if ev.kind == "tone":
            attrs = ", ".join(str(a) for a in (ev.pitch, ev.length, ev.level) if a)
            parts.append(f"Beep {k} at {ev.onset:.1f} s: {attrs}.")
        elif ev.kind in ("noise", "chirp"):
            parts.append(synth.describe_event(ev, k))
        else:
            return None
    return " ".join(parts)


def render_prompt(question: str, choices: Sequence[str]) -> str:
    """The prompt part: question and choices, newline-terminated."""
    lines = [f"Question: {question.strip()}", "Choices: " + " | ".join(str(c).strip() for c in choices)]
    return _clean("\n".join(lines) + "\n")


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_SPLIT.split(text.strip()) if s]


def render_completion(think: str | None, answer: str | None, reference: str | None = None) -> str:
    """The completion part: the reasoning, aligned sentence by sentence with ``reference`` when given,
    and the answer."""
    think, answer = (think or "").strip(), (answer or "").strip()
    if reference is None:
        return _clean(f"Reasoning: {think}\nAnswer: {answer}")
    said, ref = _sentences(think), _sentences(reference)
    lines = []
    for k in range(max(len(said), len(ref))):
        lines += [f"T: {said[k] if k < len(said) else '-'}", f"R: {ref[k] if k < len(ref) else '-'}"]
    return _clean("\n".join(lines + [f"Answer: {answer}"]))


def render(request: JudgeRequest, *, reference: bool = True) -> tuple[str, str]:
    """``(prompt, completion)`` of a judge request: what export, training and scoring all read."""
    ref = reference_text(request.item) if reference else None
    return render_prompt(request.question, request.choices), render_completion(
        request.think, request.answer, ref
    )


# --------------------------------------------------------------------------------------------------
# Traces, labels and pairs from the store


@dataclass(frozen=True)
class Trace:
    """One rated generation with its aggregated labels."""

    generation_id: int
    item_id: int
    prompt: str
    completion: str
    consistent: int
    quality: float
    weight: int  # HUMAN_WEIGHT when a human rated it, else 1
    sources: tuple[str, ...]
    run: str | None


@dataclass(frozen=True)
class Pair:
    """A preference: ``chosen`` (completion text) beats ``rejected`` for the same prompt."""

    item_id: int
    prompt: str
    chosen: str
    rejected: str
    margin: float
    weight: int
    origin: str  # "ratings" | "vote"
    chosen_id: int
    rejected_id: int
    chosen_quality: float | None = None
    rejected_quality: float | None = None

    def trl_row(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "chosen": self.chosen,
            "rejected": self.rejected,
            "margin": self.margin,
        }


def _source_weight(source: str) -> int:
    return HUMAN_WEIGHT if source == "human" else 1


def _check_sources(sources: Iterable[str] | None) -> tuple[str, ...] | None:
    from .store import RATING_SOURCES

    if sources is None:
        return None
    out = tuple(s.strip() for s in sources if s.strip())
    bad = [s for s in out if s not in RATING_SOURCES]
    if bad or not out:
        raise RewardModelError(
            f"unknown rating source(s) {bad or list(sources)}; choose from {list(RATING_SOURCES)}"
        )
    return out


def collect_traces(
    store: Any, sources: Iterable[str] | None = None, *, reference: bool = True
) -> list[Trace]:
    """Submitted ratings of think traces, aggregated per generation (human ratings weigh more)."""
    sources_ = _check_sources(sources)
    grouped: dict[int, list[Any]] = defaultdict(list)
    for rec in store.ratings(sources_):
        if rec.consistent is None or rec.quality is None or not (rec.think or "").strip():
            continue
        grouped[rec.generation_id].append(rec)
    traces = []
    for gid in sorted(grouped):
        recs = grouped[gid]
        first = recs[0]
        weights = np.array([_source_weight(r.source) for r in recs], dtype=float)
        quality = float(np.dot(weights, [r.quality for r in recs]) / weights.sum())
        consistent = float(np.dot(weights, [float(r.consistent) for r in recs]) / weights.sum())
        prompt, completion = render(
            JudgeRequest(first.question, first.choices, first.think or "", first.answer or "", first.meta),
            reference=reference,
        )
        traces.append(
            Trace(
                generation_id=gid,
                item_id=first.item_id,
                prompt=prompt,
                completion=completion,
                consistent=int(consistent >= 0.5),
                quality=round(quality, 4),
                weight=int(weights.max()),
                sources=tuple(sorted({r.source for r in recs})),
                run=first.run,
            )  # fmt: skip
        )
    return traces


def vote_pairs(store: Any, *, reference: bool = True) -> list[Pair]:
    """Pairs from A/B votes (ties and both-bad skipped), weighted as human preferences."""
    from .rewards import parse_completion

    metas: dict[int, Any] = {}
    pairs = []
    for v in store.votes():
        if v.preferred is None:
            continue
        if v.item_id not in metas:
            metas[v.item_id] = store.get_item(v.item_id).meta
        texts = {"A": (v.text_a, v.generation_a_id), "B": (v.text_b, v.generation_b_id)}
        (win, win_id), (lose, lose_id) = texts[v.preferred], texts["B" if v.preferred == "A" else "A"]
        rendered = []
        for raw in (win, lose):
            parsed = parse_completion(raw)
            rendered.append(
                render(
                    JudgeRequest(
                        v.question, v.choices, parsed.think or "", parsed.answer or "", metas[v.item_id]
                    ),
                    reference=reference,
                )
            )
        pairs.append(
            Pair(
                item_id=v.item_id,
                prompt=rendered[0][0],
                chosen=rendered[0][1],
                rejected=rendered[1][1],
                margin=VOTE_MARGIN,
                weight=HUMAN_WEIGHT,
                origin="vote",
                chosen_id=win_id,
                rejected_id=lose_id,
            )  # fmt: skip
        )
    return pairs


def build_pairs(traces: Sequence[Trace], votes: Sequence[Pair] = (), *, min_gap: float = 0.1) -> list[Pair]:
    """Rating pairs (same item, quality gap >= ``min_gap``, margin = gap) followed by the vote pairs."""
    by_item: dict[int, list[Trace]] = defaultdict(list)
    for t in traces:
        by_item[t.item_id].append(t)
    pairs = []
    for item_id in sorted(by_item):
        group = by_item[item_id]
        for i, a in enumerate(group):
            for b in group[i + 1 :]:
                gap = abs(a.quality - b.quality)
                if gap < min_gap - 1e-6:
                    continue
                hi, lo = (a, b) if a.quality > b.quality else (b, a)
                pairs.append(
                    Pair(
                        item_id=item_id,
                        prompt=hi.prompt,
                        chosen=hi.completion,
                        rejected=lo.completion,
                        margin=round(gap, 4),
                        weight=max(hi.weight, lo.weight),
                        origin="ratings",
                        chosen_id=hi.generation_id,
                        rejected_id=lo.generation_id,
                        chosen_quality=hi.quality,
                        rejected_quality=lo.quality,
                    )  # fmt: skip
                )
    return pairs + list(votes)


def replicate(pairs: Sequence[Pair]) -> list[Pair]:
    """Each pair ``weight`` times (how human pairs and votes outweigh oracle pairs in training)."""
    return [p for p in pairs for _ in range(max(1, int(p.weight)))]


def split_items(item_ids: Iterable[int], eval_frac: float, seed: int) -> set[int]:
    """The held-out item ids: a seeded ``eval_frac`` share of the distinct ids (at least one if > 0)."""
    ids = sorted(set(item_ids))
    if eval_frac <= 0 or len(ids) < 2:
        return set()
    random.Random(seed).shuffle(ids)
    n = min(len(ids) - 1, max(1, round(eval_frac * len(ids))))
    return set(ids[:n])


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


def apply_calibration(calibration: Mapping[str, Sequence[float]], scores: Sequence[float]) -> np.ndarray:
    """Piecewise-linear interpolation between the isotonic knots, flat outside, clipped to [0, 1]."""
    return np.clip(np.interp(np.asarray(scores, dtype=float), calibration["x"], calibration["y"]), 0.0, 1.0)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


# --------------------------------------------------------------------------------------------------
# Models


def _torch_setup() -> Any:
    import torch

    if not torch.cuda.is_available():
        torch.set_num_threads(min(torch.get_num_threads(), os.cpu_count() or 1))
    return torch


def default_tokenizer_path() -> str:
    """The project's tokenizer: the shipped tiny model's folder."""
    from .models import TINY_MODEL_DIR

    return str(TINY_MODEL_DIR)


def load_tokenizer(path: str) -> Any:
    """A tokenizer with a pad token (the eos token when it has none); the same class at training and at
    judging time (:func:`audio_thinker.models.auto_tokenizer`)."""
    from .models import auto_tokenizer

    tok = auto_tokenizer(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if tok.eos_token is None:
        raise RewardModelError(f"the tokenizer of {path} has no eos token")
    return tok


def build_model(
    tokenizer: Any,
    base: str | None = None,
    *,
    seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
    init: str | None = None,
) -> Any:
    """A one-output sequence classifier with a fresh head.

    ``base``: any HF model, loaded with ``AutoModelForSequenceClassification``. Else the tiny Qwen2:
    with ``init`` (a policy folder: a Qwen2-Audio checkpoint or a Qwen2 causal LM) its text decoder's
    weights and size, else :data:`TINY_CONFIG` (+ ``overrides``) from a random init.
    """
    torch = _torch_setup()
    torch.manual_seed(seed)
    if base is not None:
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
        model.config.pad_token_id = tokenizer.pad_token_id
        return model
    from transformers import Qwen2Config, Qwen2ForSequenceClassification

    size: dict[str, Any] = TINY_CONFIG | dict(overrides or {})
    state: dict[str, Any] | None = None
    if init is not None:
        size, state = _policy_text_decoder(init)
    config = Qwen2Config(
        **(size | {"vocab_size": len(tokenizer), "num_labels": 1, "pad_token_id": tokenizer.pad_token_id,
                   "eos_token_id": tokenizer.eos_token_id, "bos_token_id": None, "use_cache": False}),
    )  # fmt: skip
    model = Qwen2ForSequenceClassification(config)
    if state is not None:
        emb = state["model.embed_tokens.weight"]
        if emb.shape[0] != len(tokenizer):
            raise RewardModelError(
                f"{init}: its vocabulary ({emb.shape[0]}) does not match the tokenizer ({len(tokenizer)}); "
                "use the policy's own tokenizer (--tokenizer)"
            )
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or set(missing) - {"score.weight"}:
            raise RewardModelError(f"{init}: cannot load its text decoder ({missing=}, {unexpected=})")
    return model


_TEXT_CONFIG_KEYS = (
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
    "max_position_embeddings", "rms_norm_eps", "hidden_act", "rope_parameters",
)  # fmt: skip


def _policy_text_decoder(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Size and weights (``model.*`` keys) of the text decoder of a Qwen2(-Audio) checkpoint folder."""
    from safetensors.torch import load_file

    folder = Path(path)
    try:
        config = json.loads((folder / "config.json").read_text())
        tensors = load_file(str(folder / "model.safetensors"))
    except (OSError, json.JSONDecodeError) as err:
        raise RewardModelError(f"cannot read the policy checkpoint {folder}: {err}") from err
    text = config.get("text_config", config)
    if text.get("model_type") != "qwen2":
        raise RewardModelError(f"{folder}: --init needs a Qwen2 text decoder, got {text.get('model_type')!r}")
    size = {k: text[k] for k in _TEXT_CONFIG_KEYS if k in text}
    size["tie_word_embeddings"] = False
    state = {}
    for key, value in tensors.items():
        for prefix in ("language_model.model.", "model.language_model.", "model."):
            if key.startswith(prefix) and "audio_tower" not in key and "projector" not in key:
                state["model." + key[len(prefix) :]] = value.clone()
                break
    return size, state


def encode(tokenizer: Any, prompt: str, completion: str, max_length: int) -> list[int]:
    """Token ids of ``prompt + completion + eos`` (as TRL builds them); over ``max_length`` the middle goes."""
    text = prompt + completion
    if not text.endswith(tokenizer.eos_token):
        text += tokenizer.eos_token
    ids = list(tokenizer(text=text)["input_ids"])
    if len(ids) > max_length:
        head = max_length // 2
        ids = ids[:head] + ids[len(ids) - (max_length - head) :]
    return ids


def _batches_by_length(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator | None
) -> list[list[int]]:
    """Index batches of similar length (less padding); shuffled in chunks when ``rng`` is given."""
    idx = np.arange(len(lengths))
    if rng is None:
        order = sorted(idx, key=lambda i: lengths[i])
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    idx = rng.permutation(idx)
    chunk = batch_size * 32
    batches = []
    for s in range(0, len(idx), chunk):
        part = sorted(idx[s : s + chunk], key=lambda i: lengths[i])
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def _pad(torch: Any, seqs: Sequence[Sequence[int]], pad_id: int, device: Any) -> tuple[Any, Any]:
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


def score_ids(model: Any, seqs: Sequence[Sequence[int]], pad_id: int, *, batch_size: int = 32) -> np.ndarray:
    """The model's scalar output for each token sequence (batched by length, returned in order)."""
    torch = _torch_setup()
    out = np.zeros(len(seqs), dtype=np.float64)
    if not seqs:
        return out
    device = next(model.parameters()).device
    model.eval()
    with torch.inference_mode():
        for batch in _batches_by_length([len(s) for s in seqs], batch_size, None):
            ids, mask = _pad(torch, [seqs[i] for i in batch], pad_id, device)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, 0].float().cpu().numpy()
            out[np.asarray(batch)] = logits
    return out


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
    torch = _torch_setup()
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
        for batch in _batches_by_length(lengths, batch_size, rng):
            ids, mask = _pad(torch, [seqs[i] for i in batch], pad_id, device)
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
    torch = _torch_setup()
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
    grid = np.round(np.arange(0, 1.01, 0.1), 1)
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
            f"no submitted ratings of think traces{where} in {store.url}; run bootstrap first"
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
            f"quality by >= {cfg.min_gap} (and no votes); rate more traces per item"
        )
    if len({t.consistent for t in train_traces}) < 2:
        raise RewardModelError(
            "the consistency labels of the training traces are all the same; rate more traces"
        )

    torch = _torch_setup()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    tok_path = cfg.tokenizer or cfg.base or cfg.init or default_tokenizer_path()
    tokenizer = load_tokenizer(tok_path)
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
        zip(gids, _sigmoid(score_ids(consistency_model, [cons_seqs[g] for g in gids], pad)), strict=True)
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


# --------------------------------------------------------------------------------------------------
# The judge


@register_judge("learned")
class LearnedJudge:
    """The trained reward model as a judge: ``Verdict(consistent = P(consistent) >= 0.5, quality =
    calibrated reward)``; an empty think gives ``Verdict(0, 0.0)``. ``path`` is a ``train --out`` folder."""

    name = "learned"

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, batch_size: int = 32, device: str | None = None
    ):
        if path is None:
            raise ValueError(
                "the learned judge needs path=DIR (python -m audio_thinker.reward_model train --out DIR)"
            )
        folder = Path(path)
        try:
            meta = json.loads((folder / META_FILE).read_text())
            calibration = json.loads((folder / CALIBRATION_FILE).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{folder} is not a trained reward model folder: {err}") from err
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{folder} was trained on input format {meta.get('format_version')}, this version reads format "
                f"{FORMAT_VERSION}; retrain it (python -m audio_thinker.reward_model train)"
            )
        torch = _torch_setup()
        from transformers import AutoModelForSequenceClassification

        self.path = folder
        self.reference = bool(meta.get("reference", True))
        self.consistency_reference = bool(meta.get("consistency_reference", self.reference))
        self.max_length = int(meta.get("max_length", 1024))
        self.batch_size = batch_size
        self.calibration = calibration
        self.tokenizer = load_tokenizer(str(folder / QUALITY_DIR))
        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.quality_model = (
            AutoModelForSequenceClassification.from_pretrained(folder / QUALITY_DIR).to(dev).eval()
        )
        self.consistency_model = (
            AutoModelForSequenceClassification.from_pretrained(folder / CONSISTENCY_DIR).to(dev).eval()
        )

    def raw_scores(self, requests: Sequence[JudgeRequest]) -> tuple[np.ndarray, np.ndarray]:
        """``(reward, P(consistent))`` for each request (empty think included; it is scored as text)."""

        def encode_all(reference: bool) -> list[list[int]]:
            return [
                encode(self.tokenizer, *render(r, reference=reference), self.max_length) for r in requests
            ]

        seqs = encode_all(self.reference)
        cons_seqs = (
            seqs if self.consistency_reference == self.reference else encode_all(self.consistency_reference)
        )
        pad = self.tokenizer.pad_token_id
        reward = score_ids(self.quality_model, seqs, pad, batch_size=self.batch_size)
        prob = _sigmoid(score_ids(self.consistency_model, cons_seqs, pad, batch_size=self.batch_size))
        return reward, prob

    def score_batch(self, requests: Sequence[JudgeRequest]) -> list[Verdict]:
        verdicts: list[Verdict | None] = [None] * len(requests)
        todo = [i for i, r in enumerate(requests) if (r.think or "").strip()]
        for i, r in enumerate(requests):
            if not (r.think or "").strip():
                verdicts[i] = Verdict(consistent=0, quality=0.0, detail="empty think")
        if todo:
            reward, prob = self.raw_scores([requests[i] for i in todo])
            quality = apply_calibration(self.calibration, reward)
            for i, r, p, q in zip(todo, reward, prob, quality, strict=True):
                verdicts[i] = Verdict(
                    consistent=int(p >= 0.5),
                    quality=float(q),
                    detail=f"reward {r:.3f}, P(consistent) {p:.3f}",
                )
        return [v for v in verdicts if v is not None]


# --------------------------------------------------------------------------------------------------
# Bootstrap


_EVENT_SENTENCE = re.compile(r"^(?:Beep \d+|At \d)")
_SWAPS = {
    "low": "high", "high": "low", "middle": "low", "short": "long", "long": "short",
    "loud": "quiet", "quiet": "loud", "up": "down", "down": "up",
}  # fmt: skip
CORRUPTIONS = {"fact": 3, "onset": 2, "drop": 2, "count": 1, "tally": 1, "conclusion": 1, "answer": 1}
"""Kinds of corruption and their odds (among the kinds that apply to a trace)."""


def corrupt_trace(item: Mapping[str, Any], rng: random.Random) -> tuple[str, str, str]:
    """A flawed variant of the item's gold trace (``reasoning``): ``(think, answer, kind)``.

    One edit, drawn among the kinds that apply (odds :data:`CORRUPTIONS`): ``fact`` (one attribute of one
    event flipped: high/low, short/long, loud/quiet, up/down), ``onset`` (one onset moved by 0.3-0.8 s),
    ``drop`` (one of several event sentences removed), ``count`` ("That is N beeps" off by one), ``tally``
    (one running tally off by one), ``conclusion`` (stated conclusion and answer both another choice),
    ``answer`` (only the answer changed). The oracle then rates the result like any trace: most kinds
    lower the quality, ``conclusion`` and ``answer`` break only the consistency.
    """
    think, answer = str(item["reasoning"]), str(item["answer"])
    others = [c for c in item["choices"] if c != answer] or [answer]
    sentences = _SENTENCE_SPLIT.split(think)
    events = [i for i, s in enumerate(sentences) if _EVENT_SENTENCE.match(s)]
    attr_re = re.compile(r"\b(?:" + "|".join(_SWAPS) + r")\b(?! high| low)")
    spots = {
        "fact": [(i, m) for i in events for m in attr_re.finditer(sentences[i].split("(")[0])],
        "onset": [(i, m) for i in events for m in re.finditer(r"\bat (\d+\.\d) s", sentences[i])],
        "drop": [(i, None) for i in events] if len(events) >= 2 else [],
        "count": [(i, m) for i, s in enumerate(sentences) if (m := re.match(r"That is (\d+) beeps?\.", s))],
        "tally": [(i, m) for i in events for m in re.finditer(r"\((\d+) high, (\d+) low\)", sentences[i])],
        "conclusion": [(0, None)]
        if re.search(r"So the answer is .*\.$", think) and others != [answer]
        else [],
        "answer": [(0, None)],
    }
    kinds = [k for k in CORRUPTIONS if spots[k]]
    kind = rng.choices(kinds, weights=[CORRUPTIONS[k] for k in kinds])[0]
    i, m = rng.choice(spots[kind])
    s = sentences[i]
    if kind == "fact":
        sentences[i] = s[: m.start()] + _SWAPS[m.group()] + s[m.end() :]
    elif kind == "onset":
        old, shift = float(m.group(1)), rng.uniform(0.3, 0.8)
        new = old + shift if old < 1.2 or rng.random() < 0.5 else max(0.0, old - shift)
        sentences[i] = s[: m.start(1)] + f"{new:.1f}" + s[m.end(1) :]
    elif kind == "drop":
        del sentences[i]
    elif kind == "count":
        n = int(m.group(1))
        n2 = n + 1 if n <= 1 or rng.random() < 0.5 else n - 1
        sentences[i] = f"That is {n2} beep{'s' if n2 != 1 else ''}."
    elif kind == "tally":
        g = rng.choice((1, 2))
        value = int(m.group(g))
        value = value + 1 if value == 0 or rng.random() < 0.5 else value - 1
        sentences[i] = s[: m.start(g)] + str(value) + s[m.end(g) :]
    elif kind == "conclusion":
        other = rng.choice(others)
        return re.sub(r"So the answer is .*\.$", f"So the answer is {other}.", think), other, kind
    else:
        return think, rng.choice(others), kind
    return " ".join(sentences), answer, kind


def _wav_bytes(audio: np.ndarray, sampling_rate: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.asarray(audio, dtype=np.float32), sampling_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _bootstrapped_items(store: Any) -> set[int]:
    from sqlalchemy import select

    from .store import Generation

    with store.session() as session:
        rows = session.scalars(
            select(Generation.item_id).where(Generation.run.in_([BOOTSTRAP_RUN, CORRUPTED_RUN])).distinct()
        )
        return set(rows)


def bootstrap(
    store: Any,
    lm: Any,
    *,
    n: int,
    seed: int = 0,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    batch_size: int = 32,
    corrupt_share: float = 0.0,
    max_new_tokens: int | None = None,
    model_name: str | None = None,
    split: str = "rm",
    progress: bool = True,
) -> dict[str, int]:
    """Answer ``n`` synth-aqa items with ``lm`` (think mode, one trace per temperature), rate every think
    trace with the oracle, store everything; returns what was added. Reproducible for a given seed."""
    from tqdm.auto import tqdm

    from . import synth
    from .judge import make_judge

    if n < 1:
        raise RewardModelError(f"--n must be at least 1, got {n}")
    if not 0.0 <= corrupt_share < 1.0:
        raise RewardModelError(f"--corrupt-share must be in [0, 1), got {corrupt_share}")
    if not temperatures or any(t < 0 for t in temperatures):
        raise RewardModelError(f"temperatures must be non-negative, got {list(temperatures)}")
    oracle = make_judge(ORACLE)
    model_name = model_name or str(getattr(lm.model, "name_or_path", "") or "policy")
    done = _bootstrapped_items(store)
    added = {"items": 0, "generations": 0, "ratings": 0, "corrupted": 0, "skipped_items": 0, "empty": 0}
    per_item_corrupt = corrupt_share / (1.0 - corrupt_share) * len(temperatures)
    tasks = synth.task_schedule(n)
    saved_max = lm.max_new_tokens
    if max_new_tokens:
        lm.max_new_tokens = max_new_tokens
    bar = tqdm(total=n, desc="bootstrap", disable=not progress, unit="item")
    try:
        for start in range(0, n, batch_size):
            batch = []
            for index in range(start, min(n, start + batch_size)):
                item, audio = synth.generate_item(tasks[index], seed, index, split)
                clip = store.add_clip(_wav_bytes(audio, synth.SAMPLE_RATE), original_name=f"{item['id']}.wav")
                meta = {
                    k: item[k] for k in ("id", "events", "reasoning", "sub-category", "split", "category")
                }
                row = store.add_item(
                    item["question"], item["choices"], answer=item["answer"], source="synth-aqa",
                    external_id=item["id"], clip=clip.hash, meta=meta | {"seed": seed, "index": index},
                    task=item["sub-category"], difficulty=item["difficulty"],
                )  # fmt: skip
                if row.id in done:
                    added["skipped_items"] += 1
                    continue
                added["items"] += 1
                batch.append((row.id, item, audio))
            if not batch:
                bar.update(min(n, start + batch_size) - start)
                continue
            outputs: list[tuple[int, dict, str, str | None, str | None, str, int | None, float | None]] = []
            for k, temp in enumerate(temperatures):
                answers = lm.answer_batch(
                    [a for _, _, a in batch], [it["question"] for _, it, _ in batch],
                    [it["choices"] for _, it, _ in batch], "think", temperature=temp,
                    seed=seed * 1_000_003 + start * 101 + k,
                )  # fmt: skip
                for (item_id, item, _), ans in zip(batch, answers, strict=True):
                    outputs.append(
                        (item_id, item, ans.text, ans.think, ans.answer, BOOTSTRAP_RUN, ans.completion_tokens,
                         ans.latency_s / len(batch))
                    )  # fmt: skip
            for item_id, item, _ in batch:
                rng = random.Random(f"{seed}-{item['id']}-corrupt")
                k = int(per_item_corrupt) + (rng.random() < per_item_corrupt - int(per_item_corrupt))
                for _ in range(k):
                    think, answer, _kind = corrupt_trace(item, rng)
                    raw = f"<think>{think}</think><answer>{answer}</answer>"
                    outputs.append((item_id, item, raw, think, answer, CORRUPTED_RUN, None, None))
            requests, gens = [], []
            for item_id, item, raw, think, answer, run, tokens, latency in outputs:
                if not raw.strip():
                    added["empty"] += 1
                    continue
                gen = store.add_generation(
                    item_id, model_name if run == BOOTSTRAP_RUN else "gold-corrupted", "think", raw,
                    think=think, answer=answer, completion_tokens=tokens, latency_s=latency, run=run,
                )  # fmt: skip
                added["generations"] += 1
                added["corrupted"] += run == CORRUPTED_RUN
                if (gen.think or "").strip():
                    requests.append(
                        JudgeRequest(item["question"], item["choices"], gen.think, gen.answer or "", item)
                    )
                    gens.append(gen.id)
            for gid, verdict in zip(gens, oracle.score_batch(requests), strict=True):
                if verdict.failed:
                    continue
                store.rate(
                    gid, ORACLE, consistent=bool(verdict.consistent), quality=verdict.quality,
                    comment=verdict.detail[:2000] or None, source=ORACLE,
                )  # fmt: skip
                added["ratings"] += 1
            bar.update(min(n, start + batch_size) - start)
    finally:
        lm.max_new_tokens = saved_max
        bar.close()
    return added


# --------------------------------------------------------------------------------------------------
# Export


def label_rows(traces: Sequence[Trace]) -> list[dict[str, Any]]:
    """Per-trace labels (what the consistency head trains on), one dict per trace."""
    return [
        {
            "prompt": t.prompt,
            "completion": t.completion,
            "consistent": t.consistent,
            "quality": t.quality,
            "weight": t.weight,
            "item_id": t.item_id,
            "generation_id": t.generation_id,
            "sources": list(t.sources),
            "run": t.run,
        }  # fmt: skip
        for t in traces
    ]


def pair_rows(pairs: Sequence[Pair]) -> list[dict[str, Any]]:
    """Pairs with their provenance (``weight``, ``origin``, ids, qualities), one dict per pair."""
    return [asdict(p) for p in pairs]


def export(
    store: Any,
    out: str | os.PathLike[str],
    fmt: str,
    *,
    sources: Iterable[str] | None = None,
    what: str = "pairs",
    reference: bool = True,
    min_gap: float = 0.1,
) -> int:
    """Write pairs (or per-trace labels) as ``trl`` JSONL, plain ``jsonl`` or an ``hf`` dataset; rows written.

    ``trl``: exactly ``prompt``, ``chosen``, ``rejected``, ``margin``, human pairs and votes replicated
    :data:`HUMAN_WEIGHT` times (feed it to ``RewardTrainer`` as is). ``jsonl`` / ``hf``: one row per pair
    with ``weight``, ``origin``, item and generation ids and both qualities.
    """
    if fmt not in FORMATS:
        raise RewardModelError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    if what not in ("pairs", "labels"):
        raise RewardModelError(f"--what must be pairs or labels, got {what!r}")
    if what == "labels" and fmt == "trl":
        raise RewardModelError("the trl format holds preference pairs; export labels as jsonl or hf")
    traces = collect_traces(store, sources, reference=reference)
    if what == "labels":
        rows = label_rows(traces)
    else:
        pairs = build_pairs(traces, vote_pairs(store, reference=reference), min_gap=min_gap)
        rows = [p.trl_row() for p in replicate(pairs)] if fmt == "trl" else pair_rows(pairs)
    if not rows:
        raise RewardModelError(
            f"nothing to export from {store.url}: {len(traces)} rated think traces"
            + ("" if not traces else " but no pairs (no two traces of an item differ in quality, no votes)")
        )
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "hf":
        from datasets import Dataset

        Dataset.from_list(rows).save_to_disk(str(path))
    else:
        with path.open("w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return len(rows)


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
    p = argparse.ArgumentParser(
        prog="python -m audio_thinker.reward_model", description=__doc__.split("\n\n")[0]
    )
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
    e.add_argument("--format", required=True, choices=FORMATS)
    e.add_argument("--sources", type=_sources, default=None, help="rating sources (default: all)")
    e.add_argument("--what", default="pairs", choices=("pairs", "labels"))
    e.add_argument("--no-reference", action="store_true")
    e.add_argument("--min-gap", type=float, default=0.1)
    return p


def _run(args: argparse.Namespace) -> None:
    from .store import Store

    if args.threads < 1:
        raise RewardModelError(f"--threads must be at least 1, got {args.threads}")
    import torch

    torch.set_num_threads(args.threads)
    if args.command == "train":
        if not 0.0 <= args.eval_frac < 1.0:
            raise RewardModelError(f"--eval-frac must be in [0, 1), got {args.eval_frac}")
        _check_sources(args.sources)
    from .store import _sqlite_file, database_url

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
            from .inference import AudioLM
            from .models import default_model_path

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


if __name__ == "__main__":
    sys.exit(main())
