"""The ``learned`` judge: the reward model trained from the ratings store, and what it reads.

Training, export and bootstrap live in :mod:`audio_thinker.reward_model` (``python -m
audio_thinker.reward_model train --out DIR``); this module holds what they share with the judge: the
rendering of a judge request into text (:func:`render`), its tokenization (:func:`encode`), the scoring of
token sequences (:func:`score_ids`), the calibration map and the layout of a trained model folder.

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

**The judge.** ``Verdict(consistent = P(consistent) >= 0.5, quality = calibrated reward)`` from the two
heads of a ``train --out`` folder: the reward head's raw score mapped to the quality grid by the isotonic
fit in ``calibration.json``, the consistency head's logit through a sigmoid.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..rewards import sentences
from .base import JudgeRequest, Verdict

__all__ = [
    "CALIBRATION_FILE",
    "CONSISTENCY_DIR",
    "FORMAT_VERSION",
    "META_FILE",
    "QUALITY_DIR",
    "LearnedJudge",
    "apply_calibration",
    "encode",
    "load_tokenizer",
    "read_reward_model",
    "reference_text",
    "render",
    "render_completion",
    "render_prompt",
    "score_ids",
]

META_FILE = "reward_model.json"
CALIBRATION_FILE = "calibration.json"
QUALITY_DIR, CONSISTENCY_DIR = "quality", "consistency"
FORMAT_VERSION = 2
"""2: the reasoning aligned with the reference in the completion (1: the reference in the prompt)."""


# --------------------------------------------------------------------------------------------------
# What the reward model reads

_SPECIAL = re.compile(r"<\|")


def _clean(text: str) -> str:
    """Defuse special-token spellings (``<|endoftext|>`` in a trace must not end the sequence)."""
    return _SPECIAL.sub("< |", text)


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
    from .. import synth

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


def render_completion(think: str | None, answer: str | None, reference: str | None = None) -> str:
    """The completion part: the reasoning, aligned sentence by sentence with ``reference`` when given,
    and the answer."""
    think, answer = (think or "").strip(), (answer or "").strip()
    if reference is None:
        return _clean(f"Reasoning: {think}\nAnswer: {answer}")
    said, ref = sentences(think), sentences(reference)
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
# Tokens, scores and calibration


def torch_setup() -> Any:
    """The torch module, on CPU with no more threads than the machine has cores."""
    import torch

    if not torch.cuda.is_available():
        torch.set_num_threads(min(torch.get_num_threads(), os.cpu_count() or 1))
    return torch


def load_tokenizer(path: str) -> Any:
    """A tokenizer with a pad token (the eos token when it has none); the same class at training and at
    judging time (:func:`audio_thinker.models.auto_tokenizer`)."""
    from ..models import auto_tokenizer

    tok = auto_tokenizer(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if tok.eos_token is None:
        raise ValueError(f"the tokenizer of {path} has no eos token")
    return tok


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


def batches_by_length(
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


def pad_batch(torch: Any, seqs: Sequence[Sequence[int]], pad_id: int, device: Any) -> tuple[Any, Any]:
    """Right-padded input ids and attention mask of ``seqs`` on ``device``."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids.to(device), mask.to(device)


def score_ids(model: Any, seqs: Sequence[Sequence[int]], pad_id: int, *, batch_size: int = 32) -> np.ndarray:
    """The model's scalar output for each token sequence (batched by length, returned in order)."""
    torch = torch_setup()
    out = np.zeros(len(seqs), dtype=np.float64)
    if not seqs:
        return out
    device = next(model.parameters()).device
    model.eval()
    with torch.inference_mode():
        for batch in batches_by_length([len(s) for s in seqs], batch_size, None):
            ids, mask = pad_batch(torch, [seqs[i] for i in batch], pad_id, device)
            logits = model(input_ids=ids, attention_mask=mask).logits[:, 0].float().cpu().numpy()
            out[np.asarray(batch)] = logits
    return out


def apply_calibration(calibration: Mapping[str, Sequence[float]], scores: Sequence[float]) -> np.ndarray:
    """Piecewise-linear interpolation between the isotonic knots, flat outside, clipped to [0, 1]."""
    return np.clip(np.interp(np.asarray(scores, dtype=float), calibration["x"], calibration["y"]), 0.0, 1.0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function (P(consistent) from the consistency head's logit), overflow-safe."""
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


# --------------------------------------------------------------------------------------------------
# The judge


def read_reward_model(path: str | os.PathLike[str] | None) -> tuple[dict, dict]:
    """The metadata and calibration of a ``reward_model train --out`` folder, checked; a one-line ValueError
    when ``path`` is missing, is not such a folder, or holds another input format."""
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
    return meta, calibration


class LearnedJudge:
    """The trained reward model as a judge: ``Verdict(consistent = P(consistent) >= 0.5, quality =
    calibrated reward)``; an empty think gives ``Verdict(0, 0.0)``. ``path`` is a ``train --out`` folder."""

    name = "learned"

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, batch_size: int = 32, device: str | None = None
    ):
        meta, calibration = read_reward_model(path)
        folder = Path(str(path))
        torch = torch_setup()
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
        prob = sigmoid(score_ids(self.consistency_model, cons_seqs, pad, batch_size=self.batch_size))
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
