"""What the loaded model was trained to hear, and a cheap check of how far an uploaded clip is from it.

Plain numpy on a decoded waveform (``app.services.model`` decodes and passes it in); nothing here loads a model.

The shipped tiny model heard only synth-aqa clips: 3 s of faint white hiss (-50 to -35 dBFS) with a few
isolated events, each a pure tone, a chirp (one frequency at a time) or a burst of white noise.
:func:`unlike_synth` looks at the frames that stand clearly above the clip's own noise floor and asks
whether each one is *tone-like* (most of its energy within a few bins of its strongest peak) or
*noise-like* (a flat spectrum); speech, music and everyday sounds have frames that are neither (several
harmonics, formants). It also notices a band-limited floor (the hiss above ~5 kHz gone, as after a phone line
or a low-bitrate MP3) and content beyond the model's clip window. Measured in
``tests/test_studio_honest.py::test_audio_check_separates_synth_from_speech_noise_and_mp3``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME = 512  # 32 ms at 16 kHz
HOP = 256
ACTIVE_DB = 12.0  # a frame is "active" this far above the clip's noise floor (its 10th-percentile energy)
PEAK_BINS = 3  # a tone's energy lies within ± this many bins of its peak (Hann window, 31 Hz bins)
TONE_SHARE = 0.55  # ... for at least this share of the frame's energy
FLAT = 0.35  # spectral flatness of white noise bursts is ~0.5; speech, music frames ~0.01-0.1
OTHER_SHARE = 0.25  # flag when more than this share of the active frames is neither
HIGH_BAND_DB = -10.0  # floor energy per bin above 5 kHz vs 1-4 kHz; white hiss ~0 dB (measured -4.2 at worst)
LOUD_FLOOR_DBFS = -24.0  # the training clips' hiss is -50 to -35 dBFS (-34 to -28 in the shifted split)


@dataclass
class Check:
    """The result: ``flags`` are short sentences for the visitor (empty: looks like what the model heard)."""

    seconds: float
    floor_dbfs: float
    other_share: float
    high_band_db: float | None
    flags: list[str]


def _frames(wave: np.ndarray) -> np.ndarray:
    if len(wave) < FRAME:
        wave = np.pad(wave, (0, FRAME - len(wave)))
    n = 1 + (len(wave) - FRAME) // HOP
    idx = np.arange(FRAME)[None, :] + HOP * np.arange(n)[:, None]
    return wave[idx] * np.hanning(FRAME)[None, :]


def unlike_synth(wave: np.ndarray, sampling_rate: int, window_s: float | None) -> Check:
    """Check a mono float waveform against the synth-aqa training clips (see the module docstring)."""
    wave = np.asarray(wave, dtype=np.float64)
    seconds = len(wave) / sampling_rate
    flags: list[str] = []
    if window_s and seconds > window_s + 0.05:
        flags.append(
            f"it is {seconds:.1f} s long and the model hears only its first {window_s:g} s; the rest is ignored"
        )
    power = np.abs(np.fft.rfft(_frames(wave), axis=1)) ** 2 + 1e-20
    energy = power.sum(1)
    db = 10 * np.log10(energy)
    floor = np.percentile(db, 10)
    frame_rms = np.sqrt(np.mean(_frames(wave) ** 2, axis=1) / np.mean(np.hanning(FRAME) ** 2) + 1e-20)
    floor_dbfs = float(np.percentile(20 * np.log10(frame_rms), 10))
    steady = float(np.percentile(20 * np.log10(frame_rms), 90)) - floor_dbfs < 6.0
    if floor_dbfs > LOUD_FLOOR_DBFS or (steady and floor_dbfs > LOUD_FLOOR_DBFS - 3):
        flags.append(
            f"a loud continuous background ({floor_dbfs:.0f} dBFS at its quietest); the training clips had "
            "faint hiss between isolated sounds"
        )
    active = db > floor + ACTIVE_DB
    other_share = 0.0
    if active.any():
        p = power[active]
        peak = p.argmax(1)
        bins = np.arange(p.shape[1])[None, :]
        near = np.abs(bins - peak[:, None]) <= PEAK_BINS
        tone = (p * near).sum(1) / p.sum(1) >= TONE_SHARE
        flatness = np.exp(np.log(p).mean(1)) / p.mean(1)
        noise = flatness >= FLAT
        other_share = float((~tone & ~noise).mean())
    if other_share > OTHER_SHARE:
        flags.append(
            f"{other_share:.0%} of its sounds are neither pure tones, chirps nor noise bursts "
            "(speech, music or everyday sounds?), which the model never heard"
        )
    high_band_db = None
    if sampling_rate >= 12000 and (~active).sum() >= 5:
        freqs = np.fft.rfftfreq(FRAME, 1 / sampling_rate)
        quiet = power[~active]
        hi = quiet[:, (freqs >= 5000) & (freqs <= 0.45 * sampling_rate)].mean()
        mid = quiet[:, (freqs >= 1000) & (freqs <= 4000)].mean()
        high_band_db = float(10 * np.log10(hi / mid))
        if high_band_db < HIGH_BAND_DB:
            flags.append(
                "its background has almost nothing above 5 kHz (a phone line or a low-bitrate MP3?), "
                "unlike the full-band hiss of the training clips"
            )
    return Check(seconds, floor_dbfs, other_share, high_band_db, flags)
