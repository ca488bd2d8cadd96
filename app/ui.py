"""Small helpers shared by the tabs (no ``audio_thinker`` imports)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import gradio as gr

from . import service


@contextmanager
def user_error() -> Iterator[None]:
    """Show :class:`service.UserError` and :class:`service.StoreUnavailable` as a friendly error toast
    (no traceback); the handler stops and the page keeps what it showed."""
    try:
        yield
    except service.StoreUnavailable as err:
        raise gr.Error(str(err), title="Database unavailable", duration=None, print_exception=False) from None
    except service.UserError as err:
        raise gr.Error(str(err), title="Please check", print_exception=False) from None


def progress_bar(done: int, total: int, label: str) -> str:
    """A small HTML progress bar."""
    pct = 100.0 * done / total if total else 100.0
    return (
        f'<div class="at-progress" title="{label}"><div class="at-progress-label">{label}</div>'
        f'<div class="at-progress-track"><div class="at-progress-fill" style="width:{pct:.1f}%"></div></div></div>'
    )
