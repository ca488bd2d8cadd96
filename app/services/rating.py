"""Rate: the rating queue (the learned judge's least sure traces first), one trace at a time, and the
annotator's own ratings and progress."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from audio_thinker.errors import first_line
from audio_thinker.rewards import sentence_spans as sentence_spans  # the rating panel's steps
from audio_thinker.store import MAX_COMMENT_CHARS as MAX_COMMENT_CHARS  # the comment box's limit
from audio_thinker.store import MAX_LEAD_TIME_S as MAX_LEAD_TIME_S  # the longest rating time stored
from audio_thinker.store import STATUSES, AccessDeniedError, Generation, NotFoundError, Rating

from .auth import require_admin, scrub
from .model import model_label
from .state import STATE, UserError, db, settings, store

log = logging.getLogger(__name__)


@dataclass
class Trace:
    """A generation to rate, with the annotator's own draft (if any)."""

    generation_id: int
    question: str
    choices: list[str]
    gold: str | None
    think: str
    answer: str | None
    mode: str
    model: str
    source: str
    run: str | None
    step: int | None
    audio_path: str | None
    sentences: list[tuple[int, int]]
    draft: dict | None = None

    def sentence_texts(self) -> list[str]:
        return [self.think[s:e] for s, e in self.sentences]


def rating_dict(r: Rating) -> dict:
    """A rating as plain values (what the API returns; only ever the caller's own)."""
    return {
        "rating_id": r.id,
        "generation_id": r.generation_id,
        "annotator": r.annotator.name,
        "status": r.status,
        "consistent": r.consistent,
        "quality": r.quality,
        "flawed_span": list(r.flawed_span) if r.flawed_span else None,
        "comment": r.comment,
        "lead_time_s": r.lead_time_s,
        "updated_at": r.updated_at.isoformat() if r.updated_at else None,
    }


UNCERTAINTY_POOL = 200
"""Oldest unrated traces the learned judge ranks per queue request (scores are cached per generation)."""


def judge_problem() -> str | None:
    """Why the learned judge could not rank the rating queue the last time it was asked (one line for
    people; the queue is then oldest first), or None."""
    return STATE.judge_problem


def _judge_failed(what: str, err: Exception) -> None:
    """Log a reward-model failure and keep its one-line reason for :func:`judge_problem`."""
    reason = scrub(first_line(err))[:200]
    log.warning("learned judge: could not %s: %s: %s", what, type(err).__name__, err)
    STATE.judge_problem = f"The reward model could not {what} ({reason}); the queue is oldest first."


def learned_judge() -> Any | None:
    """The trained reward model in ``settings().reward_model_dir`` (a ``LearnedJudge``), or None when
    there is none or it cannot be loaded (then logged, and said by :func:`judge_problem`)."""
    path = settings().reward_model_dir
    meta = path / "reward_model.json"
    if not meta.is_file():
        STATE.judge_problem = None
        return None
    key = f"{path.resolve()}:{meta.stat().st_mtime_ns}"
    if key not in STATE.judges:
        STATE.judges.clear()
        STATE.judge_scores.clear()
        STATE.judge_problem = None
        try:
            from audio_thinker.judges import LearnedJudge

            STATE.judges[key] = LearnedJudge(path, batch_size=32, device="cpu")
        except Exception as err:  # a half-written or incompatible folder: oldest first, and say why
            _judge_failed("be loaded", err)
            STATE.judges[key] = None
    return STATE.judges[key]


def _uncertainty_order(gens: list[Generation]) -> list[Generation]:
    """``gens`` sorted by the learned judge's P(consistent) closeness to 0.5 (least sure first); unchanged
    without a judge."""
    judge = learned_judge()
    if judge is None or not gens:
        return gens
    from audio_thinker.judges import JudgeRequest

    scores = STATE.judge_scores
    todo = [g for g in gens if g.id not in scores]
    if todo:
        requests = [
            JudgeRequest(
                g.item.question, list(g.item.choices), g.think or "", g.answer or "", g.item.meta or None
            )
            for g in todo
        ]
        try:
            _, probs = judge.raw_scores(requests)
        except Exception as err:  # a broken model: oldest first, and say why
            _judge_failed("score the traces", err)
            return gens
        scores.update({g.id: float(p) for g, p in zip(todo, probs, strict=True)})
    STATE.judge_problem = None
    return sorted(gens, key=lambda g: abs(scores[g.id] - 0.5))  # stable: ties stay oldest first


MAX_OVERLAP = 50
MAX_GOLD_RATE = 0.5


def queue_settings() -> dict[str, Any]:
    """The admins' queue settings: ``overlap`` (how many people rate each trace; 0: everyone rates every
    trace) and ``gold_rate`` (the share of gold traces mixed into each queue; 0: none mixed in)."""
    st = store()
    return {
        "overlap": int(db(lambda: st.get_setting("overlap", 0)) or 0),
        "gold_rate": float(db(lambda: st.get_setting("gold_rate", 0.0)) or 0.0),
    }


def set_queue_settings(user: str, overlap: Any, gold_rate: Any) -> dict[str, Any]:
    """Admins: set :func:`queue_settings` (``overlap`` 0–50, ``gold_rate`` 0–0.5)."""
    require_admin(user, "change the queue settings")
    try:
        n, rate = int(overlap or 0), float(gold_rate or 0.0)
    except (TypeError, ValueError):
        raise UserError("Raters per trace must be a whole number and the gold rate a number.") from None
    if not 0 <= n <= MAX_OVERLAP or not 0.0 <= rate <= MAX_GOLD_RATE:
        raise UserError(f"Raters per trace must be 0–{MAX_OVERLAP} and the gold rate 0–{MAX_GOLD_RATE}.")
    st = store()
    db(lambda: st.set_setting("overlap", n))
    db(lambda: st.set_setting("gold_rate", rate))
    return queue_settings()


def gold_due(gold: int, total: int, rate: float) -> bool:
    """Whether the next trace is a gold one: ``gold`` of the ``total`` traces submitted were gold, and one more
    trace that is not would leave gold below ``rate`` of them (the rule of :func:`queue` and :func:`progress`)."""
    return gold < rate * (total + 1)


def queue(user: str, limit: int = 20) -> list[Generation]:
    """``user``'s rating queue: unrated traces (most uncertain first when a reward model exists, else
    oldest first), then the traces they skipped (least recently skipped first).

    With an ``overlap`` setting, traces that many other people submitted leave the queue; with a
    ``gold_rate``, a gold trace (one the oracle labelled) comes first whenever the user's share of gold
    among what they submitted would fall below the rate, and gold traces do not come otherwise."""
    st = store()
    cfg = queue_settings()
    overlap = cfg["overlap"] or None
    gold_first: list[Generation] = []
    only = None
    if cfg["gold_rate"] > 0:
        only = False
        gold, total = db(lambda: st.gold_counts(user))
        if gold_due(gold, total, cfg["gold_rate"]):
            gold_first = db(lambda: st.rating_queue(user, 1, gold=True))
    if learned_judge() is not None:
        fresh = _uncertainty_order(
            db(lambda: st.rating_queue(user, max(limit, UNCERTAINTY_POOL), overlap=overlap, gold=only))
        )[:limit]
    else:
        fresh = db(lambda: st.rating_queue(user, limit, overlap=overlap, gold=only))
    fresh = (gold_first + fresh)[:limit]
    if len(fresh) >= limit:
        return fresh
    return fresh + db(lambda: st.skipped_queue(user, limit - len(fresh)))


def next_trace(user: str, after: int | None = None) -> Trace | None:
    """The first trace of ``user``'s queue (not ``after``, the one just left, when others wait)."""
    gens = queue(user, limit=2 if after is not None else 1)
    if after is not None and len(gens) > 1 and gens[0].id == after:
        gens = gens[1:]
    return trace(user, gens[0].id) if gens else None


def trace(user: str, generation_id: int) -> Trace:
    """One generation prepared for rating by ``user`` (with ``user``'s own draft, never another's); only
    a trace ``user`` may see (shared, or their own upload)."""
    st = store()
    gen = _visible_generation(user, generation_id)
    item = gen.item
    audio = None
    if item.clip_hash:
        try:
            path = db(lambda: st.clip_path(item.clip_hash))
            audio = str(path) if path.is_file() else None
        except NotFoundError:
            audio = None
    own = db(lambda: st.own_rating(gen.id, user))
    think = gen.think or ""
    return Trace(
        generation_id=gen.id, question=item.question, choices=list(item.choices), gold=item.answer,
        think=think, answer=gen.answer, mode=gen.mode, model=model_label(gen.model, user) or "", source=item.source,
        run=gen.run,
        step=gen.step, audio_path=audio, sentences=sentence_spans(think),
        draft=rating_dict(own) if own is not None else None,
    )  # fmt: skip


def _visible_generation(user: str, generation_id: Any) -> Generation:
    """The generation if ``user`` may see it; else the same :class:`UserError` whether it exists or not."""
    st = store()
    try:
        gid = int(generation_id)
    except (TypeError, ValueError):
        raise UserError(f"No trace {generation_id!r}.") from None
    gen = db(lambda: st.visible_generation(gid, user))
    if gen is None:
        raise UserError(f"No trace {gid} in your queue.")
    return gen


def rate(
    user: str,
    generation_id: int,
    *,
    consistent: bool | None = None,
    quality: float | None = None,
    flawed_span: Sequence[int] | None = None,
    comment: str | None = None,
    status: str = "submitted",
    lead_time_s: float | None = None,
) -> dict:
    """Create or update ``user``'s own rating of a generation (submitted, draft, skipped, discarded).

    The row is keyed by (generation, user): nobody can write another annotator's rating.
    """
    span = tuple(int(x) for x in flawed_span) if flawed_span else None
    gen = _visible_generation(user, generation_id)
    if not (gen.think or "").strip() and (consistent is not None or quality is not None or span):
        raise UserError(
            f"Trace {gen.id} has no reasoning (a {gen.mode} answer without <think>): there is nothing to rate "
            "for consistency or quality."
        )
    st = store()
    try:
        r = db(
            lambda: st.rate(
                int(generation_id), user, consistent=consistent, quality=quality, flawed_span=span,
                comment=comment or None, lead_time=lead_time_s, status=status,
            )
        )  # fmt: skip
    except NotFoundError as err:
        raise UserError(str(err)) from err
    return rating_dict(r)


def my_rating_list(user: str) -> list[dict]:
    """``user``'s own ratings with each trace's question, most recently changed first (the "My ratings"
    list; any of them can be reopened with :func:`trace` and rated again)."""
    st = store()
    return [
        {**rating_dict(r), "question": question}
        for r, question in db(lambda: st.ratings_with_questions(user))
    ]


def own_rating(user: str, generation_id: int) -> dict | None:
    """``user``'s own rating of a generation as plain values, or None."""
    st = store()
    r = db(lambda: st.own_rating(int(generation_id), user))
    return rating_dict(r) if r is not None else None


def undo(user: str, generation_id: int, before: dict | None) -> None:
    """Put ``user``'s rating of a generation back as it was (``before``, from :func:`own_rating`, None
    when there was none): undoes a skip or a discard."""
    gid = int(generation_id)
    _visible_generation(user, gid)
    st = store()
    if before is None:
        db(lambda: st.delete_rating(gid, user))
        return
    span = before.get("flawed_span")
    db(
        lambda: st.rate(
            gid, user, consistent=before.get("consistent"), quality=before.get("quality"),
            flawed_span=tuple(span) if span else None, comment=before.get("comment"),
            lead_time=before.get("lead_time_s"), status=before["status"],
        )
    )  # fmt: skip


def get_rating(user: str, rating_id: int) -> dict:
    """``user``'s own rating by id; another annotator's rating raises :class:`UserError` (not found or
    not yours, without saying which)."""
    st = store()
    try:
        return rating_dict(db(lambda: st.get_rating(int(rating_id), user)))
    except (NotFoundError, AccessDeniedError) as err:
        raise UserError(f"No rating {rating_id} of yours.") from err


def my_ratings(user: str, status: str | None = None) -> list[dict]:
    """All of ``user``'s own ratings (optionally one status), oldest first."""
    st = store()
    return [rating_dict(r) for r in db(lambda: st.ratings_for(user, status=status))]


def _todo(user: str) -> int:
    """How many traces :func:`queue` will still serve ``user`` (skipped ones aside) if each is submitted: all
    of the ordinary ones, and with a gold rate only the gold traces :func:`gold_due` lets in among them (the
    rest of the gold never comes, so it is not to do)."""
    st = store()
    cfg = queue_settings()
    overlap = cfg["overlap"] or None
    if cfg["gold_rate"] <= 0:
        return int(db(lambda: st.rating_queue_size(user, overlap=overlap)) or 0)
    plain = int(db(lambda: st.rating_queue_size(user, overlap=overlap, gold=False)) or 0)
    gold_left = int(db(lambda: st.rating_queue_size(user, gold=True)) or 0)
    gold, total = db(lambda: st.gold_counts(user))
    served = 0
    while True:  # the queue's choice, trace by trace (one step per trace: at most plain + gold_left)
        if gold_left and gold_due(gold, total, cfg["gold_rate"]):
            gold_left, gold = gold_left - 1, gold + 1
        elif plain:
            plain -= 1
        else:
            return served
        total, served = total + 1, served + 1


def progress(user: str) -> dict:
    """``user``'s personal progress: submitted, drafts, skipped, discarded and still to do (what
    :func:`queue` will serve; see :func:`_todo`)."""
    st = store()
    by_status = db(lambda: st.rating_status_counts(user))
    return {**{status: by_status.get(status, 0) for status in STATUSES}, "todo": _todo(user)}
