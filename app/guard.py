"""The studio's HTTP guard: an ASGI middleware in front of Gradio's FastAPI app (``launch(app_kwargs=...)``).

* It remembers the client address of each request (:data:`client_address`) for the sign-in throttle,
  which Gradio's ``auth`` callable cannot see otherwise.
* It refuses ``/file=`` requests for files that are not the requester's to fetch: an export (registered by
  ``service.export``) is served, from Gradio's cache, only to the signed-in user who asked for it; the
  ratings store's media folder and the old shared exports folder are never served by path (clips reach the
  page as Gradio's cached copies of what a handler returned, and only to whom that handler showed them).
"""

from __future__ import annotations

import contextvars
from pathlib import Path
from typing import Any

from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse

from . import service

client_address: contextvars.ContextVar[str | None] = contextvars.ContextVar("client_address", default=None)
"""The address of the client whose request is being handled (None outside a request)."""


def request_user(scope: dict) -> str | None:
    """The signed-in user of a request, from Gradio's session cookie (None when not signed in)."""
    app = scope.get("app")
    tokens = getattr(app, "tokens", None)
    cookie_id = getattr(app, "cookie_id", None)
    if not tokens or cookie_id is None:
        return None
    cookies = HTTPConnection(scope).cookies
    token = cookies.get(f"access-token-{cookie_id}") or cookies.get(f"access-token-unsecure-{cookie_id}")
    return tokens.get(token) if token else None


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


def file_allowed(scope: dict, requested: str) -> bool:
    """Whether the requester may fetch ``requested`` (the part of a ``/file=`` URL after ``file=``)."""
    try:
        path = Path(requested).resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    owner = service.private_file_owner(path.name)
    if owner is not None:
        if not service.settings().auth_required:  # open studio: the random name is the only key
            return True
        return request_user(scope) == owner
    return not any(_inside(path, root) for root in service.private_roots())


class StudioGuard:
    """ASGI middleware: see the module docstring."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        token = client_address.set(str(client[0]) if client else None)
        try:
            path = scope.get("path", "")
            denied = scope["type"] == "http" and "/file=" in path
            if denied and not file_allowed(scope, path.split("/file=", 1)[1]):
                await PlainTextResponse("Not found.", status_code=404)(scope, receive, send)
                return
            await self.app(scope, receive, send)
        finally:
            client_address.reset(token)
