"""Defensive audio loading: decode, validate, mix down and resample untrusted audio files.

Every failure (missing file, non-audio bytes, truncated or corrupt data, clips that are too long or too
short, NaN samples, bad arguments) is reported as :class:`AudioError`, whose message names the file and
the reason. Memory stays bounded for any input: the file size is checked before decoding, the header's
channel count and sample rate are sanity-checked, and the decoded length is capped by ``max_seconds``
(checked on the header first, then enforced block by block while decoding).
"""

from __future__ import annotations

import hashlib
import io
import math
import numbers
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import numpy as np
import soundfile as sf
import soxr

__all__ = [
    "DEFAULT_MAX_SECONDS",
    "DEFAULT_MIN_SECONDS",
    "DEFAULT_SAMPLING_RATE",
    "MAX_CHANNELS",
    "MAX_FILE_BYTES",
    "MAX_SOURCE_SAMPLING_RATE",
    "MIN_SOURCE_SAMPLING_RATE",
    "AudioError",
    "AudioSource",
    "audio_duration",
    "content_hash",
    "load_audio",
    "write_wav",
]

DEFAULT_SAMPLING_RATE = 16000
"""Sampling rate (Hz) that :func:`load_audio` resamples to by default."""
DEFAULT_MAX_SECONDS = 30.0
"""Longest clip (seconds) accepted by default."""
DEFAULT_MIN_SECONDS = 0.05
"""Shortest clip (seconds) accepted by default."""
MAX_FILE_BYTES = 50 * 1024 * 1024
"""Largest file (bytes) accepted by default; bigger inputs are refused before decoding."""
MAX_CHANNELS = 64
"""Files declaring more channels than this are refused before any sample is read."""
MIN_SOURCE_SAMPLING_RATE = 1000
"""Lowest sample rate (Hz) a file header may declare."""
MAX_SOURCE_SAMPLING_RATE = 768_000
"""Highest sample rate (Hz) a file header may declare (also the highest target rate)."""

AudioSource = str | os.PathLike | bytes | bytearray | memoryview
"""A path to an audio file, or the raw bytes of one."""

_BLOCK_SAMPLES = 1 << 20  # samples (frames * channels) decoded per block
_UNKNOWN_FRAMES = 1 << 62  # header frame counts at or above this mean "unknown length" (SF_COUNT_MAX)
_STREAMING_SIZE = 0x7FFFFFFF  # chunk sizes at or above this are "unknown length" placeholders
# libsndfile logs (SoundFile.extra_info) lines like "data : 32000 (should be 15978)" when a chunk
# claims more bytes than the file holds; it then silently clamps the frame count to what is present.
_CHUNK_SHORT_RE = re.compile(
    r"^\s*(data|SSND|Data Size|riff)\s*:\s*(\d+)\s*\(should be\s*(\d+)\)", re.MULTILINE
)
_FRAMES_MISMATCH_RE = re.compile(
    r"Calculated frame count (\d+) does not match value from '\w+' chunk of (\d+)"
)


class AudioError(ValueError):
    """An audio input was refused; the message names the file and the reason."""


class _QuietBytesIO(io.BytesIO):
    """BytesIO whose invalid seeks fail softly (position unchanged) instead of raising.

    soundfile calls ``seek`` from a C callback; corrupt headers make libsndfile ask for negative or
    enormous offsets, and an exception there would only be printed as "Exception ignored".
    """

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        try:
            return super().seek(offset, whence)
        except (ValueError, OverflowError):
            return self.tell()


def content_hash(data: bytes) -> str:
    """Return the SHA-256 hex digest of ``data`` (bytes-like)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"content_hash expects bytes, got {type(data).__name__}")
    return hashlib.sha256(data).hexdigest()


def _secs(value: float) -> str:
    """Format a duration for messages: ``45.2``, ``30.0``, ``0.05``."""
    return f"{value:.1f}" if value >= 1 or value == 0 else f"{value:.2g}"


def _size(n_bytes: int) -> str:
    """Format a byte count for messages."""
    if n_bytes >= 1024 * 1024:
        return f"{n_bytes / (1024 * 1024):.1f} MiB"
    return f"{n_bytes} bytes"


def _describe(source: object) -> str:
    """Human-readable name of a source for error messages."""
    if isinstance(source, memoryview):
        return f"<{source.nbytes} bytes>"
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes>"
    if isinstance(source, (str, os.PathLike)):
        try:
            return os.fsdecode(os.fspath(source))
        except Exception:  # a broken PathLike still needs a name
            return repr(source)
    return f"<{type(source).__name__}>"


def _lib_reason(err: BaseException) -> str:
    """Short reason text for an exception, without libsndfile's noisy object reprs."""
    if isinstance(err, sf.LibsndfileError):
        return str(err.error_string).strip() or "libsndfile error"
    text = re.sub(r"^Error opening .*?: ", "", str(err)).strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


@contextmanager
def _open(source: AudioSource, name: str, max_bytes: int | None) -> Iterator[sf.SoundFile]:
    """Validate ``source`` and open it as a :class:`soundfile.SoundFile` (read-only)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        size = source.nbytes if isinstance(source, memoryview) else len(source)
        if size == 0:
            raise AudioError(f"{name}: input is empty (no bytes)")
        if max_bytes is not None and size > max_bytes:
            raise AudioError(f"{name}: input is {_size(size)}; the limit is {_size(max_bytes)}")
        handle: object = _QuietBytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        path = os.fsdecode(os.fspath(source))
        try:
            info = os.stat(path)
        except FileNotFoundError as err:
            raise AudioError(f"{name}: file not found") from err
        except OSError as err:
            raise AudioError(f"{name}: cannot access file ({err.strerror or err})") from err
        if stat.S_ISDIR(info.st_mode):
            raise AudioError(f"{name}: is a directory, not an audio file")
        if not stat.S_ISREG(info.st_mode):
            raise AudioError(f"{name}: not a regular file")
        if info.st_size == 0:
            raise AudioError(f"{name}: file is empty (0 bytes)")
        if max_bytes is not None and info.st_size > max_bytes:
            raise AudioError(f"{name}: file is {_size(info.st_size)}; the limit is {_size(max_bytes)}")
        handle = path
    else:
        raise AudioError(f"{name}: source must be a path or bytes, not {type(source).__name__}")
    try:
        snd = sf.SoundFile(handle)
    except Exception as err:  # libsndfile raises many types; all mean "unreadable"
        raise AudioError(
            f"{name}: not a recognised audio file or the file is corrupt ({_lib_reason(err)})"
        ) from err
    try:
        yield snd
    finally:
        with suppress(Exception):  # closing must never mask the real error
            snd.close()


def _check_header(snd: sf.SoundFile, name: str) -> None:
    """Refuse headers with absurd channel counts / sample rates or signs of truncation."""
    if not 1 <= snd.channels <= MAX_CHANNELS:
        raise AudioError(f"{name}: header declares {snd.channels} channels; the limit is {MAX_CHANNELS}")
    if not MIN_SOURCE_SAMPLING_RATE <= snd.samplerate <= MAX_SOURCE_SAMPLING_RATE:
        raise AudioError(
            f"{name}: header declares an unsupported sample rate of {snd.samplerate} Hz "
            f"(allowed {MIN_SOURCE_SAMPLING_RATE}-{MAX_SOURCE_SAMPLING_RATE} Hz)"
        )
    try:
        log = snd.extra_info
    except Exception:  # the log is diagnostics only
        log = ""
    for match in _CHUNK_SHORT_RE.finditer(log):
        declared, present = int(match.group(2)), int(match.group(3))
        if declared < _STREAMING_SIZE and declared - present > 1:
            raise AudioError(
                f"{name}: file is truncated or corrupt ({match.group(1).strip()} chunk declares "
                f"{declared} bytes but only {present} are present)"
            )
    for match in _FRAMES_MISMATCH_RE.finditer(log):
        present, declared = int(match.group(1)), int(match.group(2))
        if present < declared:
            raise AudioError(
                f"{name}: file is truncated or corrupt (header declares {declared} frames but only "
                f"{present} are present)"
            )


def _header_frames(snd: sf.SoundFile) -> int | None:
    """Frame count from the header, or ``None`` when the format does not state it reliably."""
    frames = int(snd.frames)
    return frames if 0 < frames < _UNKNOWN_FRAMES else None


def _check_args(
    name: str, sampling_rate: object, max_seconds: object, min_seconds: object, max_bytes: object
) -> int:
    """Validate ``load_audio`` keyword arguments; return the sampling rate as ``int``."""
    rate_ok = (
        not isinstance(sampling_rate, bool)
        and isinstance(sampling_rate, numbers.Real)
        and math.isfinite(sampling_rate)
        and float(sampling_rate).is_integer()
        and 0 < sampling_rate <= MAX_SOURCE_SAMPLING_RATE
    )
    if not rate_ok:
        raise AudioError(
            f"{name}: invalid sampling_rate {sampling_rate!r}: must be an integer in "
            f"1..{MAX_SOURCE_SAMPLING_RATE} Hz"
        )
    for label, value in (("max_seconds", max_seconds), ("min_seconds", min_seconds)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
            raise AudioError(f"{name}: invalid {label} {value!r}: must be a finite number of seconds")
    if min_seconds < 0:
        raise AudioError(f"{name}: invalid min_seconds {min_seconds!r}: must be >= 0")
    if max_seconds <= min_seconds:
        raise AudioError(
            f"{name}: invalid limits: max_seconds ({max_seconds!r}) must be greater than "
            f"min_seconds ({min_seconds!r})"
        )
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, numbers.Integral) or max_bytes <= 0:
        raise AudioError(f"{name}: invalid max_bytes {max_bytes!r}: must be a positive integer")
    return int(sampling_rate)


def _decode_mono(snd: sf.SoundFile, name: str, max_seconds: float) -> np.ndarray:
    """Decode block by block into a float32 mono signal, stopping once ``max_seconds`` is passed."""
    sr, channels = snd.samplerate, snd.channels
    max_frames = math.floor(max_seconds * sr)
    block = max(1024, _BLOCK_SAMPLES // channels)
    buf = np.empty((block, channels), dtype=np.float32)
    pieces: list[np.ndarray] = []
    total = 0
    while True:
        want = min(block, max_frames + 1 - total)
        # ``out=`` reads up to len(out) frames without trusting the header's frame count.
        got = snd.read(frames=want, dtype="float32", always_2d=True, out=buf[:want])
        n = int(got.shape[0])
        if n == 0:
            break
        with np.errstate(all="ignore"):
            mono = (
                got[:, 0].copy() if channels == 1 else got.mean(axis=1, dtype=np.float64).astype(np.float32)
            )
        if not np.isfinite(mono).all():
            raise AudioError(f"{name}: audio contains non-finite samples (NaN or infinity)")
        pieces.append(mono)
        total += n
        if total > max_frames:
            raise AudioError(f"{name}: audio is longer than the limit of {_secs(max_seconds)} s")
        if n < want:
            break
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def _load(
    source: AudioSource, name: str, rate: int, max_seconds: float, min_seconds: float, max_bytes: int
) -> np.ndarray:
    with _open(source, name, max_bytes) as snd:
        _check_header(snd, name)
        sr = snd.samplerate
        header_frames = _header_frames(snd)
        if header_frames is not None and header_frames > max_seconds * sr:
            raise AudioError(
                f"{name}: audio is {_secs(header_frames / sr)} s long; the limit is {_secs(max_seconds)} s"
            )
        try:
            mono = _decode_mono(snd, name, max_seconds)
        except AudioError:
            raise
        except Exception as err:  # decoder errors mean corrupt data
            raise AudioError(f"{name}: audio data is corrupt or truncated ({_lib_reason(err)})") from err
        if header_frames is not None and mono.size < header_frames:
            # Exact for every libsndfile format except MP3, whose header count may be an estimate.
            tolerance = header_frames // 10 if snd.format == "MP3" else 0
            if header_frames - mono.size > tolerance:
                raise AudioError(
                    f"{name}: file is truncated or corrupt (header declares {header_frames} frames, "
                    f"only {mono.size} could be decoded)"
                )
    if mono.size == 0:
        raise AudioError(f"{name}: audio contains no samples (zero frames)")
    duration = mono.size / sr
    if duration < min_seconds:
        raise AudioError(
            f"{name}: audio is too short ({_secs(duration)} s; the minimum is {_secs(min_seconds)} s)"
        )
    if sr != rate:
        try:
            mono = np.asarray(soxr.resample(mono, sr, rate, quality="HQ"), dtype=np.float32)
        except Exception as err:  # soxr errors become AudioError
            raise AudioError(
                f"{name}: resampling from {sr} Hz to {rate} Hz failed ({_lib_reason(err)})"
            ) from err
        if mono.size == 0:
            raise AudioError(f"{name}: audio is too short to resample from {sr} Hz to {rate} Hz")
        if not np.isfinite(mono).all():
            raise AudioError(f"{name}: resampled audio contains non-finite samples")
    return np.ascontiguousarray(mono.reshape(-1), dtype=np.float32)


def load_audio(
    source: AudioSource,
    *,
    sampling_rate: int = DEFAULT_SAMPLING_RATE,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    min_seconds: float = DEFAULT_MIN_SECONDS,
    max_bytes: int = MAX_FILE_BYTES,
) -> np.ndarray:
    """Decode ``source`` (a path, or the raw bytes of a file) into float32 mono at ``sampling_rate``.

    Supports whatever libsndfile decodes (WAV, FLAC, OGG/Vorbis/Opus, AIFF, MP3, ...). Channels are
    averaged; the result is resampled with soxr (HQ) when rates differ. Returns a non-empty 1-D finite
    float32 array. Raises :class:`AudioError` (and nothing else) for any refused input or argument.
    """
    name = _describe(source)
    rate = _check_args(name, sampling_rate, max_seconds, min_seconds, max_bytes)
    try:
        return _load(source, name, rate, float(max_seconds), float(min_seconds), int(max_bytes))
    except AudioError:
        raise
    except Exception as err:  # the contract is "AudioError or a valid array"
        raise AudioError(f"{name}: could not decode audio ({_lib_reason(err)})") from err


def audio_duration(source: AudioSource) -> float:
    """Return the duration in seconds stated by the file header, without decoding samples."""
    name = _describe(source)
    try:
        with _open(source, name, None) as snd:
            _check_header(snd, name)
            frames = int(snd.frames)
            if frames == 0:
                raise AudioError(f"{name}: audio contains no samples (zero frames)")
            if not 0 < frames < _UNKNOWN_FRAMES:
                raise AudioError(f"{name}: the header does not state the duration")
            return frames / snd.samplerate
    except AudioError:
        raise
    except Exception as err:
        raise AudioError(f"{name}: could not read the audio header ({_lib_reason(err)})") from err


def write_wav(
    path: str | os.PathLike[str], audio: np.ndarray, sampling_rate: int = DEFAULT_SAMPLING_RATE
) -> None:
    """Write ``audio`` (1-D, finite, nominally in [-1, 1]; clipped) as a 16-bit PCM mono WAV."""
    name = _describe(path)
    data = np.asarray(audio)
    if data.ndim != 1:
        raise AudioError(f"{name}: audio to write must be 1-D (mono), got shape {data.shape}")
    if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
        raise AudioError(f"{name}: audio to write must be real numbers, got dtype {data.dtype}")
    if not np.isfinite(data).all():
        raise AudioError(f"{name}: audio to write contains non-finite samples (NaN or infinity)")
    if (
        isinstance(sampling_rate, bool)
        or not isinstance(sampling_rate, numbers.Integral)
        or sampling_rate <= 0
    ):
        raise AudioError(f"{name}: invalid sampling_rate {sampling_rate!r}: must be a positive integer")
    samples = np.clip(data.astype(np.float64), -1.0, 1.0)
    try:
        sf.write(os.fspath(path), samples, int(sampling_rate), subtype="PCM_16", format="WAV")
    except Exception as err:
        raise AudioError(f"{name}: could not write WAV ({_lib_reason(err)})") from err
