"""Small helpers shared by the tabs (no ``audio_thinker`` imports)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import gradio as gr

from .services.auth import scrub
from .services.state import StoreUnavailable, UserError

log = logging.getLogger("audio_thinker.studio")


def _one_line(message: str) -> str:
    """A message for people: one line, without server paths (``app.services.auth.scrub``)."""
    return " ".join(scrub(message).split())[:500]


@contextmanager
def user_error() -> Iterator[None]:
    """Show :class:`~app.services.state.UserError` and :class:`~app.services.state.StoreUnavailable` as a friendly one-line error
    toast (no traceback, no server paths); the handler stops and the page keeps what it showed. Anything
    else is logged on the server and shown as a short generic error."""
    try:
        yield
    except gr.Error:
        raise
    except StoreUnavailable as err:
        raise gr.Error(
            _one_line(str(err)), title="Database unavailable", duration=None, print_exception=False
        ) from None
    except UserError as err:
        raise gr.Error(_one_line(str(err)), title="Please check", print_exception=False) from None
    except (TypeError, ValueError, OverflowError) as err:  # a malformed value from a client
        log.info("bad request value: %s", err)
        raise gr.Error(
            "That request has a malformed value.", title="Please check", print_exception=False
        ) from None
    except Exception:
        log.exception("studio handler failed")
        raise gr.Error(
            "Something went wrong on the server; nothing was changed. Please try again.",
            print_exception=False,
        ) from None


def progress_bar(done: int, total: int, label: str) -> str:
    """A small HTML progress bar."""
    pct = 100.0 * done / total if total else 0.0  # nothing to do yet is not "all done"
    return (
        f'<div class="at-progress" title="{label}"><div class="at-progress-label">{label}</div>'
        f'<div class="at-progress-track"><div class="at-progress-fill" style="width:{pct:.1f}%"></div></div></div>'
    )
