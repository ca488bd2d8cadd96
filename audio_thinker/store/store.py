"""The ratings store: one class over the base, the ratings and the votes."""

from __future__ import annotations

from .ratings import RatingStore
from .votes import VoteStore


class Store(RatingStore, VoteStore):
    """The ratings store. Thread-safe: each call uses its own short session.

    ``Store(url=None, media_dir=None)``: ``url`` defaults to ``$AUDIO_THINKER_DB`` then :data:`DEFAULT_URL`;
    ``media_dir`` to ``$AUDIO_THINKER_MEDIA``, then ``media/`` beside a SQLite file, else
    ``annotations/media``. The database is upgraded to the newest migration unless ``upgrade=False``.

    The only place in the project where SQL is written: the studio calls its named methods.
    """
