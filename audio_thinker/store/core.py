"""The store's base: engine and sessions, clips, items, generations and annotators."""

from __future__ import annotations

import io
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, func, or_, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from audio_thinker.audio import AudioError, content_hash, load_audio

from .engine import _sqlite_file, _upgrade, database_url, display_url, make_engine
from .schema import (
    _EXT_BY_FORMAT,
    MAX_ANSWER_CHARS,
    MAX_CHOICE_CHARS,
    MAX_CHOICES,
    MAX_DIFFICULTY_CHARS,
    MAX_LABEL_CHARS,
    MAX_META_BYTES,
    MAX_MODEL_CHARS,
    MAX_QUESTION_CHARS,
    MAX_RAW_TEXT_CHARS,
    MAX_TASK_CHARS,
    MEDIA_ENV,
    MODES,
    Annotator,
    Clip,
    Generation,
    Item,
    NotFoundError,
)
from .validation import (
    _annotator_name,
    _choice,
    _clip_hash,
    _number,
    _original_name,
    _read_source,
    _source_slug,
    _text,
)

_S = TypeVar("_S", bound="StoreCore")


class StoreCore:
    """The store's engine and sessions, clips, items, generations and annotators (the ratings and votes
    are :class:`~audio_thinker.store.ratings.RatingStore` and :class:`~audio_thinker.store.votes.VoteStore`;
    :class:`~audio_thinker.store.Store` is all of them)."""

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

    @property
    def display_url(self) -> str:
        """The database URL for messages and labels, its password hidden."""
        return display_url(self.url)

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r}, media_dir={str(self.media_dir)!r})"

    def close(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()

    def __enter__(self: _S) -> _S:
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

    def clip_visibility(self, clip_hash: str, annotator: str | None) -> bool | None:
        """Whether ``annotator`` (None: nobody signed in) may hear the stored clip ``clip_hash``: True when
        an item of it is shared or theirs; False when it is stored but only in others' private items;
        None when no item uses it (not a stored clip, or a clip without items)."""
        with self.session() as session:
            items = select(Item.id).where(Item.clip_hash == clip_hash)
            if session.scalar(items.limit(1)) is None:
                return None
            if annotator is None:
                visible = items.where(Item.shared == true())
            else:
                visible = items.where(self._visible(_annotator_name(annotator)))
            return session.scalar(visible.limit(1)) is not None

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

    def has_generation(self, item_id: int, run: str | None, raw_text: str, step: int | None) -> bool:
        """Whether an output with this raw text is stored for the item from this run and step (a trace
        imported before)."""
        query = (
            select(func.count())
            .select_from(Generation)
            .where(
                Generation.item_id == item_id,
                Generation.run.is_(None) if run is None else Generation.run == run,
                Generation.raw_text == raw_text,
                Generation.step.is_(None) if step is None else Generation.step == step,
            )
        )
        with self.session() as session:
            return bool(session.scalar(query))

    def generation_models(self, generation_ids: Iterable[int]) -> dict[int, tuple[str, str]]:
        """``(model, mode)`` of each of the generations by id (unknown ids are left out)."""
        ids = list(generation_ids)
        if not ids:
            return {}
        query = select(Generation.id, Generation.model, Generation.mode).where(Generation.id.in_(ids))
        with self.session() as session:
            return {gid: (model, mode) for gid, model, mode in session.execute(query).all()}

    def items_with_generations(self, runs: Iterable[str]) -> set[int]:
        """Ids of the items that have at least one generation from one of ``runs``."""
        query = select(Generation.item_id).where(Generation.run.in_(list(runs))).distinct()
        with self.session() as session:
            return set(session.scalars(query))

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
