"""Who is asking, who is an admin, and which delivered files belong to whom (the API and the HTTP guard).

Identity comes only from the server-side request (:func:`annotator`); exports are private files that
only their owner may fetch (:func:`private_file_owner`), under folders never served by path
(:func:`private_roots`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from .state import STATE, PrivateFile, UserError, settings

LOCAL_ANNOTATOR = "local"
"""Who calls the service without a request (scripts); an admin when the studio has no sign-in."""

# ------------------------------------------------------------------------------------------- identity


def _oauth_username(request: Any) -> str | None:
    """The Hugging Face user name from the OAuth session cookie (Spaces with ``hf_oauth: true``)."""
    underlying = getattr(request, "request", None) or request
    scope = getattr(underlying, "scope", None)
    session = scope.get("session", {}) if isinstance(scope, dict) else getattr(underlying, "session", None)
    info = (session or {}).get("oauth_info") or {}
    user = info.get("userinfo") or {}
    return user.get("preferred_username") or user.get("name")


GUEST_PREFIX = "guest-"


def annotator(request: Any) -> str:
    """Who is asking: the logged-in user of the server-side request.

    Never taken from a form field. With auth (or OAuth) configured and no user on the request, refuses.
    Without auth, every browser session (or client) is an anonymous guest, ``guest-<12 hex>`` from its
    session, whose uploads and ratings are its own; ``local`` only for calls without a request (scripts).
    """
    name = getattr(request, "username", None) if request is not None else None
    if not name and settings().oauth and request is not None:
        name = _oauth_username(request)
    if name:
        return str(name)
    if settings().auth_required:
        raise UserError("Please sign in first.")
    session = getattr(request, "session_hash", None) if request is not None else None
    if isinstance(session, str) and session:
        return GUEST_PREFIX + hashlib.sha256(session.encode()).hexdigest()[:12]
    return LOCAL_ANNOTATOR


def is_admin(name: str) -> bool:
    """Admins may import traces, share clips, export everyone's ratings and train. Without auth nobody
    who comes through the web is (guests); only ``local`` (scripts calling the service directly) is."""
    s = settings()
    if not s.auth_required:
        return name == LOCAL_ANNOTATOR
    return name in s.admins


def require_admin(name: str, what: str) -> None:
    if not is_admin(name):
        raise UserError(f"Only studio admins can {what} (AUDIO_THINKER_ADMINS).")


# -------------------------------------------------------------------------------------- private files

EXPORT_TTL_S = float(os.environ.get("AUDIO_THINKER_EXPORT_TTL_S", "600"))
"""How long an export stays fetchable by the user who asked for it (then its files are deleted)."""


def private_roots() -> list[Path]:
    """Folders whose files are never served by path: the store's media, the (former) exports folder and
    ``runs/`` (checkpoints, completions: the Runs tab hands out cached copies of its plots only)."""
    roots = [settings().exports_dir.resolve(), settings().runs_root.resolve()]
    with STATE.lock:
        if STATE.store is not None:
            roots.append(Path(STATE.store.media_dir).resolve())
    return roots


_HASHES: dict[tuple[str, int, int], str] = {}
_HASHES_LOCK = threading.Lock()
MAX_CLIP_CHECK_BYTES = 64 * 1024 * 1024
"""Files larger than this cannot be stored clips (uploads are refused over 50 MB): not hashed."""


def _sha256(path: Path) -> str | None:
    """The SHA-256 of a file's bytes (remembered per path, size and modification time); None if unreadable."""
    try:
        st = path.stat()
    except OSError:
        return None
    if not path.is_file() or st.st_size > MAX_CLIP_CHECK_BYTES:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _HASHES_LOCK:
        if key in _HASHES:
            return _HASHES[key]
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    with _HASHES_LOCK:
        if len(_HASHES) > 10_000:
            _HASHES.clear()
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def clip_hidden_from(path: Path, user: str | None) -> bool:
    """Whether the file at ``path`` holds a stored clip that ``user`` may not hear (it belongs only to
    others' private uploads): Gradio keeps an upload, and the copy of every clip a handler returned, in its
    cache under a URL that whoever learns it could fetch."""
    with STATE.lock:
        st = STATE.store
    if st is None:
        return False
    digest = _sha256(path)
    if digest is None:
        return False
    try:
        return st.clip_visibility(digest, user) is False
    except Exception:  # noqa: BLE001 - the store away: refuse rather than serve a clip that may be private
        return True


def private_file_owner(name: str) -> str | None:
    """Who may fetch the delivered file called ``name`` (an export), or None when it is not one."""
    with STATE.private_lock:
        entry = STATE.private_files.get(name)
    return entry.owner if entry is not None else None


def register_private(name: str, owner: str, folder: Path) -> None:
    """Deliver the file called ``name`` in ``folder`` to ``owner`` alone, and delete it after
    :data:`EXPORT_TTL_S` seconds."""
    with STATE.private_lock:
        STATE.private_files[name] = PrivateFile(owner, folder, time.time() + EXPORT_TTL_S)
    timer = threading.Timer(EXPORT_TTL_S, _expire_private, args=(name,))
    timer.daemon = True
    timer.start()


def _expire_private(name: str) -> None:
    """Delete an export's folder and the copies Gradio delivered from it (its cache keeps them by name)."""
    from gradio.utils import get_upload_folder

    with STATE.private_lock:
        entry = STATE.private_files.pop(name, None)
    if entry is None:
        return
    shutil.rmtree(entry.folder, ignore_errors=True)
    for copy in Path(get_upload_folder()).glob(f"*/{name}"):
        copy.unlink(missing_ok=True)


_PATH_RE = re.compile(r"(?<![\w.])(?:[A-Za-z]:)?[\\/](?:[^\\/\s'\"(),;]+[\\/])+[^\\/\s'\"(),;:]*")


def scrub(message: str) -> str:
    """``message`` with server paths reduced to their last part (people see the name, not the folder)."""
    return _PATH_RE.sub(lambda m: Path(m.group(0).rstrip("/\\")).name or "…", message)
