"""Errors as people read them: the one line that says what went wrong (CLIs, the studio, the store)."""

from __future__ import annotations

__all__ = ["first_line"]


def first_line(err: BaseException, limit: int | None = None) -> str:
    """The first non-blank line of ``err``'s message (a database error's driver message, ``err.orig``, when
    there is one), cut to ``limit`` characters; the exception's type name when the message is empty."""
    text = str(getattr(err, "orig", None) or err).strip()
    return text.splitlines()[0][:limit] if text else type(err).__name__
