"""The judge interface: requests, verdicts, the :class:`Judge` protocol and the registry.

A judge reads a think trace and the final answer of one completion and returns a :class:`Verdict`:

* ``consistent`` — R_c ∈ {0, 1}: does the reasoning support the given answer?
* ``quality`` — R_t ∈ [0, 1] in steps of 0.1: how good is the reasoning, regardless of whether the final
  answer is right?
* ``failed`` — the judge could not judge (unparseable reply, unsupported item); the verdict then carries a
  neutral score (``Verdict.neutral``: consistent 1, quality 0.5) and should be counted, not trusted.

Backends implement the :class:`Judge` protocol (a ``name`` and ``score_batch``) and are registered under a
name with :func:`register_judge`; :func:`make_judge` builds one by name. The package
(:mod:`audio_thinker.judges`) registers the built-in backends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..rewards import parse_completion, quantize_quality

__all__ = [
    "Judge",
    "JudgeRequest",
    "Verdict",
    "available_judges",
    "make_judge",
    "register_judge",
    "score",
    "warn_once",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    """One judgement. ``quality`` is snapped to the 0.1 grid on construction.

    Raises ValueError when ``consistent`` is not 0/1 or ``quality`` is not a number in [0, 1].
    """

    consistent: int
    quality: float
    failed: bool = False
    detail: str = ""

    def __post_init__(self) -> None:
        if self.consistent not in (0, 1):
            raise ValueError(f"consistent must be 0 or 1, got {self.consistent!r}")
        q = float(self.quality)
        if not (0.0 <= q <= 1.0):  # also rejects NaN
            raise ValueError(f"quality must be in [0, 1], got {self.quality!r}")
        object.__setattr__(self, "consistent", int(self.consistent))
        object.__setattr__(self, "quality", quantize_quality(q))

    @classmethod
    def neutral(cls, detail: str) -> Verdict:
        """The verdict of a judge that could not judge: consistent 1, quality 0.5, failed."""
        return cls(consistent=1, quality=0.5, failed=True, detail=detail)


@dataclass(frozen=True)
class JudgeRequest:
    """What a judge sees of one completion: the question, its choices, the think and answer texts."""

    question: str
    choices: Sequence[str]
    think: str
    answer: str
    item: Mapping | None = None

    @classmethod
    def from_completion(
        cls, question: str, choices: Sequence[str], completion: str, item: Mapping | None = None
    ) -> JudgeRequest:
        """Build a request from a raw completion with :func:`rewards.parse_completion` (missing → "")."""
        parsed = parse_completion(completion)
        return cls(question, choices, parsed.think or "", parsed.answer or "", item)


@runtime_checkable
class Judge(Protocol):
    """A judge backend: ``score_batch`` returns one :class:`Verdict` per request, in order."""

    name: str

    def score_batch(self, requests: Sequence[JudgeRequest]) -> list[Verdict]: ...


def score(
    judge: Judge,
    question: str,
    choices: Sequence[str],
    think: str,
    answer: str,
    item: Mapping | None = None,
) -> tuple[int, float]:
    """Convenience for one request: ``(consistent, quality)``."""
    (verdict,) = judge.score_batch([JudgeRequest(question, choices, think, answer, item)])
    return verdict.consistent, verdict.quality


_REGISTRY: dict[str, Callable[..., Judge]] = {}


def register_judge(
    name: str, *, replace: bool = False
) -> Callable[[Callable[..., Judge]], Callable[..., Judge]]:
    """Decorator registering a judge factory (usually the class) under ``name`` for :func:`make_judge`.

    A name taken by another factory is refused (ValueError) unless ``replace=True``; registering the same
    factory again changes nothing."""

    def deco(factory: Callable[..., Judge]) -> Callable[..., Judge]:
        taken = _REGISTRY.get(name)
        if taken is not None and taken is not factory and not replace:
            raise ValueError(
                f"a judge named {name!r} is already registered ({getattr(taken, '__qualname__', taken)}); "
                "choose another name, or pass replace=True to replace it"
            )
        _REGISTRY[name] = factory
        return factory

    return deco


def available_judges() -> list[str]:
    """Names :func:`make_judge` accepts, sorted."""
    return sorted(_REGISTRY)


def make_judge(name: str, **kwargs: Any) -> Judge:
    """Build the judge registered as ``name`` with ``kwargs``; ValueError for an unknown name."""
    try:
        factory = _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown judge {name!r}; known judges: {', '.join(available_judges())}") from None
    return factory(**kwargs)


_WARNED: set[str] = set()


def warn_once(logger: logging.Logger, message: str) -> None:
    """Log ``message`` as a warning on ``logger`` the first time it comes up in this process."""
    if message not in _WARNED:
        _WARNED.add(message)
        logger.warning(message)
