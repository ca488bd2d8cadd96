"""Ratings & reward model: counts, agreement data and vote rankings, exports, and training the learned judge."""

from __future__ import annotations

import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from audio_thinker.store import EXPORT_FORMATS as PAIR_FORMATS  # the reward model's pair formats
from audio_thinker.store import STATUSES

from .auth import is_admin, register_private, require_admin, scrub
from .rating import my_ratings
from .state import STATE, UserError, db, settings, store

LABELS = "labels"
EXPORT_FORMATS = (LABELS, *PAIR_FORMATS)
"""The studio's export choices: ``labels`` (every rating with its human labels, one JSON line each) and
the reward model's preference-pair formats ``trl`` / ``jsonl`` / ``hf``."""


def counts() -> dict:
    """Totals and counts by source and annotator (aggregates only)."""
    st = store()
    return db(st.counts)


def _submitted() -> list:
    st = store()
    return db(lambda: list(st.ratings(statuses=("submitted",))))


def agreement_data() -> dict:
    """Per-generation consistency labels and quality values of submitted human ratings, by annotator."""
    consistency: dict[str, dict[int, bool]] = {}
    quality: dict[int, list[float]] = {}
    for r in _submitted():
        if r.source != "human":
            continue
        if r.consistent is not None:
            consistency.setdefault(r.annotator, {})[r.generation_id] = bool(r.consistent)
        if r.quality is not None:
            quality.setdefault(r.generation_id, []).append(float(r.quality))
    return {"consistency": consistency, "quality": quality}


def gold_agreement() -> dict[str, dict[str, Any]]:
    """Each rater's agreement with the gold traces' labels (``n``, ``consistency``, ``quality_mae``)."""
    st = store()
    return db(st.gold_agreement)


def vote_comparisons() -> tuple[list[tuple[int, int, float]], list[str]]:
    """Votes as ``(player_a, player_b, score_a)`` over players "model · mode"; ties and both-bad are 0.5."""
    st = store()
    votes = db(lambda: list(st.votes()))
    if not votes:
        return [], []
    gen_ids = {v.generation_a_id for v in votes} | {v.generation_b_id for v in votes}
    models = db(lambda: st.generation_models(gen_ids))
    player_of = {gid: f"{m} · {mode}" for gid, (m, mode) in models.items()}
    names = sorted(set(player_of.values()))
    index = {n: i for i, n in enumerate(names)}
    score = {"A": 1.0, "B": 0.0, "tie": 0.5, "both_bad": 0.5}
    comps = []
    for v in votes:
        a, b = player_of[v.generation_a_id], player_of[v.generation_b_id]
        if a != b:
            comps.append((index[a], index[b], score[v.choice]))
    return comps, names


def _reward_model() -> Any:
    try:
        from audio_thinker import reward_model
    except ImportError as err:
        raise UserError(f"The reward-model module is not available ({err}).") from err
    return reward_model


def label_rows() -> list[dict]:
    """Every rating in the store with its human labels and what was rated: annotator, status, source,
    consistent, quality, the flawed step (span and sentence), comment, lead time, times, and the trace
    (generation, model, mode, think, answer, run, step) and its item (question, choices, gold, clip)."""
    st = store()
    out = []
    for r in db(lambda: list(st.ratings(statuses=STATUSES))):
        span = list(r.flawed_span) if r.flawed_span else None
        out.append({
            "annotator": r.annotator, "status": r.status, "source": r.source, "consistent": r.consistent,
            "quality": r.quality, "flawed_span": span,
            "flawed_step": (r.think or "")[span[0] : span[1]] if span else None, "comment": r.comment,
            "lead_time_s": r.lead_time_s, "updated_at": r.updated_at.isoformat() if r.updated_at else None,
            "rating_id": r.rating_id, "generation_id": r.generation_id, "model": r.model, "mode": r.mode,
            "think": r.think, "answer": r.answer, "run": r.run, "step": r.step, "item_id": r.item_id,
            "question": r.question, "choices": r.choices, "gold": r.gold, "item_source": r.item_source,
            "clip_hash": r.clip_hash,
        })  # fmt: skip
    return out


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")


def export(user: str, fmt: str) -> str:
    """:func:`export_with_note` without the note."""
    return export_with_note(user, fmt)[0]


def export_with_note(user: str, fmt: str) -> tuple[str, str | None]:
    """An export file for ``user`` alone, and a note for people (or None): admins get ``labels`` (every
    rating with annotator, status, consistency, quality, flawed step, comment and times, as JSONL) or the
    preference pairs of every rating and vote (``trl`` / ``jsonl`` / ``hf`` as a zip, by
    ``audio_thinker.reward_model.export``; when there are no pairs yet, the labels instead, said in the
    note); other annotators get their own ratings as JSONL.

    Written to a new private temporary folder under a name with a random part, registered as ``user``'s
    (the studio's HTTP guard serves it, and Gradio's copy of it, to nobody else) and deleted after
    :data:`EXPORT_TTL_S` seconds; never into a shared folder.
    """
    import tempfile

    if fmt not in EXPORT_FORMATS:
        raise UserError(f"Export format must be one of {', '.join(EXPORT_FORMATS)}.")
    out_dir = Path(tempfile.mkdtemp(prefix="audio-thinker-export-"))  # mode 0700
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")  # noqa: UP017
    tag = f"{stamp}-{os.urandom(8).hex()}"
    note = None
    try:
        if not is_admin(user):
            path = out_dir / f"my-ratings-{tag}.jsonl"
            _write_jsonl(path, my_ratings(user))
        elif fmt == LABELS:
            path = out_dir / f"labels-{tag}.jsonl"
            _write_jsonl(path, label_rows())
        else:
            rm = _reward_model()
            target = out_dir / (f"ratings-hf-{tag}" if fmt == "hf" else f"ratings-{fmt}-{tag}.jsonl")
            st = store()
            try:
                db(lambda: rm.export(st, str(target), fmt))
            except rm.RewardModelError as err:  # no pairs yet: the human labels are still worth keeping
                rows = label_rows()
                if not rows:
                    raise UserError(f"Nothing exported: {scrub(str(err))}.") from err
                target = out_dir / f"labels-{tag}.jsonl"
                _write_jsonl(target, rows)
                note = (
                    f"No preference pairs yet ({scrub(str(err)).split(':')[0]}), so the {len(rows)} ratings "
                    "with their labels were exported instead (format labels)."
                )
            if target.is_dir():
                archive = shutil.make_archive(str(target), "zip", root_dir=target)
                shutil.rmtree(target, ignore_errors=True)
                path = Path(archive)
            else:
                path = target
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    register_private(path.name, user, out_dir)
    return str(path), note


def backup(user: str) -> str:
    """Admins: the whole store (every rating with its annotator and labels, votes, comparisons, items,
    generations and the clips' bytes) as one zip (``audio_thinker.store.backup``), delivered like an
    export: to ``user`` alone, from a private temporary folder deleted after :data:`EXPORT_TTL_S` seconds.
    ``python -m audio_thinker.store restore --db URL --from F`` rebuilds a store from it."""
    import tempfile

    from audio_thinker.store import backup as write_backup

    require_admin(user, "back up the whole store")
    out_dir = Path(tempfile.mkdtemp(prefix="audio-thinker-backup-"))  # mode 0700
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")  # noqa: UP017
    path = out_dir / f"store-backup-{stamp}-{os.urandom(8).hex()}.zip"
    st = store()
    try:
        db(lambda: write_backup(st, path))
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    register_private(path.name, user, out_dir)
    return str(path)


def train_reward_model(user: str) -> dict:
    """Train the learned judge on the store's ratings and votes into ``settings().reward_model_dir`` (tqdm
    progress bars, which ``gr.Progress(track_tqdm=True)`` shows); returns its metrics."""
    require_admin(user, "train the reward model")
    rm = _reward_model()
    if not STATE.train_lock.acquire(blocking=False):
        raise UserError("A reward model is already training; wait for it to finish.")
    try:
        out = settings().reward_model_dir
        cfg = rm.TrainConfig(out=str(out), progress=True)
        st = store()
        try:
            metrics = db(lambda: rm.train(st, cfg))
        except rm.RewardModelError as err:
            raise UserError(f"Cannot train yet: {err}.") from err
    finally:
        STATE.train_lock.release()
    metrics_file = out / "metrics.json"
    if metrics_file.is_file():
        return json.loads(metrics_file.read_text())
    return metrics
