"""The ratings store: one SQLAlchemy schema shared by the trainer, the reward model and the studio.

Schema (alembic head ``0004``; ``audio_thinker/migrations/``)::

    clips        hash (SHA-256 hex of the file bytes, primary key), ext, original_name, duration_s,
                 sample_rate, channels, size_bytes, created_at
    items        id, question, choices (JSON list), answer (gold, nullable), source ("synth-aqa", "upload",
                 "mmau", ...), external_id, clip_hash -> clips, task, difficulty, meta (JSON, e.g. the
                 synth ground-truth "events"), created_at, owner_id -> annotators (who uploaded; None for
                 imported or shipped material), shared (in the common queue; an owner's upload is private
                 until an admin shares it); unique (source, external_id)
    generations  id, item_id -> items, model, mode (think | no-think | adaptive: the prompt), raw_text,
                 think, answer (parsed), completion_tokens, latency_s, run, step, created_at
    annotators   id, name (unique), created_at
    ratings      id, generation_id -> generations, annotator_id -> annotators, consistent (nullable while
                 draft), quality (0..1 in steps of 0.1), flawed_start, flawed_end, comment, lead_time_s,
                 status (draft | submitted | discarded | skipped), source (human | oracle | judge),
                 created_at, updated_at; unique (generation_id, annotator_id)
    votes        id, generation_a_id, generation_b_id -> generations (same item), swapped, choice
                 (A | B | tie | both_bad), annotator_id -> annotators, created_at, updated_at;
                 unique (generation_a_id, generation_b_id, annotator_id), and one vote per annotator for
                 a pair in either order (re-voting updates it)
    comparisons  id, generation_a_id, generation_b_id -> generations, annotator_id -> annotators,
                 created_at: the pairs shown side by side to an annotator (what they may vote on);
                 unique (generation_a_id, generation_b_id, annotator_id)

Conventions:

* A clip's bytes are stored unchanged at ``<media_dir>/<hash[:2]>/<hash>.<ext>`` (``ext`` from the decoded
  format: wav, flac, ogg, mp3, ...): names given by users are kept as metadata only, never as paths.
* The flawed step of a trace is a span of character offsets ``[flawed_start, flawed_end)`` (Python ``str``
  indices, end exclusive) into the generation's ``think`` text.
* A vote's ``choice`` names the stored generation (``A`` is ``generation_a``), never the screen side;
  ``swapped`` records that A was shown on the right.
* One rating per (generation, annotator): rating again updates that row (the new values replace the old).
* Text limits (characters) are the ``MAX_*`` constants below; a value over a limit, or any invalid value,
  raises :class:`ValueError` before anything is written. Unknown ids raise :class:`NotFoundError`.

The database URL is the ``url`` argument, else ``$AUDIO_THINKER_DB``, else ``sqlite:///annotations/ratings.db``
(relative to the working directory). Any SQLAlchemy URL works; queries are dialect-neutral ORM. On SQLite
every connection gets WAL journaling, foreign keys and a 30 s busy timeout, and write transactions start
with ``BEGIN IMMEDIATE`` so that concurrent writers queue instead of failing. Opening a :class:`Store`
upgrades the database to the newest migration, keeping its rows.
"""

from __future__ import annotations

import io
import json
import math
import numbers
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    event,
    exists,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    aliased,
    mapped_column,
    relationship,
    sessionmaker,
)

from audio_thinker.audio import AudioError, content_hash, load_audio
from audio_thinker.rewards import quantize_quality

__all__ = [
    "DEFAULT_URL",
    "MAX_ANSWER_CHARS",
    "MAX_CHOICES",
    "MAX_CHOICE_CHARS",
    "MAX_COMMENT_CHARS",
    "MAX_META_BYTES",
    "MAX_NAME_CHARS",
    "MAX_QUESTION_CHARS",
    "MAX_RAW_TEXT_CHARS",
    "AccessDeniedError",
    "Annotator",
    "Base",
    "Clip",
    "Comparison",
    "Generation",
    "Item",
    "NotFoundError",
    "Rating",
    "RatingRecord",
    "Store",
    "Vote",
    "VoteRecord",
    "alembic_config",
    "make_engine",
    "migrate",
    "snap_quality",
]

DEFAULT_URL = "sqlite:///annotations/ratings.db"
"""Database used when neither an explicit URL nor ``$AUDIO_THINKER_DB`` is given."""
DB_ENV = "AUDIO_THINKER_DB"
MEDIA_ENV = "AUDIO_THINKER_MEDIA"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000

MAX_QUESTION_CHARS = 1000
MAX_CHOICES = 10
MAX_CHOICE_CHARS = 200
MAX_ANSWER_CHARS = 200
"""Gold answer of an item (a choice)."""
MAX_RAW_TEXT_CHARS = 20_000
"""A generation's raw text; its parsed think and answer are bounded by the same number."""
MAX_COMMENT_CHARS = 2000
MAX_NAME_CHARS = 64
"""Annotator names."""
MAX_MODEL_CHARS = 500
"""Model name or path of a generation."""
MAX_LABEL_CHARS = 200
"""external_id and run."""
MAX_SOURCE_CHARS = 32
MAX_TASK_CHARS = 64
MAX_DIFFICULTY_CHARS = 32
MAX_ORIGINAL_NAME_CHARS = 255
"""Longer original file names are truncated (they are display metadata only)."""
MAX_META_BYTES = 64 * 1024
"""An item's meta, serialised as JSON."""
MAX_LEAD_TIME_S = 24 * 3600.0

MODES = ("think", "no-think", "adaptive")
STATUSES = ("draft", "submitted", "discarded", "skipped")
RATING_SOURCES = ("human", "oracle", "judge")
VOTE_CHOICES = ("A", "B", "tie", "both_bad")
STUDIO_RUN = "studio"
"""``generations.run`` of answers generated in the studio's Ask & compare (not imported)."""

_HASH_RE = re.compile(r"[0-9a-f]{64}")
_SOURCE_RE = re.compile(r"[a-z0-9][a-z0-9._-]*")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
_EXT_BY_FORMAT = {
    "WAV": "wav", "WAVEX": "wav", "RF64": "wav", "W64": "w64", "FLAC": "flac", "OGG": "ogg",
    "MP3": "mp3", "AIFF": "aiff", "AU": "au", "CAF": "caf",
}  # fmt: skip


class NotFoundError(LookupError):
    """A clip, item, generation, annotator or rating id that is not in the store."""


class AccessDeniedError(PermissionError):
    """An annotator asked for a rating that belongs to another annotator."""


def _now() -> datetime:
    return datetime.now(timezone.utc)  # noqa: UP017 (py310 target)


class UTCDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that always reads back aware UTC datetimes (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(timezone.utc)  # noqa: UP017
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)  # noqa: UP017
        return value


# ----------------------------------------------------------------------------------------------- schema


class Base(DeclarativeBase):
    """Declarative base; constraint names follow one convention so migrations can name them."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_name)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON, datetime: UTCDateTime, float: Float}

    def __repr__(self) -> str:
        keys = ", ".join(f"{c.key}={getattr(self, c.key, None)!r}" for c in self.__mapper__.primary_key)
        return f"<{type(self).__name__} {keys}>"


class Clip(Base):
    """An audio file, keyed by the SHA-256 of its bytes."""

    __tablename__ = "clips"
    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    ext: Mapped[str] = mapped_column(String(8))
    original_name: Mapped[str | None] = mapped_column(String(MAX_ORIGINAL_NAME_CHARS))
    duration_s: Mapped[float]
    sample_rate: Mapped[int]
    channels: Mapped[int]
    size_bytes: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=_now)

    @property
    def filename(self) -> str:
        """The media file's name: ``<hash>.<ext>``."""
        return f"{self.hash}.{self.ext}"


class Item(Base):
    """A question about a clip (or about nothing, for text-only items)."""

    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("source", "external_id", name="uq_items_source_external_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    question: Mapped[str] = mapped_column(String(MAX_QUESTION_CHARS))
    choices: Mapped[list[str]]
    answer: Mapped[str | None] = mapped_column(String(MAX_ANSWER_CHARS))
    source: Mapped[str] = mapped_column(String(MAX_SOURCE_CHARS))
    external_id: Mapped[str | None] = mapped_column(String(MAX_LABEL_CHARS))
    clip_hash: Mapped[str | None] = mapped_column(ForeignKey("clips.hash"), index=True)
    task: Mapped[str | None] = mapped_column(String(MAX_TASK_CHARS))
    difficulty: Mapped[str | None] = mapped_column(String(MAX_DIFFICULTY_CHARS))
    meta: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = mapped_column(default=_now)
    # 0004: who uploaded the clip and asked (None: imported or shipped material), and whether the item is in
    # the common queue (an owner's upload is private to them until an admin shares it)
    owner_id: Mapped[int | None] = mapped_column(index=True)  # an annotators.id (no FK: see 0004)
    shared: Mapped[bool] = mapped_column(default=True, server_default=true())

    clip: Mapped[Clip | None] = relationship(lazy="joined")


class Generation(Base):
    """One model output for an item (from the studio or from a training run)."""

    __tablename__ = "generations"
    __table_args__ = (CheckConstraint("mode IN ('think', 'no-think', 'adaptive')", name="mode"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    model: Mapped[str] = mapped_column(String(MAX_MODEL_CHARS))
    mode: Mapped[str] = mapped_column(String(16))
    raw_text: Mapped[str] = mapped_column(Text)
    think: Mapped[str | None] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text)
    completion_tokens: Mapped[int | None]
    latency_s: Mapped[float | None]
    run: Mapped[str | None] = mapped_column(String(MAX_LABEL_CHARS))
    step: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(default=_now)

    item: Mapped[Item] = relationship(lazy="joined")


class Annotator(Base):
    """A person (or a machine rater such as ``oracle``) who rates and votes."""

    __tablename__ = "annotators"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME_CHARS), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=_now)


class Rating(Base):
    """One annotator's judgement of one generation's reasoning trace."""

    __tablename__ = "ratings"
    __table_args__ = (
        UniqueConstraint("generation_id", "annotator_id", name="uq_ratings_generation_annotator"),
        CheckConstraint("status IN ('draft', 'submitted', 'discarded', 'skipped')", name="status"),
        CheckConstraint("quality IS NULL OR (quality >= 0 AND quality <= 1)", name="quality"),
        CheckConstraint(
            "(flawed_start IS NULL AND flawed_end IS NULL) OR "
            "(flawed_start >= 0 AND flawed_end > flawed_start)",
            name="flawed_span",
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    generation_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), index=True)
    consistent: Mapped[bool | None]
    quality: Mapped[float | None]
    flawed_start: Mapped[int | None]
    flawed_end: Mapped[int | None]
    comment: Mapped[str | None] = mapped_column(Text)
    lead_time_s: Mapped[float | None]  # added in 0002
    status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16), default="human", server_default="human")  # 0002
    created_at: Mapped[datetime] = mapped_column(default=_now)
    updated_at: Mapped[datetime] = mapped_column(default=_now)

    annotator: Mapped[Annotator] = relationship(lazy="joined")
    generation: Mapped[Generation] = relationship()

    @property
    def flawed_span(self) -> tuple[int, int] | None:
        """``(start, end)`` character offsets into the generation's think text, or None."""
        if self.flawed_start is None or self.flawed_end is None:
            return None
        return (self.flawed_start, self.flawed_end)


class Vote(Base):
    """A pairwise preference between two generations for the same item (added in 0002).

    One vote per (comparison, annotator) since 0003: voting again on the same two generations, named in
    either order, updates the annotator's vote (``updated_at``)."""

    __tablename__ = "votes"
    __table_args__ = (
        CheckConstraint("choice IN ('A', 'B', 'tie', 'both_bad')", name="choice"),
        Index("uq_votes_pair_annotator", "generation_a_id", "generation_b_id", "annotator_id", unique=True),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    generation_a_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"))
    generation_b_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"))
    swapped: Mapped[bool]
    choice: Mapped[str] = mapped_column(String(8))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=_now)
    updated_at: Mapped[datetime | None] = mapped_column(default=_now)  # 0003

    annotator: Mapped[Annotator] = relationship(lazy="joined")


class Comparison(Base):
    """Two generations of one item shown side by side to an annotator (added in 0003): what they may vote on."""

    __tablename__ = "comparisons"
    __table_args__ = (
        Index(
            "uq_comparisons_pair_annotator", "generation_a_id", "generation_b_id", "annotator_id", unique=True
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    generation_a_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"))
    generation_b_id: Mapped[int] = mapped_column(ForeignKey("generations.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"))
    created_at: Mapped[datetime] = mapped_column(default=_now)


# ------------------------------------------------------------------------------------- records for readers


@dataclass(frozen=True)
class RatingRecord:
    """A rating joined with its generation and item (what the reward model trains on)."""

    rating_id: int
    annotator: str
    source: str
    status: str
    consistent: bool | None
    quality: float | None
    flawed_span: tuple[int, int] | None
    comment: str | None
    lead_time_s: float | None
    updated_at: datetime
    generation_id: int
    model: str
    mode: str
    raw_text: str
    think: str | None
    answer: str | None
    run: str | None
    step: int | None
    item_id: int
    question: str
    choices: list[str]
    gold: str | None
    item_source: str
    task: str | None
    difficulty: str | None
    clip_hash: str | None
    meta: dict[str, Any] | None


@dataclass(frozen=True)
class VoteRecord:
    """A pairwise vote joined with both generations and their item."""

    vote_id: int
    annotator: str
    choice: str
    swapped: bool
    created_at: datetime
    item_id: int
    question: str
    choices: list[str]
    gold: str | None
    clip_hash: str | None
    generation_a_id: int
    text_a: str
    generation_b_id: int
    text_b: str

    @property
    def preferred(self) -> str | None:
        """``"A"`` or ``"B"`` when one side won, else None (tie, both bad)."""
        return self.choice if self.choice in ("A", "B") else None


# ----------------------------------------------------------------------------------- engine and migrations


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    """Per-connection SQLite settings; SQLAlchemy (not the driver) emits BEGIN (see ``_sqlite_on_begin``)."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")  # first: WAL switch may wait
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    """Writers take the write lock up front, so a read-then-write never fails with SQLITE_BUSY."""
    immediate = conn.get_execution_options().get("audio_thinker_write", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _sqlite_file(url: str) -> Path | None:
    """The database file of a plain SQLite file URL, else None (other databases, memory, ``uri=true``)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return None if parsed.query.get("uri") else Path(parsed.database).expanduser()


def database_url(value: str | None = None) -> str:
    """The SQLAlchemy URL of ``value`` (else ``$AUDIO_THINKER_DB``, else :data:`DEFAULT_URL`): a URL as given,
    or a plain file path as a SQLite URL."""
    value = value or os.environ.get(DB_ENV) or DEFAULT_URL
    return value if "://" in value else f"sqlite:///{Path(value).expanduser().resolve()}"


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` (creating a SQLite file's folder); SQLite engines get the listeners
    described in the module docstring."""
    from sqlalchemy.exc import ArgumentError

    try:
        db_file = _sqlite_file(url)
        engine = create_engine(url)
    except (ArgumentError, ImportError) as err:  # a malformed URL, an unknown dialect, a missing driver
        raise ValueError(f"cannot use database URL {url!r}: {str(err).splitlines()[0]}") from None
    if db_file is not None:
        db_file.parent.mkdir(parents=True, exist_ok=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def alembic_config(url: str | None = None) -> Any:
    """An ``alembic.config.Config`` for the package's migrations (no ``alembic.ini`` needed)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _upgrade(engine: Engine, revision: str = "head") -> None:
    """Upgrade the database behind ``engine`` to ``revision`` inside one write transaction."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    cfg = alembic_config()
    script = ScriptDirectory.from_config(cfg)
    target = script.get_current_head() if revision == "head" else revision
    known = {rev.revision for rev in script.walk_revisions()}
    with engine.execution_options(audio_thinker_write=True).begin() as conn:
        if conn.dialect.name == "postgresql":  # serialise concurrent first opens (SQLite: BEGIN IMMEDIATE)
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(2508080390)")
        current = MigrationContext.configure(conn).get_current_revision()
        if current is not None and current not in known:
            raise RuntimeError(
                f"the database is at migration {current!r}, which this version of audio_thinker does not "
                f"know (newest known: {script.get_current_head()!r}); upgrade the code"
            )
        if current == target:
            return
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` (``"head"``, ``"0001"``, ...)."""
    engine = make_engine(url)
    try:
        _upgrade(engine, revision)
    finally:
        engine.dispose()


# ----------------------------------------------------------------------------------------------- validation


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


# ------------------------------------------------------------------------------------------------- the store


class Store:
    """The ratings store. Thread-safe: each call uses its own short session.

    ``Store(url=None, media_dir=None)``: ``url`` defaults to ``$AUDIO_THINKER_DB`` then :data:`DEFAULT_URL`;
    ``media_dir`` to ``$AUDIO_THINKER_MEDIA``, then ``media/`` beside a SQLite file, else
    ``annotations/media``. The database is upgraded to the newest migration unless ``upgrade=False``.
    """

    def __init__(
        self, url: str | None = None, media_dir: str | os.PathLike[str] | None = None, *, upgrade: bool = True
    ) -> None:
        self.url: str = database_url(url)
        self.engine: Engine = make_engine(self.url)
        self._write_engine = self.engine.execution_options(audio_thinker_write=True)
        self._reader = sessionmaker(bind=self.engine, expire_on_commit=False)
        self._writer = sessionmaker(bind=self._write_engine, expire_on_commit=False)
        self._write_lock: AbstractContextManager[Any] = (
            threading.RLock() if self.engine.dialect.name == "sqlite" else nullcontext()
        )
        self.media_dir: Path = Path(media_dir or os.environ.get(MEDIA_ENV) or self._default_media_dir())
        if upgrade:
            _upgrade(self.engine)

    def _default_media_dir(self) -> Path:
        db_file = _sqlite_file(self.url)
        return db_file.parent / "media" if db_file is not None else Path("annotations") / "media"

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r}, media_dir={str(self.media_dir)!r})"

    def close(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A session inside one transaction, committed on success and rolled back on error.

        ``write=True`` takes SQLite's write lock at BEGIN; keep such transactions short.
        Objects stay usable after the block (``expire_on_commit=False``).
        """
        if not write:
            with self._reader() as session, session.begin():
                yield session
            return
        # On SQLite, threads of one process queue on a lock here (woken at once) rather than in SQLite's
        # busy handler (which polls with growing sleeps); other processes still wait in the busy handler.
        with self._write_lock, self._writer() as session, session.begin():
            yield session

    def _write(self, work: Callable[[Session], Any], attempts: int = 4) -> Any:
        """Run ``work`` in a write transaction, retrying when a concurrent insert wins a unique key."""
        for attempt in range(attempts):
            try:
                with self.session(write=True) as session:
                    return work(session)
            except IntegrityError:
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    # ---------------------------------------------------------------------------------------------- clips

    def clip_path(self, clip_hash: str | Clip) -> Path:
        """Where a stored clip's bytes live: ``<media_dir>/<hash[:2]>/<hash>.<ext>``."""
        if isinstance(clip_hash, Clip):
            return self.media_dir / clip_hash.hash[:2] / clip_hash.filename
        digest = _clip_hash(clip_hash)
        with self.session() as session:
            clip = session.get(Clip, digest)
        if clip is None:
            raise NotFoundError(f"no clip with hash {digest}")
        return self.media_dir / digest[:2] / clip.filename

    def add_clip(self, source: bytes | str | os.PathLike[str], original_name: str | None = None) -> Clip:
        """Validate audio (bytes or a path) with ``load_audio`` and store it once, keyed by its hash.

        Bad audio raises :class:`~audio_thinker.audio.AudioError` and stores nothing. Adding the same bytes
        again returns the existing clip. ``original_name`` defaults to a path source's file name.
        """
        import soundfile as sf

        data = _read_source(source)
        if original_name is None and isinstance(source, (str, os.PathLike)):
            original_name = os.fspath(source)
        name = _original_name(original_name)
        samples = load_audio(data)  # raises AudioError; nothing is written before this passes
        try:
            with sf.SoundFile(io.BytesIO(data)) as snd:
                sample_rate, channels, fmt = int(snd.samplerate), int(snd.channels), str(snd.format)
        except Exception as err:  # load_audio accepted it, so this is unexpected
            raise AudioError(f"{name or '<bytes>'}: cannot read the audio header ({err})") from err
        digest = content_hash(data)
        clip = Clip(
            hash=digest,
            ext=_EXT_BY_FORMAT.get(fmt, "audio"),
            original_name=name,
            duration_s=samples.size / 16000.0,
            sample_rate=sample_rate,
            channels=channels,
            size_bytes=len(data),
        )

        # The file first (content-addressed, so a concurrent or repeated add writes the same bytes), then
        # the row; the write lock is not held while the bytes are written.
        self._write_media(clip, data)

        def work(session: Session) -> Clip:
            existing = session.get(Clip, digest)
            if existing is not None:
                return existing
            session.add(clip)
            session.flush()
            return clip

        return self._write(work)

    def _write_media(self, clip: Clip, data: bytes) -> None:
        """Write ``data`` at the clip's path atomically (unless an identical-size file is there)."""
        path = self.clip_path(clip)
        if path.is_file() and path.stat().st_size == len(data):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{clip.hash}.{uuid.uuid4().hex}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    # ---------------------------------------------------------------------------------------------- items

    def add_item(
        self,
        question: str,
        choices: Iterable[str] = (),
        *,
        answer: str | None = None,
        source: str = "upload",
        external_id: str | None = None,
        clip: str | Clip | None = None,
        meta: dict[str, Any] | None = None,
        task: str | None = None,
        difficulty: str | None = None,
        owner: str | None = None,
        shared: bool | None = None,
    ) -> Item:
        """Add a question (about ``clip``, a hash). Idempotent for a given (source, external_id):
        the existing item is returned unchanged.

        ``owner``: the annotator who uploaded the clip and asked; an owned item is private to its owner
        (``shared`` False) unless ``shared=True``; items without an owner are shared.
        """
        question_ = _text(question, "question", MAX_QUESTION_CHARS)
        if isinstance(choices, str):
            raise ValueError("choices must be a list of strings, not one string")
        choice_list = [_text(c, "choice", MAX_CHOICE_CHARS) for c in choices]
        if len(choice_list) > MAX_CHOICES:
            raise ValueError(f"{len(choice_list)} choices given; the limit is {MAX_CHOICES}")
        answer_ = _text(answer, "answer", MAX_ANSWER_CHARS, optional=True)
        source_ = _source_slug(source)
        external_id_ = _text(external_id, "external_id", MAX_LABEL_CHARS, optional=True)
        clip_hash = _clip_hash(clip) if clip is not None else None
        task_ = _text(task, "task", MAX_TASK_CHARS, optional=True)
        difficulty_ = _text(difficulty, "difficulty", MAX_DIFFICULTY_CHARS, optional=True)
        owner_ = _annotator_name(owner) if owner is not None else None
        shared_ = (owner_ is None) if shared is None else bool(shared)
        if meta is not None:
            if not isinstance(meta, dict):
                raise ValueError(f"meta must be a dict, got {type(meta).__name__}")
            try:
                size = len(json.dumps(meta, allow_nan=False).encode())
            except (TypeError, ValueError) as err:
                raise ValueError(f"meta must be JSON-serialisable without NaN/inf: {err}") from err
            if size > MAX_META_BYTES:
                raise ValueError(f"meta is {size} bytes as JSON; the limit is {MAX_META_BYTES}")

        def work(session: Session) -> Item:
            if external_id_ is not None:
                existing = session.scalar(
                    select(Item).where(Item.source == source_, Item.external_id == external_id_)
                )
                if existing is not None:
                    return existing
            if clip_hash is not None and session.get(Clip, clip_hash) is None:
                raise NotFoundError(f"no clip with hash {clip_hash}")
            owner_row = self._annotator(session, owner_, create=True) if owner_ is not None else None
            item = Item(
                question=question_, choices=choice_list, answer=answer_, source=source_,
                external_id=external_id_, clip_hash=clip_hash, task=task_, difficulty=difficulty_, meta=meta,
                owner_id=owner_row.id if owner_row is not None else None, shared=shared_,
            )  # fmt: skip
            session.add(item)
            session.flush()
            session.refresh(item)  # loads the clip relationship
            return item

        return self._write(work)

    def share_item(self, item_id: int, shared: bool = True) -> Item:
        """Put an item into the common queue (``shared=True``) or take it back to its owner alone."""

        def work(session: Session) -> Item:
            item = session.get(Item, item_id)
            if item is None:
                raise NotFoundError(f"no item with id {item_id}")
            item.shared = bool(shared)
            session.flush()
            return item

        return self._write(work)

    @staticmethod
    def _visible(name: str) -> Any:
        """SQL condition on :class:`Item`: shared, or owned by the annotator called ``name``."""
        owner = select(Annotator.id).where(Annotator.name == name).scalar_subquery()
        return or_(Item.shared == true(), Item.owner_id == owner)

    def visible_generation(self, generation_id: int, annotator: str | Annotator) -> Generation | None:
        """The generation (item and clip loaded) if ``annotator`` may see and rate it (its item is shared or
        theirs), else None, whether or not it exists."""
        name = _annotator_name(annotator.name if isinstance(annotator, Annotator) else annotator)
        query = (
            select(Generation)
            .join(Item, Generation.item_id == Item.id)
            .where(Generation.id == generation_id, self._visible(name))
        )
        with self.session() as session:
            return session.scalar(query)

    def can_see(self, generation_id: int, annotator: str | Annotator) -> bool:
        """Whether ``annotator`` may see (and rate) a generation: its item is shared or theirs."""
        return self.visible_generation(generation_id, annotator) is not None

    def get_item(self, item_id: int) -> Item:
        """An item (with its clip loaded)."""
        with self.session() as session:
            item = session.get(Item, item_id)
        if item is None:
            raise NotFoundError(f"no item with id {item_id}")
        return item

    # ---------------------------------------------------------------------------------------- generations

    def add_generation(
        self,
        item_id: int,
        model: str,
        mode: str,
        raw_text: str,
        *,
        think: str | None = None,
        answer: str | None = None,
        completion_tokens: int | None = None,
        latency_s: float | None = None,
        run: str | None = None,
        step: int | None = None,
        reuse: bool = False,
    ) -> Generation:
        """Store a model output. ``think``/``answer`` default to ``rewards.parse_completion(raw_text)``.

        With ``reuse``, an identical output already stored (same item, model, mode, raw text and run) is
        returned instead of a copy (the studio asking the same question about the same clip again)."""
        from audio_thinker.rewards import parse_completion

        model_ = _text(model, "model", MAX_MODEL_CHARS)
        mode_ = _choice(mode, "mode", MODES)
        raw = _text(raw_text, "raw_text", MAX_RAW_TEXT_CHARS, strip=False)
        if think is None and answer is None:
            parsed = parse_completion(raw)  # type: ignore[arg-type]
            think, answer = parsed.think, parsed.answer
        think_ = _text(think, "think", MAX_RAW_TEXT_CHARS, optional=True, strip=False)
        answer_ = _text(answer, "answer", MAX_RAW_TEXT_CHARS, optional=True, strip=False)
        tokens = _number(completion_tokens, "completion_tokens", integer=True)
        latency = _number(latency_s, "latency_s")
        run_ = _text(run, "run", MAX_LABEL_CHARS, optional=True)
        step_ = _number(step, "step", integer=True)

        def work(session: Session) -> Generation:
            if session.get(Item, item_id) is None:
                raise NotFoundError(f"no item with id {item_id}")
            if reuse:
                existing = session.scalar(
                    select(Generation).where(
                        Generation.item_id == item_id, Generation.model == model_, Generation.mode == mode_,
                        Generation.raw_text == raw, Generation.run == run_ if run_ is not None else Generation.run.is_(None),
                    ).order_by(Generation.id).limit(1)
                )  # fmt: skip
                if existing is not None:
                    return existing
            generation = Generation(
                item_id=item_id, model=model_, mode=mode_, raw_text=raw, think=think_, answer=answer_,
                completion_tokens=tokens, latency_s=latency, run=run_, step=step_,
            )  # fmt: skip
            session.add(generation)
            session.flush()
            session.refresh(generation)
            return generation

        return self._write(work)

    def get_generation(self, generation_id: int) -> Generation:
        """A generation (with its item and clip loaded)."""
        with self.session() as session:
            generation = session.get(Generation, generation_id)
        if generation is None:
            raise NotFoundError(f"no generation with id {generation_id}")
        return generation

    # ----------------------------------------------------------------------------------------- annotators

    @staticmethod
    def _annotator(session: Session, name: str, *, create: bool) -> Annotator | None:
        annotator = session.scalar(select(Annotator).where(Annotator.name == name))
        if annotator is None and create:
            annotator = Annotator(name=name)
            session.add(annotator)
            session.flush()
        return annotator

    def get_or_create_annotator(self, name: str) -> Annotator:
        """The annotator called ``name`` (1-64 characters, stripped), created on first use."""
        name_ = _annotator_name(name)
        return self._write(lambda session: self._annotator(session, name_, create=True))

    # -------------------------------------------------------------------------------------------- ratings

    def rate(
        self,
        generation_id: int,
        annotator: str | Annotator,
        *,
        consistent: bool | None = None,
        quality: float | None = None,
        flawed_span: tuple[int, int] | None = None,
        comment: str | None = None,
        lead_time: float | None = None,
        status: str = "submitted",
        source: str = "human",
    ) -> Rating:
        """Create or update (upsert) ``annotator``'s one rating of a generation; returns the row.

        A submitted rating needs ``consistent`` and ``quality``; ``quality`` is snapped to tenths;
        ``flawed_span`` is ``(start, end)`` character offsets into the generation's think text;
        ``lead_time`` is the seconds the annotator spent. The annotator is created on first use.
        """
        name = _annotator_name(annotator.name if isinstance(annotator, Annotator) else annotator)
        status_ = _choice(status, "status", STATUSES)
        source_ = _choice(source, "source", RATING_SOURCES)
        if consistent is not None and not isinstance(consistent, bool):
            raise ValueError(f"consistent must be True, False or None, got {consistent!r}")
        quality_ = snap_quality(quality)
        if status_ == "submitted" and (consistent is None or quality_ is None):
            raise ValueError("a submitted rating needs both consistent and quality")
        comment_ = _text(comment, "comment", MAX_COMMENT_CHARS, optional=True)
        lead = _number(lead_time, "lead_time", maximum=MAX_LEAD_TIME_S)
        span: tuple[int, int] | None = None
        if flawed_span is not None:
            try:
                start, end = flawed_span
            except (TypeError, ValueError) as err:
                raise ValueError(f"flawed_span must be (start, end), got {flawed_span!r}") from err
            start_, end_ = (
                _number(start, "flawed_span start", integer=True),
                _number(end, "flawed_span end", integer=True),
            )
            if start_ is None or end_ is None or end_ <= start_:
                raise ValueError(f"flawed_span must satisfy 0 <= start < end, got {flawed_span!r}")
            span = (start_, end_)

        def work(session: Session) -> Rating:
            generation = session.get(Generation, generation_id)
            if generation is None:
                raise NotFoundError(f"no generation with id {generation_id}")
            if span is not None:
                if not generation.think:
                    raise ValueError("flawed_span given, but the generation has no think trace")
                if span[1] > len(generation.think):
                    raise ValueError(
                        f"flawed_span {span} runs past the think text ({len(generation.think)} characters)"
                    )
            ann = self._annotator(session, name, create=True)
            assert ann is not None
            rating = session.scalar(
                select(Rating).where(Rating.generation_id == generation_id, Rating.annotator_id == ann.id)
            )
            now = _now()
            if rating is None:
                rating = Rating(generation_id=generation_id, annotator=ann, created_at=now)
                session.add(rating)
            rating.consistent = consistent
            rating.quality = quality_
            rating.flawed_start, rating.flawed_end = span if span is not None else (None, None)
            rating.comment = comment_
            rating.lead_time_s = lead
            rating.status = status_
            rating.source = source_
            rating.updated_at = now
            session.flush()
            return rating

        return self._write(work)

    def delete_rating(self, generation_id: int, annotator: str | Annotator) -> bool:
        """Delete ``annotator``'s own rating of a generation (undoing a skip or discard that replaced no
        earlier rating); True when there was one."""
        name = _annotator_name(annotator.name if isinstance(annotator, Annotator) else annotator)

        def work(session: Session) -> bool:
            rating = session.scalar(
                select(Rating).join(Rating.annotator).where(
                    Rating.generation_id == generation_id, Annotator.name == name
                )
            )  # fmt: skip
            if rating is None:
                return False
            session.delete(rating)
            return True

        return self._write(work)

    def get_rating(self, rating_id: int, annotator: str | Annotator) -> Rating:
        """A rating by id, only for the annotator who owns it (else :class:`AccessDeniedError`)."""
        name = _annotator_name(annotator.name if isinstance(annotator, Annotator) else annotator)
        with self.session() as session:
            rating = session.get(Rating, rating_id)
        if rating is None:
            raise NotFoundError(f"no rating with id {rating_id}")
        if rating.annotator.name != name:
            raise AccessDeniedError(f"rating {rating_id} belongs to another annotator")
        return rating

    def ratings_for(self, annotator: str | Annotator, *, status: str | None = None) -> list[Rating]:
        """The annotator's own ratings (optionally of one status), oldest first."""
        name = _annotator_name(annotator.name if isinstance(annotator, Annotator) else annotator)
        query = select(Rating).join(Rating.annotator).where(Annotator.name == name).order_by(Rating.id)
        if status is not None:
            query = query.where(Rating.status == _choice(status, "status", STATUSES))
        with self.session() as session:
            return list(session.scalars(query))

    def ratings_with_questions(self, annotator: str | Annotator) -> list[tuple[Rating, str]]:
        """The annotator's own ratings with their item's question, most recently changed first."""
        name = _annotator_name(annotator.name if isinstance(annotator, Annotator) else annotator)
        query = (
            select(Rating, Item.question)
            .join(Generation, Rating.generation_id == Generation.id)
            .join(Item, Generation.item_id == Item.id)
            .join(Annotator, Rating.annotator_id == Annotator.id)
            .where(Annotator.name == name)
            .order_by(Rating.updated_at.desc(), Rating.id.desc())
        )
        with self.session() as session:
            return [(rating, question) for rating, question in session.execute(query).all()]

    def _queue_conditions(self, name: str) -> list[Any]:
        """What puts a generation (joined with its item) in ``name``'s queue: a think trace of an item they
        may see, the first of its identical copies (same item and raw text), none of which they rated (a
        draft does not count)."""
        twin = aliased(Generation)
        same = (twin.item_id == Generation.item_id, twin.raw_text == Generation.raw_text)
        earlier_twin = select(twin.id).where(*same, twin.id < Generation.id)
        rated_twin = (
            select(Rating.id)
            .join(twin, Rating.generation_id == twin.id)
            .join(Annotator, Rating.annotator_id == Annotator.id)
            .where(*same, Annotator.name == name, Rating.status != "draft")
        )
        return [
            Generation.think.is_not(None),
            self._visible(name),
            ~exists(earlier_twin),
            ~exists(rated_twin),
        ]

    def rating_queue_size(self, annotator: str | Annotator) -> int:
        """How many generations :meth:`rating_queue` holds for ``annotator`` (without a limit)."""
        name = _annotator_name(annotator.name if isinstance(annotator, Annotator) else annotator)
        query = (
            select(func.count())
            .select_from(Generation)
            .join(Item, Generation.item_id == Item.id)
            .where(*self._queue_conditions(name))
        )
        with self.session() as session:
            return int(session.scalar(query) or 0)

    def rating_queue(
        self,
        annotator: str | Annotator,
        limit: int = 20,
        *,
        score: Callable[[Generation], float] | None = None,
        pool: int = 500,
    ) -> list[Generation]:
        """Generations with a think trace that ``annotator`` has not yet rated (a draft does not count), of
        items they may see (shared, or their own uploads); identical copies of a trace (same item and raw
        text) count once: only the first is queued, and none once any of them is rated.

        Oldest first; with ``score`` (e.g. the reward model's uncertainty), the ``pool`` oldest candidates
        are ranked by descending score and the first ``limit`` returned. Items and clips are loaded.
        """
        name = _annotator_name(annotator.name if isinstance(annotator, Annotator) else annotator)
        for field, value in (("limit", limit), ("pool", pool)):
            if _number(value, field, integer=True) is None:
                raise ValueError(f"{field} must be a non-negative integer")
        query = (
            select(Generation)
            .join(Item, Generation.item_id == Item.id)
            .where(*self._queue_conditions(name))
            .order_by(Generation.id)
            .limit(max(pool, limit) if score is not None else limit)
        )
        with self.session() as session:
            candidates = list(session.scalars(query))
        if score is None:
            return candidates
        ranked = sorted(candidates, key=lambda g: -float(score(g)))  # stable: ties stay oldest first
        return ranked[:limit]

    def ratings(
        self,
        sources: Iterable[str] | None = None,
        *,
        statuses: Iterable[str] = ("submitted",),
        batch: int = 500,
    ) -> Iterator[RatingRecord]:
        """Ratings joined with their generation and item, by id, read in short batches."""
        source_list = [_choice(s, "source", RATING_SOURCES) for s in sources] if sources is not None else None
        status_list = [_choice(s, "status", STATUSES) for s in statuses]
        last = 0
        while True:
            query = (
                select(Rating, Generation, Item, Annotator.name)
                .join(Generation, Rating.generation_id == Generation.id)
                .join(Item, Generation.item_id == Item.id)
                .join(Annotator, Rating.annotator_id == Annotator.id)
                .where(Rating.id > last, Rating.status.in_(status_list))
                .order_by(Rating.id)
                .limit(batch)
            )
            if source_list is not None:
                query = query.where(Rating.source.in_(source_list))
            with self.session() as session:
                rows = session.execute(query).all()
            for rating, gen, item, name in rows:
                yield RatingRecord(
                    rating_id=rating.id, annotator=name, source=rating.source, status=rating.status,
                    consistent=rating.consistent, quality=rating.quality, flawed_span=rating.flawed_span,
                    comment=rating.comment, lead_time_s=rating.lead_time_s, updated_at=rating.updated_at,
                    generation_id=gen.id, model=gen.model, mode=gen.mode, raw_text=gen.raw_text,
                    think=gen.think, answer=gen.answer, run=gen.run, step=gen.step, item_id=item.id,
                    question=item.question, choices=list(item.choices), gold=item.answer,
                    item_source=item.source, task=item.task, difficulty=item.difficulty,
                    clip_hash=item.clip_hash, meta=item.meta,
                )  # fmt: skip
            if len(rows) < batch:
                return
            last = rows[-1][0].id

    # ---------------------------------------------------------------------------------------------- votes

    def show_comparison(self, generation_a: int, generation_b: int, annotator: str | Annotator) -> Comparison:
        """Record that ``annotator`` was shown generations A and B side by side (idempotent): the pairs an
        annotator may vote on with ``vote(..., shown_only=True)``."""
        name = _annotator_name(annotator.name if isinstance(annotator, Annotator) else annotator)
        if generation_a == generation_b:
            raise ValueError("a comparison shows two different generations")

        def work(session: Session) -> Comparison:
            for gid in (generation_a, generation_b):
                if session.get(Generation, gid) is None:
                    raise NotFoundError(f"no generation with id {gid}")
            ann = self._annotator(session, name, create=True)
            assert ann is not None
            found = session.scalar(
                select(Comparison).where(
                    Comparison.generation_a_id == generation_a, Comparison.generation_b_id == generation_b,
                    Comparison.annotator_id == ann.id,
                )
            )  # fmt: skip
            if found is not None:
                return found
            row = Comparison(generation_a_id=generation_a, generation_b_id=generation_b, annotator_id=ann.id)
            session.add(row)
            session.flush()
            return row

        return self._write(work)

    def vote(
        self,
        generation_a: int,
        generation_b: int,
        choice: str,
        annotator: str | Annotator,
        *,
        swapped: bool = False,
        shown_only: bool = False,
    ) -> Vote:
        """Record ``annotator``'s preference between two generations of the same item; returns the row.

        ``choice`` is ``A``/``B`` (the stored generation that won), ``tie`` or ``both_bad``; ``swapped``
        says that A was shown on the right-hand side. One vote per (comparison, annotator): voting again on
        the same two generations (in either order) updates that vote. With ``shown_only``, the annotator
        must have been shown the pair (:meth:`show_comparison`) unless both generations were imported
        (neither comes from the studio, run ``"studio"``); else :class:`AccessDeniedError`.
        """
        name = _annotator_name(annotator.name if isinstance(annotator, Annotator) else annotator)
        choice_ = _choice(choice, "choice", VOTE_CHOICES)
        if not isinstance(swapped, bool):
            raise ValueError(f"swapped must be True or False, got {swapped!r}")
        if generation_a == generation_b:
            raise ValueError("a vote compares two different generations")
        pair = {generation_a, generation_b}

        def work(session: Session) -> Vote:
            gen_a, gen_b = session.get(Generation, generation_a), session.get(Generation, generation_b)
            for gid, gen in ((generation_a, gen_a), (generation_b, gen_b)):
                if gen is None:
                    raise NotFoundError(f"no generation with id {gid}")
            assert gen_a is not None and gen_b is not None
            if gen_a.item_id != gen_b.item_id:
                raise ValueError(
                    f"generations {generation_a} and {generation_b} answer different items "
                    f"({gen_a.item_id} and {gen_b.item_id}); votes compare answers to the same item"
                )
            ann = self._annotator(session, name, create=True)
            assert ann is not None
            if shown_only and STUDIO_RUN in (gen_a.run, gen_b.run):
                shown = session.scalar(
                    select(Comparison.id).where(
                        Comparison.annotator_id == ann.id,
                        Comparison.generation_a_id.in_(pair), Comparison.generation_b_id.in_(pair),
                    ).limit(1)
                )  # fmt: skip
                if shown is None:
                    raise AccessDeniedError(
                        f"annotator {name!r} was not shown generations {generation_a} and {generation_b} "
                        "side by side"
                    )
            vote = session.scalar(
                select(Vote).where(
                    Vote.annotator_id == ann.id,
                    Vote.generation_a_id.in_(pair),
                    Vote.generation_b_id.in_(pair),
                )
            )
            now = _now()
            if vote is None:
                vote = Vote(
                    generation_a_id=generation_a, generation_b_id=generation_b, annotator=ann, created_at=now
                )
                session.add(vote)
            if vote.generation_a_id == generation_a:
                vote.choice, vote.swapped = choice_, swapped
            else:  # the stored vote names the pair the other way round: translate
                vote.choice = {"A": "B", "B": "A"}.get(choice_, choice_)
                vote.swapped = not swapped
            vote.updated_at = now
            session.flush()
            return vote

        return self._write(work)

    def votes(self, *, batch: int = 500) -> Iterator[VoteRecord]:
        """Votes joined with both generations and their item, by id, read in short batches."""
        gen_a, gen_b = aliased(Generation), aliased(Generation)
        last = 0
        while True:
            query = (
                select(Vote, gen_a.raw_text, gen_b.raw_text, Item, Annotator.name)
                .join(gen_a, Vote.generation_a_id == gen_a.id)
                .join(gen_b, Vote.generation_b_id == gen_b.id)
                .join(Item, gen_a.item_id == Item.id)
                .join(Annotator, Vote.annotator_id == Annotator.id)
                .where(Vote.id > last)
                .order_by(Vote.id)
                .limit(batch)
            )
            with self.session() as session:
                rows = session.execute(query).all()
            for vote, text_a, text_b, item, name in rows:
                yield VoteRecord(
                    vote_id=vote.id, annotator=name, choice=vote.choice, swapped=vote.swapped,
                    created_at=vote.created_at, item_id=item.id, question=item.question,
                    choices=list(item.choices), gold=item.answer, clip_hash=item.clip_hash,
                    generation_a_id=vote.generation_a_id, text_a=text_a,
                    generation_b_id=vote.generation_b_id, text_b=text_b,
                )  # fmt: skip
            if len(rows) < batch:
                return
            last = rows[-1][0].id

    # --------------------------------------------------------------------------------------------- counts

    def counts(self) -> dict[str, Any]:
        """Totals, ratings by source/annotator/status, votes by annotator, items by source."""
        with self.session() as session:

            def total(model: type[Base]) -> int:
                return int(session.scalar(select(func.count()).select_from(model)) or 0)

            def grouped(*columns: Any, model: type[Base]) -> list[Any]:
                query = select(*columns, func.count()).select_from(model)
                if model is not Item:
                    query = query.join(Annotator)
                return list(session.execute(query.group_by(*columns).order_by(*columns)))

            result: dict[str, Any] = {
                "clips": total(Clip), "items": total(Item), "generations": total(Generation),
                "annotators": total(Annotator), "ratings": total(Rating), "votes": total(Vote),
            }  # fmt: skip
            by_source: dict[str, dict[str, int]] = {}
            for source, status, n in grouped(Rating.source, Rating.status, model=Rating):
                by_source.setdefault(source, {})[status] = n
            by_annotator: dict[str, dict[str, int]] = {}
            for name, status, n in grouped(Annotator.name, Rating.status, model=Rating):
                by_annotator.setdefault(name, {})[status] = n
            result["ratings_by_source"] = by_source
            result["ratings_by_annotator"] = by_annotator
            result["votes_by_annotator"] = {name: n for name, n in grouped(Annotator.name, model=Vote)}
            result["items_by_source"] = {source: n for source, n in grouped(Item.source, model=Item)}
        return result
