"""The store's schema and its facts: text limits, allowed values, tables, and the joined records readers get.

The ``MAX_*`` limits, :data:`STATUSES`, :data:`VOTE_CHOICES`, :data:`RATING_SOURCES` and
:data:`EXPORT_FORMATS` are defined here once (the modes and the question and choice limits, which the
prompt checks too, in :mod:`audio_thinker.prompts`); the studio imports them from :mod:`audio_thinker.store`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# The prompt's facts are the store's: the modes a generation may have, and the question and choice limits.
from audio_thinker.prompts import MAX_CHOICE_CHARS, MAX_CHOICES, MAX_QUESTION_CHARS, MODES  # noqa: F401

MEDIA_ENV = "AUDIO_THINKER_MEDIA"

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

STATUSES = ("draft", "submitted", "discarded", "skipped")
RATING_SOURCES = ("human", "oracle", "judge")
VOTE_CHOICES = ("A", "B", "tie", "both_bad")
"""A vote names the stored generation that won (``A``/``B``), or ``tie`` / ``both_bad``."""
EXPORT_FORMATS = ("trl", "jsonl", "hf")
"""Preference-data export formats (``audio_thinker.reward_model.export``; ``hf`` is a folder)."""
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


class Setting(Base):
    """A studio setting chosen by an admin (added in 0005): ``overlap`` (how many raters see each trace),
    ``gold_rate`` (the share of gold traces mixed into each rater's queue); the value is JSON text."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=_now)


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
