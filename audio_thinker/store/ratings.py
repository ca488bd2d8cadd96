"""Ratings: upsert, read back, the rating queue, and the joined records the reward model trains on."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session, aliased

from .core import StoreCore
from .schema import (
    MAX_COMMENT_CHARS,
    MAX_LEAD_TIME_S,
    RATING_SOURCES,
    STATUSES,
    AccessDeniedError,
    Annotator,
    Generation,
    Item,
    NotFoundError,
    Rating,
    RatingRecord,
    Setting,
    _now,
)
from .validation import _annotator_name, _choice, _number, _text, snap_quality

GOLD_SOURCE = "oracle"
"""A gold trace is a generation with a submitted rating from this source (the oracle judge's labels of a
synth-aqa item, whose events are known): raters' labels of it are checked against that rating."""


class RatingStore(StoreCore):
    """The store's ratings (one per generation and annotator) and rating queues."""

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

    def own_rating(self, generation_id: int, annotator: str | Annotator) -> Rating | None:
        """``annotator``'s own rating of a generation (any status), or None."""
        name = _annotator_name(annotator.name if isinstance(annotator, Annotator) else annotator)
        query = (
            select(Rating)
            .join(Annotator, Rating.annotator_id == Annotator.id)
            .where(Annotator.name == name, Rating.generation_id == generation_id)
        )
        with self.session() as session:
            return session.scalar(query)

    def rating_status_counts(self, annotator: str | Annotator) -> dict[str, int]:
        """How many of ``annotator``'s ratings have each status (every status of :data:`STATUSES`)."""
        name = _annotator_name(annotator.name if isinstance(annotator, Annotator) else annotator)
        query = (
            select(Rating.status, func.count())
            .join(Annotator, Rating.annotator_id == Annotator.id)
            .where(Annotator.name == name)
            .group_by(Rating.status)
        )
        with self.session() as session:
            found = {status: int(n) for status, n in session.execute(query).all()}
        return {status: found.get(status, 0) for status in STATUSES}

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

    # ------------------------------------------------------------------------------------------ settings

    def get_setting(self, key: str, default: Any = None) -> Any:
        """A studio setting (JSON value), or ``default`` when it was never set."""
        import json

        with self.session() as session:
            row = session.get(Setting, str(key))
        return default if row is None else json.loads(row.value)

    def set_setting(self, key: str, value: Any) -> None:
        """Set a studio setting to a JSON-serialisable ``value``."""
        import json

        text = json.dumps(value)
        if len(str(key)) > 64 or len(text) > 10_000:
            raise ValueError("setting key or value too long")

        def work(session: Session) -> None:
            row = session.get(Setting, str(key))
            if row is None:
                session.add(Setting(key=str(key), value=text, updated_at=_now()))
            else:
                row.value, row.updated_at = text, _now()

        self._write(work)

    @staticmethod
    def _gold_exists() -> Any:
        """SQL condition on :class:`Generation`: it is a gold trace (see :data:`GOLD_SOURCE`)."""
        gold = aliased(Rating)  # not the outer query's Rating, if it has one
        return exists(
            select(gold.id).where(
                gold.generation_id == Generation.id, gold.source == GOLD_SOURCE, gold.status == "submitted"
            )
        )

    def gold_agreement(self) -> dict[str, dict[str, Any]]:
        """Each human rater's agreement with the gold labels, over the gold traces they submitted:
        ``{"n": ..., "consistency": share that agree, "quality_mae": mean |quality - gold quality|}``."""
        gold_r = aliased(Rating)
        query = (
            select(Annotator.name, Rating.consistent, Rating.quality, gold_r.consistent, gold_r.quality)
            .join(Annotator, Rating.annotator_id == Annotator.id)
            .join(
                gold_r,
                (gold_r.generation_id == Rating.generation_id)
                & (gold_r.source == GOLD_SOURCE)
                & (gold_r.status == "submitted"),
            )  # fmt: skip
            .where(Rating.source == "human", Rating.status == "submitted")
        )
        out: dict[str, dict[str, Any]] = {}
        with self.session() as session:
            rows = session.execute(query).all()
        for name, cons, qual, gold_cons, gold_qual in rows:
            acc = out.setdefault(name, {"n": 0, "_agree": 0, "_cons_n": 0, "_abs": 0.0, "_q_n": 0})
            acc["n"] += 1
            if cons is not None and gold_cons is not None:
                acc["_cons_n"] += 1
                acc["_agree"] += int(bool(cons) == bool(gold_cons))
            if qual is not None and gold_qual is not None:
                acc["_q_n"] += 1
                acc["_abs"] += abs(float(qual) - float(gold_qual))
        return {
            name: {
                "n": a["n"],
                "consistency": a["_agree"] / a["_cons_n"] if a["_cons_n"] else None,
                "quality_mae": a["_abs"] / a["_q_n"] if a["_q_n"] else None,
            }
            for name, a in sorted(out.items())
        }

    def gold_counts(self, annotator: str | Annotator) -> tuple[int, int]:
        """``(gold, all)``: how many gold traces and how many traces in all ``annotator`` submitted."""
        name = _annotator_name(annotator.name if isinstance(annotator, Annotator) else annotator)
        base = (
            select(func.count(Rating.id))
            .join(Annotator, Rating.annotator_id == Annotator.id)
            .join(Generation, Rating.generation_id == Generation.id)
            .where(Annotator.name == name, Rating.status == "submitted", Rating.source == "human")
        )
        with self.session() as session:
            total = int(session.scalar(base) or 0)
            gold = int(session.scalar(base.where(self._gold_exists())) or 0)
        return gold, total

    def _queue_conditions(
        self, name: str, *, overlap: int | None = None, gold: bool | None = None
    ) -> list[Any]:
        """What puts a generation (joined with its item) in ``name``'s queue: a think trace of an item they
        may see, the first of its identical copies (same item and raw text), none of which they rated (a
        draft does not count). With ``overlap``, not a trace that ``overlap`` other people have already
        submitted (gold traces excepted); ``gold`` True / False: only / no gold traces."""
        twin = aliased(Generation)
        same = (twin.item_id == Generation.item_id, twin.raw_text == Generation.raw_text)
        earlier_twin = select(twin.id).where(*same, twin.id < Generation.id)
        rated_twin = (
            select(Rating.id)
            .join(twin, Rating.generation_id == twin.id)
            .join(Annotator, Rating.annotator_id == Annotator.id)
            .where(*same, Annotator.name == name, Rating.status != "draft")
        )
        conditions = [
            Generation.think.is_not(None),
            self._visible(name),
            ~exists(earlier_twin),
            ~exists(rated_twin),
        ]
        if gold is not None:
            conditions.append(self._gold_exists() if gold else ~self._gold_exists())
        if overlap:
            others = (
                select(func.count(Rating.id))
                .join(Annotator, Rating.annotator_id == Annotator.id)
                .where(
                    Rating.generation_id == Generation.id,
                    Rating.status == "submitted",
                    Rating.source == "human",
                    Annotator.name != name,
                )  # fmt: skip
                .scalar_subquery()
            )
            conditions.append((others < int(overlap)) | self._gold_exists())
        return conditions

    def rating_queue_size(
        self, annotator: str | Annotator, *, overlap: int | None = None, gold: bool | None = None
    ) -> int:
        """How many generations :meth:`rating_queue` holds for ``annotator`` (without a limit)."""
        name = _annotator_name(annotator.name if isinstance(annotator, Annotator) else annotator)
        query = (
            select(func.count())
            .select_from(Generation)
            .join(Item, Generation.item_id == Item.id)
            .where(*self._queue_conditions(name, overlap=overlap, gold=gold))
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
        overlap: int | None = None,
        gold: bool | None = None,
    ) -> list[Generation]:
        """Generations with a think trace that ``annotator`` has not yet rated (a draft does not count), of
        items they may see (shared, or their own uploads); identical copies of a trace (same item and raw
        text) count once: only the first is queued, and none once any of them is rated.

        Oldest first; with ``score`` (e.g. the reward model's uncertainty), the ``pool`` oldest candidates
        are ranked by descending score and the first ``limit`` returned. Items and clips are loaded.
        ``overlap`` and ``gold`` as for :meth:`_queue_conditions`.
        """
        name = _annotator_name(annotator.name if isinstance(annotator, Annotator) else annotator)
        for field, value in (("limit", limit), ("pool", pool)):
            if _number(value, field, integer=True) is None:
                raise ValueError(f"{field} must be a non-negative integer")
        query = (
            select(Generation)
            .join(Item, Generation.item_id == Item.id)
            .where(*self._queue_conditions(name, overlap=overlap, gold=gold))
            .order_by(Generation.id)
            .limit(max(pool, limit) if score is not None else limit)
        )
        with self.session() as session:
            candidates = list(session.scalars(query))
        if score is None:
            return candidates
        ranked = sorted(candidates, key=lambda g: -float(score(g)))  # stable: ties stay oldest first
        return ranked[:limit]

    def skipped_queue(self, annotator: str | Annotator, limit: int = 20) -> list[Generation]:
        """The think traces ``annotator`` skipped, of items they may see, least recently skipped first."""
        name = _annotator_name(annotator.name if isinstance(annotator, Annotator) else annotator)
        if _number(limit, "limit", integer=True) is None:
            raise ValueError("limit must be a non-negative integer")
        query = (
            select(Generation)
            .join(Rating, Rating.generation_id == Generation.id)
            .join(Annotator, Rating.annotator_id == Annotator.id)
            .join(Item, Generation.item_id == Item.id)
            .where(Annotator.name == name, Rating.status == "skipped", Generation.think.is_not(None))
            .where(self._visible(name))
            .order_by(Rating.updated_at, Rating.id)
            .limit(limit)
        )
        with self.session() as session:
            return list(session.scalars(query))

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
