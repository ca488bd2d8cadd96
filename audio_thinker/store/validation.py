"""Validation of values before anything is written: each raises :class:`ValueError` (audio: ``AudioError``)."""

from __future__ import annotations

import math
import numbers
import os
from typing import Any

from audio_thinker.audio import AudioError
from audio_thinker.rewards import quantize_quality

from .schema import (
    _CONTROL_RE,
    _HASH_RE,
    _SOURCE_RE,
    MAX_NAME_CHARS,
    MAX_ORIGINAL_NAME_CHARS,
    MAX_SOURCE_CHARS,
    Clip,
)


def _text(value: object, field: str, limit: int, *, optional: bool = False, strip: bool = True) -> str | None:
    """Validate a text field: a str of at most ``limit`` characters, no NUL; '' counts as missing."""
    if value is None:
        if optional:
            return None
        raise ValueError(f"{field} is required")
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string, got {type(value).__name__}")
    if strip:
        value = value.strip()
    if not value:
        if optional:
            return None
        raise ValueError(f"{field} must not be empty")
    if len(value) > limit:
        raise ValueError(f"{field} is {len(value)} characters long; the limit is {limit}")
    if "\x00" in value:
        raise ValueError(f"{field} contains a NUL character")
    return value


def _number(value: object, field: str, *, integer: bool = False, maximum: float | None = None) -> Any:
    """Validate an optional non-negative finite number (an int when ``integer``)."""
    if value is None:
        return None
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        raise ValueError(f"{field} must be a finite {'integer' if integer else 'number'}, got {value!r}")
    if value < 0:
        raise ValueError(f"{field} must be >= 0, got {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{field} must be <= {maximum:g}, got {value!r}")
    return int(value) if integer else float(value)


def _choice(value: object, field: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{field} must be one of {', '.join(allowed)}; got {value!r}")
    return str(value)


def snap_quality(value: object) -> float | None:
    """Validate a think-quality score in [0, 1] and snap it to the nearest tenth (halves up)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"quality must be a number between 0 and 1, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"quality must be between 0 and 1, got {value!r}")
    return quantize_quality(value)  # the R_t grid


def _annotator_name(value: object) -> str:
    name = _text(value, "annotator name", MAX_NAME_CHARS)
    assert name is not None
    if _CONTROL_RE.search(name):
        raise ValueError("annotator name must not contain control characters")
    return name


def _source_slug(value: object) -> str:
    source = _text(value, "source", MAX_SOURCE_CHARS)
    assert source is not None
    if not _SOURCE_RE.fullmatch(source):
        raise ValueError(f"source must be a lower-case slug like 'synth-aqa', got {source!r}")
    return source


def _clip_hash(value: object) -> str:
    if isinstance(value, Clip):
        value = value.hash
    if not isinstance(value, str) or not _HASH_RE.fullmatch(value):
        raise ValueError(f"not a clip hash (64 lower-case hex digits): {value!r}")
    return value


def _original_name(value: object) -> str | None:
    """Keep the base name of a user-supplied file name as display metadata (never used as a path)."""
    if value is None:
        return None
    name = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(name, str):
        raise ValueError(f"original_name must be a string, got {type(value).__name__}")
    name = _CONTROL_RE.sub("", name.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return name[:MAX_ORIGINAL_NAME_CHARS] or None


def _read_source(source: object) -> bytes:
    """The bytes of an audio source (bytes or a path), refusing files larger than the audio limit."""
    from audio_thinker.audio import MAX_FILE_BYTES

    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        try:
            with open(source, "rb") as fh:
                data = fh.read(MAX_FILE_BYTES + 1)
        except OSError as err:
            raise AudioError(f"{os.fspath(source)}: cannot read file ({err.strerror or err})") from err
        return data
    raise AudioError(f"audio source must be a path or bytes, not {type(source).__name__}")
