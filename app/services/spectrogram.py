"""Seeing the sound: a spectrogram of a clip with a time axis in seconds (Rate and Ask & compare), and
the times a reasoning text names ("Beep 2 at 0.6 s"), so that a rater can check a claim against the
clip and play it from there."""

from __future__ import annotations

import re
from typing import Any

from audio_thinker.audio import AudioError, load_audio

SAMPLING_RATE = 16_000
MAX_SECONDS = 30.0
_TIME_RE = re.compile(r"(?<![\w.])(\d{1,3}(?:\.\d{1,3})?)\s?(?:s|sec|secs|seconds?)\b")


def figure(path: str | None, *, title: str | None = None) -> Any | None:
    """A matplotlib figure: the clip's spectrogram (0–8 kHz, dB) over time in seconds, with ticks every
    0.25 s on short clips; None when there is no clip or it cannot be read."""
    if not path:
        return None
    try:
        wave = load_audio(path, sampling_rate=SAMPLING_RATE, max_seconds=MAX_SECONDS)
    except (AudioError, OSError, ValueError):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MultipleLocator

    wave = np.asarray(wave, dtype=np.float32).reshape(-1)
    seconds = len(wave) / SAMPLING_RATE
    fig, ax = plt.subplots(figsize=(7.0, 2.4))
    ax.specgram(wave + 1e-9, NFFT=512, Fs=SAMPLING_RATE, noverlap=448, cmap="magma", scale="dB",
                vmin=-120, xextent=(0.0, seconds))  # fmt: skip
    ax.set_xlim(0.0, seconds)
    ax.set_ylim(0, SAMPLING_RATE / 2)
    ax.yaxis.set_major_formatter(lambda v, _pos: f"{v / 1000:g}")
    ax.set_ylabel("frequency (kHz)")
    ax.set_xlabel("time (s)")
    step = 0.25 if seconds <= 5 else 1.0 if seconds <= 15 else 2.0
    ax.xaxis.set_major_locator(MultipleLocator(step))
    ax.grid(axis="x", alpha=0.25, color="white")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    plt.close(fig)
    return fig


def named_times(text: str) -> list[tuple[int, int, float]]:
    """The times a text names, as ``(start, end, seconds)`` character spans ("at 0.6 s", "1.25s",
    "2 seconds")."""
    return [(m.start(), m.end(), float(m.group(1))) for m in _TIME_RE.finditer(text or "")]
