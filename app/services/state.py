"""The studio's settings, its one piece of shared state, the store it opens, and the errors people see.

Everything the service modules keep between requests lives in :data:`STATE`, a :class:`StudioState`
created here once; :func:`configure` resets it. Errors meant for people are :class:`UserError` (shown as
is); a database that cannot be reached raises :class:`StoreUnavailable`, whose message says that nothing
was saved.
"""

from __future__ import annotations

import dataclasses
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audio_thinker.audio import AudioError
from audio_thinker.errors import first_line
from audio_thinker.inference import AudioLM
from audio_thinker.store import (
    AccessDeniedError,
    DatabaseError,
    NotFoundError,
    Store,
    StoreError,
    display_url,
)

GENERATION_CONCURRENCY = int(os.environ.get("AUDIO_THINKER_GENERATION_CONCURRENCY", "1"))
"""Generations running at once (the rest wait in the queue); one keeps a small CPU box responsive."""
DB_CONCURRENCY = int(os.environ.get("AUDIO_THINKER_DB_CONCURRENCY", "8"))
"""Rating / vote requests handled at once (SQLite serialises the writes; each is one short transaction)."""


class UserError(ValueError):
    """A problem with what the user gave or asked for; its message is shown as is."""


class StoreUnavailable(RuntimeError):
    """The ratings database could not be reached; nothing was written."""


# ------------------------------------------------------------------------------------------- settings


def _parse_users(value: str | None) -> dict[str, str]:
    """``"user:pass,user2:pass2"`` or the path of a file with one ``user:pass`` per line (``#`` comments)."""
    if not value or not value.strip():
        return {}
    entries = Path(value).read_text().splitlines() if os.path.isfile(value) else value.split(",")
    users: dict[str, str] = {}
    for raw in entries:
        entry = raw.strip()
        if not entry or entry.startswith("#"):
            continue
        name, sep, password = entry.partition(":")
        if not sep or not name.strip() or not password:
            raise ValueError(f"AUDIO_THINKER_USERS: expected user:password, got {entry.split(':')[0]!r}:…")
        users[name.strip()] = password
    return users


@dataclass
class Settings:
    """Where the studio keeps things and who may use it (see :func:`configure`)."""

    db_url: str | None = None
    model_path: str | None = None
    users: dict[str, str] = field(default_factory=dict)
    admins: set[str] = field(default_factory=set)
    oauth: bool = False
    runs_root: Path = Path("runs")
    reward_model_dir: Path = Path("annotations/reward_model")
    exports_dir: Path = Path("annotations/exports")  # no longer written (exports are per request, private);
    # kept so that older files there stay unserved (``private_roots``)
    lm: AudioLM | None = None  # an already loaded model (tests), else loaded from model_path

    @classmethod
    def from_env(cls) -> Settings:
        users = _parse_users(os.environ.get("AUDIO_THINKER_USERS"))
        admins_env = os.environ.get("AUDIO_THINKER_ADMINS")
        oauth = bool(os.environ.get("SPACE_ID") and os.environ.get("OAUTH_CLIENT_ID")) and not users
        if admins_env is not None:
            admins = {a.strip() for a in admins_env.split(",") if a.strip()}
        elif users:
            admins = {next(iter(users))}
        elif oauth and os.environ.get("SPACE_AUTHOR_NAME"):
            admins = {os.environ["SPACE_AUTHOR_NAME"]}
        else:
            admins = set()
        return cls(
            db_url=os.environ.get("AUDIO_THINKER_DB") or None,
            model_path=os.environ.get("AUDIO_THINKER_MODEL") or None,
            users=users,
            admins=admins,
            oauth=oauth,
            runs_root=Path(os.environ.get("AUDIO_THINKER_RUNS", "runs")),
            reward_model_dir=Path(os.environ.get("AUDIO_THINKER_REWARD_MODEL", "annotations/reward_model")),
            exports_dir=Path(os.environ.get("AUDIO_THINKER_EXPORTS", "annotations/exports")),
        )

    @property
    def auth_required(self) -> bool:
        return bool(self.users) or self.oauth


# ---------------------------------------------------------------------------------------------- state


@dataclass
class PrivateFile:
    """A delivered export: who may fetch it, the folder it lives in, and when it is deleted."""

    owner: str
    folder: Path
    expires: float


@dataclass
class StudioState:
    """What the studio keeps between requests (one instance, :data:`STATE`; :func:`configure` resets it)."""

    settings: Settings | None = None
    store: Store | None = None
    lm: AudioLM | None = None
    """The model loaded from the settings' model path (``settings.lm`` wins when given)."""
    examples: dict[str, dict] | None = None
    """The built-in synth-aqa examples by the SHA-256 of their clip (written once per process)."""
    pair_runner: Callable[..., Any] | None = None
    """Runs a comparison's two streams (``spaces.GPU``-decorated on ZeroGPU); None: run them plainly."""
    on_gpu: bool = False
    judges: dict[str, Any] = field(default_factory=dict)
    """The learned judge by reward-model folder and mtime (None: that folder cannot be loaded)."""
    judge_scores: dict[int, float] = field(default_factory=dict)
    """The learned judge's P(consistent) by generation id."""
    judge_problem: str | None = None
    """Why the learned judge cannot rank the rating queue (shown to people), or None."""
    private_files: dict[str, PrivateFile] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)
    """Guards settings, store and examples."""
    model_lock: threading.Lock = field(default_factory=threading.Lock)
    private_lock: threading.Lock = field(default_factory=threading.Lock)
    train_lock: threading.Lock = field(default_factory=threading.Lock)


STATE = StudioState()


def settings() -> Settings:
    """The current settings (from the environment unless :func:`configure` was called)."""
    with STATE.lock:
        if STATE.settings is None:
            STATE.settings = Settings.from_env()
        return STATE.settings


def configure(base: Settings | None = None, **overrides: Any) -> Settings:
    """Set the studio's settings (environment defaults, then ``overrides``); resets the store and model."""
    for key in overrides:
        if key not in Settings.__dataclass_fields__:
            raise TypeError(f"unknown setting {key!r}")
    new = dataclasses.replace(base or Settings.from_env(), **overrides)
    with STATE.lock:
        if STATE.store is not None:
            STATE.store.close()
        STATE.settings, STATE.store, STATE.examples, STATE.lm = new, None, None, None
    return new


# ---------------------------------------------------------------------------------------------- store


def store() -> Store:
    """The ratings store (opened on first use; WAL, busy timeout and migrations by ``Store``)."""
    with STATE.lock:
        if STATE.store is None:
            try:
                STATE.store = Store(settings().db_url)
            except (StoreError, OSError) as err:
                raise StoreUnavailable(_db_message(err)) from err
        return STATE.store


def db_label() -> str:
    """The database in use, for display (password hidden)."""
    return display_url(settings().db_url)


_URL_PASSWORD_RE = re.compile(r"(\b[A-Za-z][\w+.-]*://[^:/@\s]*:)[^@\s]+@")


def mask_passwords(message: str) -> str:
    """``message`` with the password of any URL in it (``scheme://user:password@host``) shown as ``***``."""
    return _URL_PASSWORD_RE.sub(r"\1***@", message)


def _db_message(err: Exception) -> str:
    reason = mask_passwords(first_line(err))[:200]
    return f"The ratings database is unavailable ({reason}). Nothing was saved; please try again."


def db(fn: Callable[[], Any]) -> Any:
    """Run a store call, turning database failures into :class:`StoreUnavailable` and bad values into
    :class:`UserError`."""
    try:
        return fn()
    except DatabaseError as err:
        raise StoreUnavailable(_db_message(err)) from err
    except (NotFoundError, AccessDeniedError):
        raise
    except AudioError as err:
        raise UserError(f"That audio file cannot be used: {err}") from err
    except ValueError as err:
        raise UserError(str(err)) from err
