"""Alembic migrations of the ratings store (run by ``audio_thinker.store``; no alembic.ini needed)."""
