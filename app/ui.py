"""Small helpers shared by the tabs (no ``audio_thinker`` imports)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import gradio as gr

from .services.auth import scrub
from .services.state import StoreUnavailable, UserError, mask_passwords

log = logging.getLogger("audio_thinker.studio")


def _one_line(message: str) -> str:
    """A message for people: one line, without server paths (``app.services.auth.scrub``) or passwords."""
    return " ".join(scrub(mask_passwords(message)).split())[:500]


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


def warn_instead(n_outputs: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """For handlers of a panel that must stay usable: a refused request (a slip such as a missing choice,
    the database away, anything unexpected) shows a one-line warning toast and leaves all ``n_outputs``
    outputs as they were (``gr.skip()``), instead of raising ``gr.Error``, which Gradio 6 also paints as a
    red "Error" box over every output component until each is closed."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def handler(*args: Any, **kwargs: Any) -> Any:
            try:
                with user_error():
                    return fn(*args, **kwargs)
            except gr.Error as err:
                gr.Warning(str(err.message), title=err.title or "Please check")
                skipped = tuple(gr.skip() for _ in range(n_outputs))
                return skipped[0] if n_outputs == 1 else skipped

        return handler

    return wrap


def progress_bar(done: int, total: int, label: str) -> str:
    """A small HTML progress bar."""
    pct = 100.0 * done / total if total else 0.0  # nothing to do yet is not "all done"
    return (
        f'<div class="at-progress" title="{label}"><div class="at-progress-label">{label}</div>'
        f'<div class="at-progress-track"><div class="at-progress-fill" style="width:{pct:.1f}%"></div></div></div>'
    )
