"""Engines and migrations: SQLite connection settings, database URLs, alembic upgrades."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

from ..errors import first_line

DEFAULT_URL = "sqlite:///annotations/ratings.db"
"""Database used when neither an explicit URL nor ``$AUDIO_THINKER_DB`` is given."""
DB_ENV = "AUDIO_THINKER_DB"
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000


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
        raise ValueError(f"cannot use database URL {url!r}: {first_line(err)}") from None
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


def display_url(url: str | None = None) -> str:
    """The database URL of ``url`` (as :func:`database_url` resolves it) for display, password hidden."""
    try:
        return make_url(database_url(url)).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a display label; any parse failure shows as unparseable
        return "(unparseable URL)"
