"""Which clips the studio's upload check flags as unlike the training clips (``app.card.unlike_synth``, the
flags docs/studio.md lists), counted on made-up clips of each kind, and the synth clips' background level.

    OMP_NUM_THREADS=1 python benchmarks/audio_flags.py

Kinds: synth-aqa clips (90 of the test split, seed 777, 10 per task) and 45 of the shifted split (seed 778),
which should not be flagged; speech-like clips (a voiced pulse train through three formants, gated at
syllable rate), four-voice babble (four of them summed), loud white and pink noise, a two-tone phone ring
of 4 to 8 s, a three-note chord, quiet brown (rumble) noise, and synth clips through a low- and a
high-bitrate MP3. The speech, noise, ring and MP3 generators are the ones ``tests/test_studio_honest.py``
uses. Prints ``kind: flagged/total`` per kind and the synth clips' background (their quietest 10% of
frames) in dBFS.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

SR = 16000


def _mp3(wave: np.ndarray, level: float) -> np.ndarray:
    """``wave`` through an MP3 at ``level`` (soundfile's compression level: 0 best, 1 lowest bitrate)."""
    import soundfile as sf

    from audio_thinker.audio import load_audio

    buf = io.BytesIO()
    sf.write(buf, wave, SR, format="MP3", compression_level=level)
    return load_audio(buf.getvalue())


def main() -> int:
    from test_studio_honest import noise_clip, phone_ring, speech_like

    from app.card import unlike_synth
    from audio_thinker import synth

    tasks = list(synth.TASKS)
    synth_clips = [synth.generate_item(tasks[k % len(tasks)], 777, k, "test")[1] for k in range(90)]
    shifted = [synth.generate_item(tasks[k % len(tasks)], 778, k, "test", shift=True)[1] for k in range(45)]
    rng = np.random.default_rng(0)
    t = np.arange(3 * SR) / SR

    def babble() -> np.ndarray:
        y = sum(speech_like(rng) for _ in range(4))
        return (y / np.abs(y).max() * 0.5).astype(np.float32)

    def chord(root: float) -> np.ndarray:
        return (0.1 * sum(np.sin(2 * np.pi * root * r * t) for r in (1.0, 1.26, 1.5))).astype(np.float32)

    def brown() -> np.ndarray:
        w = np.cumsum(rng.standard_normal(3 * SR))
        w -= w.mean()
        return (w / np.abs(w).max() * 0.02).astype(np.float32)

    kinds = {
        "synth-aqa (test split)": synth_clips,
        "synth-aqa (shifted split)": shifted,
        "speech-like": [speech_like(rng) for _ in range(20)],
        "four-voice babble": [babble() for _ in range(10)],
        "loud white noise": [noise_clip(rng, "white") for _ in range(10)],
        "loud pink noise": [noise_clip(rng, "pink") for _ in range(10)],
        "two-tone phone ring (4-8 s)": [phone_ring(s) for s in (4.0, 5.0, 6.0, 7.0, 8.0)],
        "three-note chord": [chord(f) for f in (220.0, 262.0, 330.0)],
        "quiet brown noise": [brown() for _ in range(5)],
        "synth clips, low-bitrate MP3": [_mp3(w, 0.99) for w in synth_clips[:30]],
        "synth clips, high-bitrate MP3": [_mp3(w, 0.0) for w in synth_clips[:30]],
    }
    for name, clips in kinds.items():
        checks = [unlike_synth(w, SR, 3.0) for w in clips]
        print(f"{name}: {sum(bool(c.flags) for c in checks)}/{len(checks)} flagged")
    for name, clips in (("test split", synth_clips), ("shifted split", shifted)):
        floors = [unlike_synth(w, SR, 3.0).floor_dbfs for w in clips]
        print(f"synth-aqa {name} background: {min(floors):.1f} to {max(floors):.1f} dBFS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
