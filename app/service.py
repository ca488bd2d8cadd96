"""The studio's service layer: the only module of ``app/`` that imports ``audio_thinker``.

Tabs call these functions with plain Python values and get plain values back; they never touch models,
tensors or training internals.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import lru_cache

from audio_thinker import synth
from audio_thinker.audio import AudioError, load_audio
from audio_thinker.inference import Answer, AudioLM
from audio_thinker.models import default_model_path
from audio_thinker.prompts import MODES

MAX_UPLOAD_SECONDS = 30.0
_lock = threading.Lock()


@lru_cache(maxsize=1)
def model(path: str | None = None) -> AudioLM:
    """The studio's model, loaded once (``--model`` / ``$AUDIO_THINKER_MODEL`` / the shipped tiny model)."""
    return AudioLM.from_pretrained(path or default_model_path())


def parse_choices(text: str | None) -> list[str] | None:
    """Choices typed one per line; blank lines ignored; None when there are none."""
    choices = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return choices or None


class UserError(ValueError):
    """A problem with what the user gave; its message is shown as is."""


def answer_stream(audio_path: str | None, question: str, choices_text: str, mode: str) -> Iterator[Answer]:
    """Validate the inputs and stream the model's answer in ``mode``."""
    if not audio_path:
        raise UserError("Please upload or record an audio clip first.")
    if mode not in MODES:
        raise UserError(f"Unknown mode {mode!r}.")
    lm = model()
    try:
        audio = load_audio(audio_path, sampling_rate=lm.sampling_rate, max_seconds=MAX_UPLOAD_SECONDS)
    except AudioError as err:
        raise UserError(f"That audio file cannot be used: {err}") from err
    try:
        with _lock:  # one generation at a time on a CPU box; the queue orders the rest
            yield from lm.stream(audio, question, parse_choices(choices_text), mode)
    except ValueError as err:
        raise UserError(str(err)) from err


def example_items(n_per_task: int = 1, seed: int = 2024) -> list[tuple[str, dict]]:
    """A few synth-aqa examples written to a temporary folder: (wav path, item)."""
    import tempfile
    from pathlib import Path

    out = Path(tempfile.mkdtemp(prefix="audio-thinker-examples-"))
    path = synth.make_split(out, n=n_per_task * len(synth.TASKS), seed=seed, split="example")
    import json

    items = json.loads(path.read_text())
    return [(str(out / it["audio_id"]), it) for it in items]
