"""Pairwise votes, the comparisons shown to annotators, and the store's counts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from .core import StoreCore
from .schema import (
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
    Vote,
    VoteRecord,
    _now,
)
from .validation import _annotator_name, _choice


class VoteStore(StoreCore):
    """The store's votes and comparisons, and its counts."""

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
