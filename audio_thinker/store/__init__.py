"""The ratings store: one SQLAlchemy schema shared by the trainer, the reward model and the studio.

This package's ``__init__`` is its public API; the modules are :mod:`.schema` (facts, tables, records),
:mod:`.engine` (engines, migrations), :mod:`.validation`, :mod:`.core`, :mod:`.ratings`, :mod:`.votes` and
:mod:`.store` (the :class:`Store` class).

Schema (alembic head ``0005``; ``audio_thinker/migrations/``)::

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
    settings     key, value (JSON text), updated_at: studio settings chosen by admins (0005)
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
* Text limits (characters) are the ``MAX_*`` constants of :mod:`.schema`; a value over a limit, or any invalid value,
  raises :class:`ValueError` before anything is written. Unknown ids raise :class:`NotFoundError`.

The database URL is the ``url`` argument, else ``$AUDIO_THINKER_DB``, else ``sqlite:///annotations/ratings.db``
(relative to the working directory). Any SQLAlchemy URL works; queries are dialect-neutral ORM. On SQLite
every connection gets WAL journaling, foreign keys and a 30 s busy timeout, and write transactions start
with ``BEGIN IMMEDIATE`` so that concurrent writers queue instead of failing. Opening a :class:`Store`
upgrades the database to the newest migration, keeping its rows.
"""

from sqlalchemy.exc import DBAPIError as DatabaseError
from sqlalchemy.exc import SQLAlchemyError as StoreError

from .backup import BackupError, backup, restore
from .engine import (
    DB_ENV,
    DEFAULT_URL,
    MIGRATIONS_DIR,
    SQLITE_BUSY_TIMEOUT_MS,
    _sqlite_file,
    alembic_config,
    database_url,
    display_url,
    make_engine,
    migrate,
)
from .schema import (
    EXPORT_FORMATS,
    MAX_ANSWER_CHARS,
    MAX_CHOICE_CHARS,
    MAX_CHOICES,
    MAX_COMMENT_CHARS,
    MAX_DIFFICULTY_CHARS,
    MAX_LABEL_CHARS,
    MAX_LEAD_TIME_S,
    MAX_META_BYTES,
    MAX_MODEL_CHARS,
    MAX_NAME_CHARS,
    MAX_ORIGINAL_NAME_CHARS,
    MAX_QUESTION_CHARS,
    MAX_RAW_TEXT_CHARS,
    MAX_SOURCE_CHARS,
    MAX_TASK_CHARS,
    MEDIA_ENV,
    MODES,
    RATING_SOURCES,
    STATUSES,
    STUDIO_RUN,
    VOTE_CHOICES,
    AccessDeniedError,
    Annotator,
    Base,
    Clip,
    Comparison,
    Generation,
    Item,
    NotFoundError,
    Rating,
    RatingRecord,
    Setting,
    UTCDateTime,
    Vote,
    VoteRecord,
)
from .store import Store
from .validation import snap_quality

__all__ = [
    "DB_ENV",
    "DEFAULT_URL",
    "EXPORT_FORMATS",
    "MAX_ANSWER_CHARS",
    "MAX_CHOICES",
    "MAX_CHOICE_CHARS",
    "MAX_COMMENT_CHARS",
    "MAX_DIFFICULTY_CHARS",
    "MAX_LABEL_CHARS",
    "MAX_LEAD_TIME_S",
    "MAX_META_BYTES",
    "MAX_MODEL_CHARS",
    "MAX_NAME_CHARS",
    "MAX_ORIGINAL_NAME_CHARS",
    "MAX_QUESTION_CHARS",
    "MAX_RAW_TEXT_CHARS",
    "MAX_SOURCE_CHARS",
    "MAX_TASK_CHARS",
    "MEDIA_ENV",
    "MIGRATIONS_DIR",
    "MODES",
    "RATING_SOURCES",
    "SQLITE_BUSY_TIMEOUT_MS",
    "STATUSES",
    "STUDIO_RUN",
    "VOTE_CHOICES",
    "AccessDeniedError",
    "Annotator",
    "BackupError",
    "Base",
    "Clip",
    "Comparison",
    "DatabaseError",
    "Generation",
    "Item",
    "NotFoundError",
    "Rating",
    "RatingRecord",
    "Setting",
    "Store",
    "StoreError",
    "UTCDateTime",
    "Vote",
    "VoteRecord",
    "_sqlite_file",
    "alembic_config",
    "backup",
    "database_url",
    "display_url",
    "make_engine",
    "migrate",
    "restore",
    "snap_quality",
]
