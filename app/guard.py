"""The studio's HTTP guard: an ASGI middleware in front of Gradio's FastAPI app (``launch(app_kwargs=...)``),
and the sign-in check with its throttle.

* It remembers the client address of each request (:data:`client_address`) for the sign-in throttle,
  which Gradio's ``auth`` callable cannot see otherwise.
* :func:`authenticate` is the ``auth`` callable: passwords are compared in constant time, and
  :data:`LOGIN_THROTTLE` refuses attempts (HTTP 429, without looking at the password) once an account or
  a client address has used up its failures: 5 per account then one more every 12 s, 20 per address then
  one more every 3 s. 100 guesses at one account take at least 19 minutes.
* It refuses ``/file=`` requests for files that are not the requester's to fetch: an export (registered by
  ``app.services.reward.export``) is served, from Gradio's cache, only to the signed-in user who asked for it; the
  ratings store's media folder and the old shared exports folder are never served by path (clips reach the
  page as Gradio's cached copies of what a handler returned, and only to whom that handler showed them).
"""

from __future__ import annotations

import contextvars
import hmac
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from starlette.requests import HTTPConnection
from starlette.responses import PlainTextResponse

from .services import auth as service
from .services.state import settings

client_address: contextvars.ContextVar[str | None] = contextvars.ContextVar("client_address", default=None)
"""The address of the client whose request is being handled (None outside a request)."""


@dataclass
class _Bucket:
    tokens: float
    updated: float


class LoginThrottle:
    """Token buckets of sign-in failures, one per account and one per client address.

    Each bucket holds ``capacity`` failures and regains one every ``refill_s`` seconds. An attempt is
    refused outright while either bucket is empty; a failed attempt takes one from both; a successful one
    takes nothing. ``clock`` (seconds, monotonic) can be replaced in tests.
    """

    MAX_BUCKETS = 50_000

    def __init__(
        self,
        *,
        account: tuple[int, float] = (5, 12.0),
        address: tuple[int, float] = (20, 3.0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.account, self.address, self.clock = account, address, clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()

    def _level(self, key: tuple[str, str], policy: tuple[int, float], now: float) -> _Bucket:
        capacity, refill_s = policy
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.MAX_BUCKETS:  # forget the buckets that have refilled
                self._buckets = {
                    k: b
                    for k, b in self._buckets.items()
                    if b.tokens + (now - b.updated) / refill_s < capacity
                }
            bucket = self._buckets[key] = _Bucket(float(capacity), now)
        bucket.tokens = min(float(capacity), bucket.tokens + max(0.0, now - bucket.updated) / refill_s)
        bucket.updated = now
        return bucket

    def check(self, account: str, address: str, verify: Callable[[], bool]) -> bool:
        """Run ``verify`` (the password check) unless throttled; :class:`HTTPException` 429 when throttled."""
        with self._lock:
            now = self.clock()
            buckets = (
                self._level(("account", account), self.account, now),
                self._level(("address", address), self.address, now),
            )
            if any(b.tokens < 1.0 for b in buckets):
                wait = max(
                    (1.0 - b.tokens) * policy[1]
                    for b, policy in zip(buckets, (self.account, self.address), strict=True)
                    if b.tokens < 1.0
                )
                seconds = max(1, math.ceil(wait))
                raise HTTPException(
                    status_code=429,
                    detail=f"Too many sign-in attempts: sign-in is paused for this account. Wait {seconds} s, "
                    "then try again (your password was not checked).",
                    headers={"Retry-After": str(seconds)},
                )
            ok = verify()
            if not ok:
                for b in buckets:
                    b.tokens -= 1.0
            return ok

    def min_seconds(self, guesses: int) -> float:
        """The least time ``guesses`` password checks at one account can take under this policy."""
        capacity, refill_s = self.account
        return max(0, guesses - capacity) * refill_s


LOGIN_THROTTLE = LoginThrottle()


def authenticate(username: str, password: str) -> bool:
    """Gradio's ``auth`` callable: the ``AUDIO_THINKER_USERS`` password check, throttled per account and
    per client address."""
    users = settings().users
    address = client_address.get() or "unknown"

    def verify() -> bool:
        expected = users.get(username)
        given = password.encode() if isinstance(password, str) else b""
        return expected is not None and hmac.compare_digest(given, expected.encode())

    return LOGIN_THROTTLE.check(str(username)[:200], address, verify)


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
    """Whether the requester may fetch ``requested`` (the part of a ``/file=`` URL after ``file=``).

    Exports go to the user who asked; nothing under the media folder, the old exports folder or ``runs/``
    is served by path (the Runs tab shows Gradio's cached copies of the plots it returns); with sign-in,
    a file whose bytes are a stored clip (an upload in Gradio's cache, or the copy a handler returned) is
    served only to users who may see an item of that clip (shared, or their own upload)."""
    try:
        path = Path(requested).resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    owner = service.private_file_owner(path.name)
    if owner is not None:
        if not settings().auth_required:  # open studio: the random name is the only key
            return True
        return request_user(scope) == owner
    if any(_inside(path, root) for root in service.private_roots()):
        return False
    return not (settings().auth_required and service.clip_hidden_from(path, request_user(scope)))


FILE_ROUTES = ("/file=", "/file/")
"""The parts of Gradio's file-serving URLs after which the file's path follows (``/gradio_api/file=<path>``
and the older ``/gradio_api/file/<path>``)."""


LOGIN_JS = """<script>
(() => {  // Gradio's sign-in form shows "Incorrect Credentials" for a 400 and nothing for a 429: say why
  if (window.__atLogin) return;
  window.__atLogin = true;
  const say = (text) => {
    let note = document.getElementById("at-login-throttled");
    for (const p of document.querySelectorAll("p.creds")) p.style.display = text ? "none" : "";
    if (!text) { if (note) note.remove(); return; }
    if (!note) {
      const login = [...document.querySelectorAll("button")].find((b) => b.textContent.trim() === "Login");
      const anchor = document.querySelector("p.creds") || login;
      if (!anchor) return;
      note = document.createElement("p");
      note.id = "at-login-throttled";
      note.setAttribute("role", "alert");
      note.style.cssText = "color: var(--error-text-color, #b91c1c); font-weight: 600; margin: 8px 0;";
      anchor.parentElement.insertBefore(note, anchor);
    }
    note.textContent = text;
  };
  const fetch0 = window.fetch.bind(window);
  window.fetch = async (input, init) => {
    const res = await fetch0(input, init);
    const url = String(typeof input === "string" ? input : (input && input.url) || "").split("?")[0];
    if (/\\/login\\/?$/.test(url) && init && String(init.method).toUpperCase() === "POST") {
      if (res.status === 429) {
        let text = "Too many sign-in attempts: wait a little, then try again.";
        try { const body = await res.clone().json(); if (body && body.detail) text = String(body.detail); } catch (e) {}
        say(text);
      } else {
        say("");
      }
    }
    return res;
  };
})();
</script>"""
"""Injected into the page's HTML at ``/`` (the sign-in page has no ``head`` of the studio's own): a refused
(throttled) sign-in says so and how long to wait, instead of leaving "Incorrect Credentials" on screen."""


async def _with_login_script(app: Any, scope: dict, receive: Any, send: Any) -> None:
    """Run ``app`` and add :data:`LOGIN_JS` before ``</head>`` of an uncompressed HTML answer."""
    start: dict | None = None
    chunks: list[bytes] = []

    async def capture(message: dict) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
            return
        if message["type"] != "http.response.body" or start is None:
            await send(message)
            return
        chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = b"".join(chunks)
        headers = dict((k.lower(), v) for k, v in start.get("headers", []))
        if b"text/html" in headers.get(b"content-type", b"") and b"content-encoding" not in headers:
            body = body.replace(b"</head>", LOGIN_JS.encode() + b"</head>", 1)
        out = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        out.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": out})
        await send({"type": "http.response.body", "body": body})

    await app(scope, receive, capture)


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
            if scope["type"] == "http":
                for marker in FILE_ROUTES:
                    if marker in path and not file_allowed(scope, path.split(marker, 1)[1]):
                        await PlainTextResponse("Not found.", status_code=404)(scope, receive, send)
                        return
                root = scope.get("root_path", "").rstrip("/")
                if scope.get("method") == "GET" and path.rstrip("/") == root:
                    await _with_login_script(self.app, scope, receive, send)
                    return
            await self.app(scope, receive, send)
        finally:
            client_address.reset(token)
