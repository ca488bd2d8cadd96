"""Alembic environment for the ratings store.

``audio_thinker.store`` runs it programmatically with an open connection in
``config.attributes["connection"]`` (inside one write transaction). Without one it connects to the
``sqlalchemy.url`` main option through ``store.make_engine`` (same SQLite settings), or, in offline mode
(``alembic upgrade --sql``), renders the SQL for that URL's dialect.
"""

from __future__ import annotations

from alembic import context

from audio_thinker.store import Base, make_engine

config = context.config
target_metadata = Base.metadata  # for autogenerate and comparisons only; migrations spell out their DDL


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url"))
    try:
        with engine.execution_options(audio_thinker_write=True).begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
