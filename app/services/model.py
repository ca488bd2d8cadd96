"""The studio's model: loading it, naming it, its card, and checking an upload against what it heard."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from audio_thinker.audio import MAX_FILE_BYTES, AudioError, load_audio
from audio_thinker.inference import AudioLM
from audio_thinker.models import TINY_MODEL_DIR, check_model_source, default_model_path, load_policy

from .auth import is_admin
from .state import STATE, UserError, db_label, settings, store

MAX_UPLOAD_SECONDS = 30.0
"""Longest clip the studio accepts (``load_audio(max_seconds=...)``)."""
MIN_UPLOAD_SECONDS = 0.05
MAX_UPLOAD_BYTES = MAX_FILE_BYTES
"""Largest upload (bytes); also passed to ``launch(max_file_size=...)`` so bigger files never arrive."""
TINY_MODEL_NAME = "tiny-qwen2-audio"


def model_device() -> str:
    """Where the model runs: ``$AUDIO_THINKER_DEVICE``, else ``cuda`` when a GPU is visible, else ``cpu``."""
    env = os.environ.get("AUDIO_THINKER_DEVICE")
    if env:
        return env
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _load_model(path: str | None) -> AudioLM:
    device = model_device()
    if device.startswith("cuda"):  # bf16 on a GPU: a 7B model takes ~16 GB instead of ~32
        import torch

        policy, processor = load_policy(path or default_model_path(), dtype=torch.bfloat16, device=device)
        return AudioLM(policy, processor)
    lm = AudioLM.from_pretrained(path or default_model_path())
    if STATE.on_gpu:
        import torch

        if torch.cuda.is_available():
            lm.model.to("cuda")
    return lm


def model() -> AudioLM:
    """The studio's model, loaded once (``--model`` / ``$AUDIO_THINKER_MODEL`` / the shipped model)."""
    s = settings()
    if s.lm is not None:
        return s.lm
    with STATE.model_lock:
        if STATE.lm is None:
            STATE.lm = _load_model(s.model_path)
        return STATE.lm


def model_name() -> str:
    """A short name for the model in use (stored with every generation)."""
    path = settings().model_path or default_model_path()
    if Path(path).resolve() == TINY_MODEL_DIR.resolve():
        return TINY_MODEL_NAME
    return str(path)[-200:]


def model_label(model: str | None, user: str) -> str | None:
    """How ``user`` may see a model name: admins as stored; others without the server folders a local model
    lives in (its last two path parts), hub ids unchanged."""
    if not model or is_admin(user):
        return model
    path = Path(model)
    if path.is_absolute() or model.startswith((".", "~")) or path.exists():
        return "/".join(path.parts[-2:])
    return model


def warm_up() -> None:
    """Set the torch thread count, load the model and open the store before the first request."""
    import torch

    from audio_thinker.models import cpu_threads

    torch.set_num_threads(cpu_threads())
    model()
    store()


# ------------------------------------------------------------------------------------------ model card


def check_model(path: str | None = None) -> str:
    """The model source the studio will load (``--model`` / ``$AUDIO_THINKER_MODEL`` / shipped); raises
    :class:`UserError` with the one-line reason when it cannot be loaded."""
    try:
        return check_model_source(path or settings().model_path or default_model_path())
    except ValueError as err:
        raise UserError(str(err)) from err


def clip_window_s(lm: AudioLM | None = None) -> float | None:
    """How much of a clip the model hears: its feature extractor's window (``n_samples`` / rate)."""
    fe = getattr((lm or model()).processor, "feature_extractor", None)
    n, rate = getattr(fe, "n_samples", None), getattr(fe, "sampling_rate", None)
    if n and rate:
        return round(n / rate, 3)
    chunk = getattr(fe, "chunk_length", None)
    return float(chunk) if chunk else None


def is_tiny_model() -> bool:
    return model_name() == TINY_MODEL_NAME


def model_card(user: str | None = None) -> dict:
    """What the loaded model was trained to hear, for the visitor: the shipped tiny model's training
    data and measured accuracy, or what can be read from another model's config and processor."""
    lm = model()
    cfg = getattr(lm.model, "config", None)
    card = {
        "model": info(user)["model"],
        "architecture": (getattr(cfg, "architectures", None) or [type(lm.model).__name__])[0],
        "sampling_rate": lm.sampling_rate,
        "clip_window_s": clip_window_s(lm),
        "max_new_tokens": lm.max_new_tokens,
        "parameters": sum(p.numel() for p in lm.model.parameters()),
        "trained_on": None,
        "numbers": None,
        "synthetic_only": False,
    }
    if is_tiny_model():
        card.update(
            trained_on="synth-aqa only: 3 s synthetic clips of faint hiss with a few pure tones, chirps and "
            "noise bursts, and questions about their count, pitch, loudness, length and order",
            numbers="docs/models.md (held-out synth-aqa: 0.73-0.74 with thinking, 0.81-0.82 without; it is a "
            "base built with flawed reasoning on purpose, for GRPO to improve)",
            synthetic_only=True,
        )
    return card


def model_card_markdown(user: str | None = None) -> str:
    """The model card as the Ask & compare panel shows it."""
    c = model_card(user)
    window = (
        f"the first **{c['clip_window_s']:g} s** of each clip" if c["clip_window_s"] else "(window unknown)"
    )
    lines = [
        f"**Model** `{c['model']}` · {c['architecture']} · {c['parameters'] / 1e6:.1f} M parameters",
        f"**Hears** {window}, at {c['sampling_rate'] / 1000:g} kHz; anything later is cut off.",
        f"**Answers** with at most {c['max_new_tokens']} tokens; a reasoning that does not close by then "
        "gets no answer.",
    ]
    if c["synthetic_only"]:
        lines += [
            f"**Trained on** {c['trained_on']}.",
            "⚠️ It has **never heard speech, music or real-world sounds**: on those it produces confident "
            "nonsense. Use the examples below, or clips like them.",
            f"**Its numbers** {c['numbers']}.",
        ]
    else:
        lines.append(
            "**Trained on** whatever its authors used: see its model card. The studio reads only its config "
            "and processor."
        )
    return "\n\n".join(lines)


def audio_check(path: str | None) -> list[str]:
    """Why an uploaded clip is far from what the model heard (empty: nothing found). Decodes the clip
    (a bad file raises :class:`UserError`), then :func:`app.card.unlike_synth` for the shipped model, and
    only the clip window for any other model."""
    from ..card import unlike_synth

    lm = model()
    wave = load_upload(path, lm.sampling_rate)
    window = clip_window_s(lm)
    if is_tiny_model():
        return unlike_synth(wave, lm.sampling_rate, window).flags
    seconds = len(wave) / lm.sampling_rate
    if window and seconds > window + 0.05:
        return [f"it is {seconds:.1f} s long and the model hears only its first {window:g} s"]
    return []


def audio_warning(flags: Sequence[str]) -> str:
    """The flags as one line for the page (empty string when there are none)."""
    if not flags:
        return ""
    return (
        "⚠️ **This clip is unlike what the model was trained on**: "
        + "; ".join(flags)
        + ". Expect a poor answer."
    )


# -------------------------------------------------------------------------------------------- uploads


def check_upload(path: str | None) -> None:
    """Refuse a missing, oversized, too long/short or non-audio upload with a friendly :class:`UserError`."""
    load_upload(path)


def load_upload(path: str | None, sampling_rate: int = 16000) -> Any:
    if not path:
        raise UserError("Please upload or record an audio clip first.")
    try:
        return load_audio(
            path, sampling_rate=sampling_rate, max_seconds=MAX_UPLOAD_SECONDS, min_seconds=MIN_UPLOAD_SECONDS
        )
    except AudioError as err:
        reason = str(err)
        prefix = f"{path}: "
        for candidate in (prefix, f"{Path(path).name}: "):
            if reason.startswith(candidate):
                reason = reason[len(candidate) :]
        reason = reason.replace(".)", ")").rstrip(". ")
        raise UserError(
            f"That file cannot be used as audio: {reason}. Upload a WAV, FLAC, OGG or MP3 clip of "
            f"{MIN_UPLOAD_SECONDS:g}–{MAX_UPLOAD_SECONDS:g} s (at most {MAX_UPLOAD_BYTES // 2**20} MB)."
        ) from err


def info(user: str | None = None) -> dict:
    """What the header shows ``user``: the model, the auth mode, and (admins only) the database."""
    s = settings()
    admin = user is None or is_admin(user)
    return {
        "db": db_label() if admin else None,
        "model": model_name() if admin else model_label(model_name(), user or ""),
        "auth": "users" if s.users else "oauth" if s.oauth else "none",
    }
