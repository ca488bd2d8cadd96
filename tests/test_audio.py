"""Tests for audio_thinker.audio: hostile inputs are refused with AudioError, unusual valid files load."""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
import struct
import zlib

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audio_thinker import audio
from audio_thinker.audio import (
    DEFAULT_MAX_SECONDS,
    DEFAULT_MIN_SECONDS,
    DEFAULT_SAMPLING_RATE,
    MAX_FILE_BYTES,
    AudioError,
    audio_duration,
    content_hash,
    load_audio,
    write_wav,
)

HAS_MP3 = "MP3" in sf.available_formats()


# ----------------------------------------------------------------------------------------- helpers


def sine(seconds: float, sr: int, freq: float = 1000.0, amp: float = 0.5, channels: int = 1) -> np.ndarray:
    """A sine (one column per channel, each channel with a different amplitude when channels > 1)."""
    t = np.arange(int(round(seconds * sr))) / sr
    base = np.sin(2 * np.pi * freq * t)
    if channels == 1:
        return (amp * base).astype(np.float64)
    scales = np.linspace(1.0, 0.2, channels)
    return (amp * base[:, None] * scales[None, :]).astype(np.float64)


def encode(data: np.ndarray, sr: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    bio = io.BytesIO()
    sf.write(bio, data, sr, format=fmt, subtype=subtype)
    return bio.getvalue()


def write_file(tmp_path: pathlib.Path, name: str, content: bytes) -> pathlib.Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def wav_bytes(seconds: float = 1.0, sr: int = 16000, subtype: str = "PCM_16", **kw) -> bytes:
    return encode(sine(seconds, sr, **kw), sr, "WAV", subtype)


def peak_frequency(x: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1.0 / sr)[int(np.argmax(spectrum))])


def assert_valid(x: np.ndarray) -> None:
    assert isinstance(x, np.ndarray)
    assert x.dtype == np.float32
    assert x.ndim == 1
    assert x.size > 0
    assert np.isfinite(x).all()


def refuse(source, *keywords: str, name: str | None = None, **kwargs) -> AudioError:
    """Assert load_audio refuses ``source`` with a message naming the file and a reason keyword."""
    with pytest.raises(AudioError) as info:
        load_audio(source, **kwargs)
    assert type(info.value) is AudioError
    msg = str(info.value)
    if name is None:
        name = "bytes>" if isinstance(source, (bytes, bytearray, memoryview)) else pathlib.Path(source).name
    assert name in msg, msg
    if keywords:
        assert any(k.lower() in msg.lower() for k in keywords), msg
    return info.value


def png_bytes() -> bytes:
    """A tiny but valid 1x1 PNG."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
        + chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------------- module surface


def test_constants_and_error_type():
    assert DEFAULT_SAMPLING_RATE == 16000
    assert DEFAULT_MAX_SECONDS == 30.0
    assert DEFAULT_MIN_SECONDS == 0.05
    assert MAX_FILE_BYTES == 50 * 1024 * 1024
    assert issubclass(AudioError, ValueError)


def test_content_hash():
    assert content_hash(b"abc") == hashlib.sha256(b"abc").hexdigest()
    assert content_hash(bytearray(b"abc")) == content_hash(memoryview(b"abc"))
    assert len(content_hash(b"")) == 64
    with pytest.raises(TypeError):
        content_hash("abc")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------- hostile inputs


def test_missing_file(tmp_path):
    refuse(tmp_path / "nope.wav", "not found")
    refuse(str(tmp_path / "nope.wav"), "not found")


def test_directory(tmp_path):
    d = tmp_path / "clips.wav"
    d.mkdir()
    refuse(d, "directory")


def test_empty_file(tmp_path):
    refuse(write_file(tmp_path, "empty.wav", b""), "empty")


@pytest.mark.parametrize("empty", [b"", bytearray(), memoryview(b"")])
def test_empty_bytes(empty):
    refuse(empty, "empty", name="<0 bytes>")


def test_truncated_wav_half(tmp_path):
    data = wav_bytes()
    half = data[: len(data) // 2]
    refuse(write_file(tmp_path, "half.wav", half), "truncated")
    refuse(half, "truncated", name=f"<{len(half)} bytes>")


@pytest.mark.parametrize("cut", [1, 4, 8, 12, 20, 30, 36, 43, 44, 46])
def test_truncated_inside_header(tmp_path, cut):
    data = wav_bytes()[:cut]
    refuse(write_file(tmp_path, f"cut{cut}.wav", data), "truncated", "corrupt", "recognised", "no samples")
    refuse(data, "truncated", "corrupt", "recognised", "no samples")


LOSSLESS_TRUNCATABLE = [
    ("AIFF", "PCM_16", "aiff"),
    ("AU", "PCM_16", "au"),
    ("W64", "PCM_16", "w64"),
    ("RF64", "PCM_16", "rf64"),
    ("WAVEX", "PCM_24", "wav"),
    ("WAV", "FLOAT", "wav"),
    ("FLAC", "PCM_16", "flac"),
    ("OGG", "VORBIS", "ogg"),
    ("CAF", "PCM_16", "caf"),
]


@pytest.mark.parametrize(("fmt", "subtype", "ext"), LOSSLESS_TRUNCATABLE)
def test_truncated_other_formats(tmp_path, fmt, subtype, ext):
    data = encode(sine(1.0, 16000), 16000, fmt, subtype)
    half = data[: len(data) // 2]
    refuse(write_file(tmp_path, f"half.{ext}", half), "truncated", "corrupt")
    refuse(half, "truncated", "corrupt")


@pytest.mark.skipif(not HAS_MP3, reason="libsndfile built without MP3")
def test_truncated_mp3(tmp_path):
    data = encode(sine(2.0, 16000), 16000, "MP3", "MPEG_LAYER_III")
    half = data[: len(data) // 2]
    refuse(write_file(tmp_path, "half.mp3", half), "truncated", "corrupt")


def test_garbled_flac_data(tmp_path):
    data = bytearray(encode(sine(1.0, 16000), 16000, "FLAC", "PCM_16"))
    rng = np.random.default_rng(1)
    start = len(data) // 3
    data[start : start + 2000] = rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()
    refuse(write_file(tmp_path, "garbled.flac", bytes(data)), "corrupt", "truncated")


def test_text_file_named_wav(tmp_path):
    refuse(write_file(tmp_path, "notes.wav", b"hello, this is not audio\n" * 20), "not a recognised audio")


def test_png_bytes(tmp_path):
    png = png_bytes()
    refuse(png, "not a recognised audio")
    refuse(write_file(tmp_path, "picture.wav", png), "not a recognised audio")


def test_random_bytes(tmp_path):
    junk = np.random.default_rng(0).bytes(4096)
    refuse(junk, "not a recognised audio", "corrupt")
    refuse(write_file(tmp_path, "noise.mp3", junk), "not a recognised audio", "corrupt")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
def test_non_finite_float_wav(tmp_path, bad, subtype):
    x = sine(1.0, 16000)
    x[1234] = bad
    data = encode(x, 16000, "WAV", subtype)
    refuse(write_file(tmp_path, "nan.wav", data), "non-finite")
    refuse(data, "non-finite")


def test_non_finite_in_one_channel_of_many(tmp_path):
    x = sine(1.0, 16000, channels=4)
    x[-5, 3] = np.nan
    refuse(write_file(tmp_path, "multi_nan.wav", encode(x, 16000, "WAV", "FLOAT")), "non-finite")


def test_float64_overflowing_float32_is_refused(tmp_path):
    x = sine(1.0, 16000)
    x[100] = 1e300
    refuse(write_file(tmp_path, "huge.wav", encode(x, 16000, "WAV", "DOUBLE")), "non-finite")


def test_too_long_refused_from_header_without_decoding(tmp_path, monkeypatch):
    path = write_file(tmp_path, "long.wav", encode(np.zeros(40 * 8000, np.int16), 8000, "WAV", "PCM_16"))
    calls = []
    real_read = sf.SoundFile.read

    def spy(self, *args, **kwargs):
        calls.append(args)
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    err = refuse(path, "limit", max_seconds=30)
    assert "40.0 s" in str(err) and "30.0 s" in str(err)
    assert calls == []  # refused on the header alone
    refuse(path.read_bytes(), "limit", max_seconds=30)
    assert calls == []


def test_too_long_with_unknown_header_length_stops_early(tmp_path, monkeypatch):
    """When the header does not state the length, decoding stops as soon as the limit is passed."""
    sr = 8000
    path = write_file(tmp_path, "streamed.wav", encode(np.zeros(40 * sr, np.int16), sr, "WAV", "PCM_16"))
    frames_read = []
    real_read = sf.SoundFile.read

    def counting_read(self, *args, **kwargs):
        out = real_read(self, *args, **kwargs)
        frames_read.append(len(out))
        return out

    monkeypatch.setattr(sf.SoundFile, "frames", property(lambda self: 0))
    monkeypatch.setattr(sf.SoundFile, "read", counting_read)
    refuse(path, "limit", max_seconds=30)
    assert 30 * sr < sum(frames_read) <= 30 * sr + 1 < 40 * sr

    # The same file within the limit decodes fully even though the header length is "unknown".
    frames_read.clear()
    x = load_audio(path, max_seconds=45, sampling_rate=sr)
    assert x.shape == (40 * sr,)


def test_header_claiming_huge_length_is_refused_without_decoding(tmp_path, monkeypatch):
    path = write_file(tmp_path, "liar.wav", wav_bytes(0.5))
    monkeypatch.setattr(sf.SoundFile, "frames", property(lambda self: 10**12))
    refuse(path, "limit")


def test_streaming_wav_with_placeholder_sizes_loads(tmp_path):
    """Writers streaming to a pipe put 0xFFFFFFFF in the RIFF/data sizes; that is not truncation."""
    data = bytearray(wav_bytes(1.0))
    pos = data.find(b"data")
    data[4:8] = struct.pack("<I", 0xFFFFFFFF)
    data[pos + 4 : pos + 8] = struct.pack("<I", 0xFFFFFFFF)
    x = load_audio(write_file(tmp_path, "stream.wav", bytes(data)))
    assert_valid(x)
    assert x.shape == (16000,)


def test_too_short(tmp_path):
    path = write_file(tmp_path, "blip.wav", wav_bytes(0.01))
    refuse(path, "too short")
    assert load_audio(path, min_seconds=0.005).shape == (160,)


def test_zero_frames(tmp_path):
    data = encode(np.zeros(0, np.float32), 16000, "WAV", "PCM_16")
    refuse(write_file(tmp_path, "silent.wav", data), "no samples")
    refuse(data, "no samples")
    refuse(
        write_file(tmp_path, "silent.flac", encode(np.zeros(0), 16000, "FLAC", "PCM_16")),
        "no samples",
        "empty",
    )


def test_over_max_bytes(tmp_path):
    data = wav_bytes(1.0)
    path = write_file(tmp_path, "big.wav", data)
    refuse(path, "limit", max_bytes=1000)
    refuse(data, "limit", max_bytes=1000)
    refuse(bytearray(data), "limit", max_bytes=1000)
    refuse(memoryview(data), "limit", max_bytes=1000)
    assert load_audio(path, max_bytes=len(data)).shape == (16000,)


def test_default_max_bytes_refuses_oversized_bytes_before_decoding(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("must not open")

    monkeypatch.setattr(sf, "SoundFile", boom)
    refuse(b"\0" * (MAX_FILE_BYTES + 1), "limit")


def test_too_many_channels(tmp_path):
    data = encode(np.zeros((1600, 65), np.float32), 16000, "WAV", "PCM_16")
    refuse(write_file(tmp_path, "wide.wav", data), "channels")


@pytest.mark.parametrize("rate", [1, 2_000_000])
def test_absurd_header_sample_rate(tmp_path, rate):
    data = bytearray(wav_bytes(0.5))
    data[24:28] = struct.pack("<I", rate)  # fmt chunk sample rate of a canonical 44-byte header
    refuse(write_file(tmp_path, "rate.wav", bytes(data)), "sample rate", "corrupt")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sampling_rate": 0},
        {"sampling_rate": -16000},
        {"sampling_rate": 1.5},
        {"sampling_rate": "16000"},
        {"sampling_rate": True},
        {"sampling_rate": 10**9},
        {"max_seconds": 1.0, "min_seconds": 1.0},
        {"max_seconds": 0.01},
        {"max_seconds": float("nan")},
        {"max_seconds": float("inf")},
        {"min_seconds": -1.0},
        {"max_bytes": 0},
        {"max_bytes": 1.5},
    ],
)
def test_bad_arguments(tmp_path, kwargs):
    path = write_file(tmp_path, "ok.wav", wav_bytes(0.5))
    refuse(path, "invalid", **kwargs)
    refuse(path.read_bytes(), "invalid", **kwargs)


def test_special_files_are_refused_without_blocking(tmp_path):
    refuse("/dev/null", "regular file")
    if hasattr(os, "mkfifo"):
        fifo = tmp_path / "pipe.wav"
        os.mkfifo(fifo)
        refuse(fifo, "regular file")  # opening a FIFO for reading would block forever


@pytest.mark.parametrize("source", [None, 3, 1.5, ["a.wav"], object()])
def test_bad_source_type(source):
    with pytest.raises(AudioError, match="path or bytes"):
        load_audio(source)  # type: ignore[arg-type]


def test_wrapped_unexpected_errors(tmp_path, monkeypatch):
    path = write_file(tmp_path, "ok.wav", wav_bytes(0.5))

    def explode(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(audio.soxr, "resample", explode)
    err = refuse(path, "resampling", sampling_rate=8000)
    assert isinstance(err.__cause__, MemoryError)

    def broken_read(self, *args, **kwargs):
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(sf.SoundFile, "read", broken_read)
    err = refuse(path, "corrupt")
    assert isinstance(err.__cause__, RuntimeError)


# --------------------------------------------------------------------------- valid unusual files


def test_eight_channels_mixdown_is_channel_mean(tmp_path):
    x = sine(1.0, 16000, channels=8)
    x[:, 5] = -x[:, 5]  # make the mean differ from any single channel
    data = encode(x, 16000, "WAV", "PCM_16")
    expected = sf.read(io.BytesIO(data), dtype="float32")[0].mean(axis=1)
    for source in (write_file(tmp_path, "eight.wav", data), data):
        y = load_audio(source)
        assert_valid(y)
        assert y.shape == (16000,)
        np.testing.assert_allclose(y, expected, atol=1e-6)


def test_96khz_is_resampled_and_keeps_frequency(tmp_path):
    data = encode(sine(1.5, 96000), 96000, "WAV", "PCM_24")
    for source in (write_file(tmp_path, "hires.wav", data), data):
        y = load_audio(source)
        assert_valid(y)
        assert abs(len(y) - 1.5 * 16000) <= 2
        assert abs(peak_frequency(y, 16000) - 1000.0) <= 2.0
        assert 0.4 <= np.abs(y[1000:-1000]).max() <= 0.6


def test_44k_stereo_to_8k(tmp_path):
    data = encode(sine(1.0, 44100, freq=440.0, channels=2), 44100, "WAV", "PCM_16")
    y = load_audio(write_file(tmp_path, "stereo.wav", data), sampling_rate=8000)
    assert_valid(y)
    assert abs(len(y) - 8000) <= 2
    assert abs(peak_frequency(y, 8000) - 440.0) <= 2.0


LOSSLESS = [
    ("WAV", "PCM_16", "wav"),
    ("WAV", "PCM_24", "wav"),
    ("WAV", "PCM_32", "wav"),
    ("WAV", "PCM_U8", "wav"),
    ("WAV", "FLOAT", "wav"),
    ("WAV", "DOUBLE", "wav"),
    ("WAVEX", "PCM_16", "wav"),
    ("FLAC", "PCM_16", "flac"),
    ("FLAC", "PCM_24", "flac"),
    ("AIFF", "PCM_16", "aiff"),
    ("AIFF", "PCM_24", "aif"),
    ("AU", "PCM_16", "au"),
    ("CAF", "PCM_16", "caf"),
    ("W64", "PCM_16", "w64"),
    ("RF64", "PCM_16", "rf64"),
]


@pytest.mark.parametrize(("fmt", "subtype", "ext"), LOSSLESS)
@pytest.mark.parametrize("sr", [16000, 22050])
def test_lossless_formats_roundtrip(tmp_path, fmt, subtype, ext, sr):
    x = sine(1.0, sr)
    data = encode(x, sr, fmt, subtype)
    path = write_file(tmp_path, f"clip.{ext}", data)
    for source in (path, str(path), data, bytearray(data), memoryview(data)):
        y = load_audio(source)
        assert_valid(y)
        assert abs(len(y) - 16000) <= 2
        assert 0.4 <= np.abs(y).max() <= 0.6
        assert abs(peak_frequency(y, 16000) - 1000.0) <= 2.0
        if sr == 16000:
            tol = 1e-2 if subtype == "PCM_U8" else 1e-4
            np.testing.assert_allclose(y, x, atol=tol)


LOSSY = [("OGG", "VORBIS", "ogg"), ("OGG", "OPUS", "opus"), ("MP3", "MPEG_LAYER_III", "mp3")]


@pytest.mark.parametrize(("fmt", "subtype", "ext"), LOSSY)
def test_lossy_formats(tmp_path, fmt, subtype, ext):
    if fmt not in sf.available_formats() or not sf.check_format(fmt, subtype):
        pytest.skip(f"{fmt}/{subtype} not supported by this libsndfile")
    sr = 48000 if subtype == "OPUS" else 16000
    data = encode(sine(1.0, sr), sr, fmt, subtype)
    for source in (write_file(tmp_path, f"clip.{ext}", data), data):
        y = load_audio(source)
        assert_valid(y)
        assert abs(len(y) - 16000) <= 0.05 * 16000
        assert 0.3 <= np.abs(y).max() <= 0.7
        assert abs(peak_frequency(y, 16000) - 1000.0) <= 5.0


def test_exactly_max_seconds_is_accepted(tmp_path):
    path = write_file(tmp_path, "edge.wav", encode(np.zeros(2 * 8000, np.int16), 8000, "WAV", "PCM_16"))
    assert load_audio(path, max_seconds=2.0, sampling_rate=8000).shape == (16000,)
    refuse(path, "limit", max_seconds=1.999)


def test_pathlike_and_float_rate(tmp_path):
    path = write_file(tmp_path, "ok.wav", wav_bytes(0.5))
    assert load_audio(pathlib.Path(path), sampling_rate=16000.0).shape == (8000,)
    assert load_audio(path, sampling_rate=np.int64(8000)).shape == (4000,)


# ------------------------------------------------------------------------ audio_duration / write_wav


def test_audio_duration(tmp_path, monkeypatch):
    data = encode(sine(2.5, 44100, channels=2), 44100, "FLAC", "PCM_16")
    path = write_file(tmp_path, "dur.flac", data)
    assert audio_duration(path) == pytest.approx(2.5)
    assert audio_duration(data) == pytest.approx(2.5)
    for bad, keyword in [
        (tmp_path / "missing.wav", "not found"),
        (write_file(tmp_path, "text.wav", b"plain text"), "recognised"),
        (write_file(tmp_path, "zero.wav", encode(np.zeros(0), 16000)), "no samples"),
    ]:
        with pytest.raises(AudioError, match=keyword) as info:
            audio_duration(bad)
        assert bad.name in str(info.value)
    with pytest.raises(AudioError, match="bytes"):
        audio_duration(b"")
    # Header-only: no samples are decoded.
    monkeypatch.setattr(sf.SoundFile, "read", lambda *a, **k: pytest.fail("decoded samples"))
    assert audio_duration(path) == pytest.approx(2.5)


def test_write_wav_roundtrip(tmp_path):
    path = tmp_path / "out.wav"
    x = sine(1.0, 16000).astype(np.float32)
    write_wav(path, x)
    info = sf.info(str(path))
    assert (info.format, info.subtype, info.channels, info.samplerate) == ("WAV", "PCM_16", 1, 16000)
    np.testing.assert_allclose(load_audio(path), x, atol=1e-4)

    write_wav(str(tmp_path / "loud.wav"), np.array([2.0, -3.0] * 1000), sampling_rate=8000)
    y = load_audio(tmp_path / "loud.wav", sampling_rate=8000, min_seconds=0.0)
    assert y.max() <= 1.0 and y.min() >= -1.0 and y.max() > 0.99


@pytest.mark.parametrize(
    ("audio_in", "rate", "keyword"),
    [
        (np.zeros((10, 2)), 16000, "1-D"),
        (np.array([0.0, np.nan]), 16000, "non-finite"),
        (np.array(["a"]), 16000, "real"),
        (np.zeros(10), 0, "sampling_rate"),
    ],
)
def test_write_wav_refuses_bad_input(tmp_path, audio_in, rate, keyword):
    with pytest.raises(AudioError, match=keyword):
        write_wav(tmp_path / "bad.wav", audio_in, rate)


def test_write_wav_unwritable_path(tmp_path):
    with pytest.raises(AudioError, match="missing_dir"):
        write_wav(tmp_path / "missing_dir" / "x.wav", np.zeros(100))


# ------------------------------------------------------------------------------------ properties


def _check_outcome(source) -> None:
    try:
        y = load_audio(source)
    except AudioError as err:
        assert str(err)
        return
    assert_valid(y)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_only_audio_error_or_valid(data):
    _check_outcome(data)


_SMALL_WAV = wav_bytes(0.2)
_SMALL_FLAC = encode(sine(0.2, 16000, channels=2), 16000, "FLAC", "PCM_16")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([_SMALL_WAV, _SMALL_FLAC]),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, 6000),
)
def test_mutated_headers_only_audio_error_or_valid(base, edits, cut):
    """Valid files with corrupted header bytes and arbitrary truncation never escape AudioError."""
    data = bytearray(base)
    for pos, value in edits:
        if pos < len(data):
            data[pos] = value
    _check_outcome(bytes(data[: max(1, len(data) - cut)]))
