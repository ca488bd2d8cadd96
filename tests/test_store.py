"""The ratings store on real SQLite files (no mocks): schema, rules, limits, migrations, concurrency."""

from __future__ import annotations

import io
import multiprocessing
import os
import sqlite3
import threading
from datetime import timezone
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from audio_thinker.audio import AudioError, write_wav
from audio_thinker.store import (
    MAX_COMMENT_CHARS,
    MAX_RAW_TEXT_CHARS,
    AccessDeniedError,
    Annotator,
    Base,
    Clip,
    Generation,
    Item,
    NotFoundError,
    Rating,
    Store,
    Vote,
    alembic_config,
    migrate,
    snap_quality,
)

HEAD = "0005"
"""The newest migration."""
THINK = "<think>Beep 1 at 0.2 s: low. That is 1 beep. So the answer is 1.</think><answer>1</answer>"


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


def _tone(freq: float = 440.0, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return 0.3 * np.sin(2 * np.pi * freq * t)


def _wav_bytes(tmp_path: Path, freq: float = 440.0, seconds: float = 0.5) -> bytes:
    path = tmp_path / f"tone-{freq:g}-{seconds:g}.wav"
    write_wav(path, _tone(freq, seconds))
    return path.read_bytes()


def _count(store: Store, model: type[Base]) -> int:
    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)))


def _media_files(store: Store) -> list[Path]:
    return sorted(p for p in store.media_dir.rglob("*") if p.is_file()) if store.media_dir.exists() else []


@pytest.fixture
def store(tmp_path: Path):
    with Store(_url(tmp_path / "ratings.db"), tmp_path / "media") as s:
        yield s


def _seed(store: Store, n: int = 3, *, with_no_think: bool = False) -> list[int]:
    """One item with ``n`` think generations (plus a no-think one); returns the generation ids."""
    item = store.add_item("How many beeps?", ["1", "2", "3"], answer="1", source="synth-aqa")
    # distinct traces: identical copies of one trace are queued once (``test_identical_copies_queue_once``)
    ids = [store.add_generation(item.id, "tiny", "think", THINK.replace("</think>", f" #{k}.</think>")).id
           for k in range(n)]  # fmt: skip
    if with_no_think:
        ids.append(store.add_generation(item.id, "tiny", "no-think", "<answer>2</answer>").id)
    return ids


# ---------------------------------------------------------------------------------------- round trip


def test_round_trip_of_every_entity(tmp_path: Path) -> None:
    url, media = _url(tmp_path / "db" / "ratings.db"), tmp_path / "media"
    with Store(url, media) as store:
        clip = store.add_clip(_wav_bytes(tmp_path), "beeps.wav")
        events = [{"kind": "tone", "onset": 0.2, "pitch": "low"}]
        item = store.add_item(
            "How many beeps?", ["1", "2"], answer="1", source="synth-aqa", external_id="synth-1",
            clip=clip.hash, meta={"events": events}, task="count", difficulty="medium",
        )  # fmt: skip
        gen = store.add_generation(
            item.id, "runs/x/final", "adaptive", THINK, completion_tokens=21, latency_s=0.5, run="x", step=7
        )
        other = store.add_generation(item.id, "tiny", "no-think", "<answer>2</answer>")
        rating = store.rate(
            gen.id, "alice", consistent=True, quality=0.8, flawed_span=(0, 6), comment="fine",
            lead_time=12.5, source="human",
        )  # fmt: skip
        vote = store.vote(gen.id, other.id, "A", "bob", swapped=True)

    with Store(url, media) as store:  # a fresh engine reads everything back
        item2 = store.get_item(item.id)
        assert (item2.question, item2.choices, item2.answer, item2.source) == (
            "How many beeps?", ["1", "2"], "1", "synth-aqa",
        )  # fmt: skip
        assert (item2.external_id, item2.task, item2.difficulty) == ("synth-1", "count", "medium")
        assert item2.meta == {"events": events}
        assert item2.clip is not None and item2.clip.hash == clip.hash
        assert (item2.clip.sample_rate, item2.clip.channels, item2.clip.ext) == (16000, 1, "wav")
        assert item2.clip.duration_s == pytest.approx(0.5)
        assert item2.clip.original_name == "beeps.wav"
        assert item2.created_at.tzinfo is not None

        gen2 = store.get_generation(gen.id)
        assert (gen2.model, gen2.mode, gen2.raw_text) == ("runs/x/final", "adaptive", THINK)
        assert gen2.think is not None and gen2.think.startswith("Beep 1") and gen2.answer == "1"
        assert (gen2.completion_tokens, gen2.latency_s, gen2.run, gen2.step) == (21, 0.5, "x", 7)
        assert gen2.item.id == item.id
        assert store.get_generation(other.id).think is None

        (r,) = store.ratings_for("alice")
        assert r.id == rating.id and r.annotator.name == "alice"
        assert (r.consistent, r.quality, r.flawed_span, r.comment) == (True, 0.8, (0, 6), "fine")
        assert (r.lead_time_s, r.status, r.source) == (12.5, "submitted", "human")
        assert r.created_at.tzinfo == timezone.utc and r.updated_at >= r.created_at

        (rec,) = list(store.ratings())
        assert (rec.rating_id, rec.annotator, rec.quality, rec.think, rec.gold) == (
            rating.id, "alice", 0.8, gen2.think, "1",
        )  # fmt: skip
        assert (rec.question, rec.choices, rec.clip_hash, rec.meta) == (
            "How many beeps?", ["1", "2"], clip.hash, {"events": events},
        )  # fmt: skip

        (v,) = list(store.votes())
        assert (v.vote_id, v.annotator, v.choice, v.swapped, v.preferred) == (vote.id, "bob", "A", True, "A")
        assert (v.generation_a_id, v.text_a, v.generation_b_id, v.text_b) == (
            gen.id, THINK, other.id, "<answer>2</answer>",
        )  # fmt: skip
        assert v.item_id == item.id

        with store.session() as session:
            assert session.scalar(select(Annotator.name).where(Annotator.id == r.annotator_id)) == "alice"
        counts = store.counts()
        assert {k: counts[k] for k in ("clips", "items", "generations", "annotators", "ratings", "votes")} == {
            "clips": 1, "items": 1, "generations": 2, "annotators": 2, "ratings": 1, "votes": 1,
        }  # fmt: skip
        assert counts["ratings_by_source"] == {"human": {"submitted": 1}}
        assert counts["ratings_by_annotator"] == {"alice": {"submitted": 1}}
        assert counts["votes_by_annotator"] == {"bob": 1}
        assert counts["items_by_source"] == {"synth-aqa": 1}


def test_add_item_is_idempotent_per_source_and_external_id(store: Store) -> None:
    first = store.add_item("Q?", ["a", "b"], source="mmau", external_id="m-1")
    again = store.add_item("Q changed?", ["a", "b"], source="mmau", external_id="m-1")
    other_source = store.add_item("Q?", ["a", "b"], source="upload", external_id="m-1")
    no_id = [store.add_item("Q?", ["a", "b"]).id for _ in range(2)]
    assert again.id == first.id and again.question == "Q?"
    assert other_source.id != first.id and no_id[0] != no_id[1]
    assert _count(store, Item) == 4


# ---------------------------------------------------------------------------------------------- rules


def test_one_rating_per_generation_and_annotator(store: Store) -> None:
    gen_id, _ = _seed(store, 2)
    first = store.rate(gen_id, "alice", consistent=True, quality=0.9, comment="good")
    second = store.rate(gen_id, "alice", consistent=False, quality=0.2, status="submitted", lead_time=3)
    assert second.id == first.id
    assert _count(store, Rating) == 1
    (row,) = store.ratings_for("alice")
    assert (row.consistent, row.quality, row.comment, row.lead_time_s) == (False, 0.2, None, 3.0)
    assert row.updated_at >= row.created_at

    bob = store.rate(gen_id, "bob", consistent=True, quality=1.0)
    assert bob.id != first.id and _count(store, Rating) == 2

    with pytest.raises(IntegrityError), store.session(write=True) as session:  # the database enforces it too
        session.add(Rating(generation_id=gen_id, annotator_id=first.annotator_id, status="draft"))
    assert _count(store, Rating) == 2


def test_draft_then_submit_and_statuses(store: Store) -> None:
    gen_id, other_id, _ = _seed(store, 3)
    draft = store.rate(gen_id, "alice", status="draft")
    assert (draft.consistent, draft.quality, draft.status) == (None, None, "draft")
    done = store.rate(gen_id, "alice", consistent=True, quality=0.5)
    assert done.id == draft.id and done.status == "submitted"
    store.rate(other_id, "alice", status="skipped")
    assert [r.status for r in store.ratings_for("alice")] == ["submitted", "skipped"]
    assert [r.id for r in store.ratings_for("alice", status="skipped")] == [store.ratings_for("alice")[1].id]
    assert [rec.rating_id for rec in store.ratings(statuses=("skipped",))] == [
        store.ratings_for("alice")[1].id
    ]
    with pytest.raises(ValueError, match="needs both"):
        store.rate(other_id, "alice", consistent=True)  # submitted without quality


def test_annotator_isolation(store: Store) -> None:
    gen_id, _ = _seed(store, 2)
    a = store.rate(gen_id, "alice", consistent=True, quality=0.7)
    store.rate(gen_id, "bob", consistent=False, quality=0.1)
    assert store.get_rating(a.id, "alice").quality == 0.7
    with pytest.raises(AccessDeniedError) as err:
        store.get_rating(a.id, "bob")
    assert isinstance(err.value, PermissionError) and "another annotator" in str(err.value)
    with pytest.raises(AccessDeniedError):
        store.get_rating(a.id, "mallory")  # not even an annotator yet
    with pytest.raises(NotFoundError):
        store.get_rating(10_000, "alice")
    assert [r.annotator.name for r in store.ratings_for("bob")] == ["bob"]
    assert store.ratings_for("carol") == []


@pytest.mark.parametrize(
    ("given", "stored"),
    [(0, 0.0), (1, 1.0), (0.74, 0.7), (0.75, 0.8), (0.05, 0.1), (0.3, 0.3), (0.96, 1.0), (0.04, 0.0)],
)
def test_quality_snaps_to_tenths(store: Store, given: float, stored: float) -> None:
    (gen_id,) = _seed(store, 1)
    assert store.rate(gen_id, "alice", consistent=True, quality=given).quality == stored
    assert snap_quality(given) == stored


@pytest.mark.parametrize("bad", [-0.1, 1.01, float("nan"), float("inf"), True, "0.5", [0.5]])
def test_invalid_quality_is_refused_and_nothing_written(store: Store, bad: object) -> None:
    (gen_id,) = _seed(store, 1)
    with pytest.raises(ValueError, match="quality"):
        store.rate(gen_id, "alice", consistent=True, quality=bad)  # type: ignore[arg-type]
    assert _count(store, Rating) == 0 and _count(store, Annotator) == 0


def test_limits_and_validation_write_nothing(store: Store) -> None:
    gen_id, no_think_id = _seed(store, 1, with_no_think=True)
    item_id = store.get_generation(gen_id).item_id
    think_len = len(store.get_generation(gen_id).think or "")
    bad_ratings = [
        ({"comment": "x" * (MAX_COMMENT_CHARS + 1)}, "comment is 2001 characters"),
        ({"flawed_span": (0, think_len + 1)}, "runs past"),
        ({"flawed_span": (5, 5)}, "start < end"),
        ({"flawed_span": (-1, 3)}, ">= 0"),
        ({"flawed_span": 3}, r"\(start, end\)"),
        ({"lead_time": -1}, "lead_time"),
        ({"status": "done"}, "status must be one of"),
        ({"source": "robot"}, "source must be one of"),
        ({"consistent": 1}, "consistent"),
    ]
    for kwargs, message in bad_ratings:
        args = {"consistent": True, "quality": 0.5, **kwargs}
        with pytest.raises(ValueError, match=message):
            store.rate(gen_id, "alice", **args)
    with pytest.raises(ValueError, match="no think trace"):
        store.rate(no_think_id, "alice", consistent=True, quality=0.5, flawed_span=(0, 1))
    with pytest.raises(ValueError, match="annotator name"):
        store.rate(gen_id, "x" * 65, consistent=True, quality=0.5)
    with pytest.raises(NotFoundError):
        store.rate(10_000, "alice", consistent=True, quality=0.5)
    assert _count(store, Rating) == 0 and _count(store, Annotator) == 0  # not even the annotator

    assert store.rate(gen_id, "alice", consistent=True, quality=0.5, comment="x" * MAX_COMMENT_CHARS)

    n_generations = _count(store, Generation)
    with pytest.raises(ValueError, match="raw_text is 20001 characters"):
        store.add_generation(item_id, "tiny", "think", "x" * (MAX_RAW_TEXT_CHARS + 1))
    with pytest.raises(ValueError, match="mode must be one of"):
        store.add_generation(item_id, "tiny", "thinking", THINK)
    with pytest.raises(ValueError, match="completion_tokens"):
        store.add_generation(item_id, "tiny", "think", THINK, completion_tokens=-3)
    with pytest.raises(NotFoundError):
        store.add_generation(10_000, "tiny", "think", THINK)
    assert _count(store, Generation) == n_generations

    n_items = _count(store, Item)
    for kwargs, message in [
        ({"question": "q" * 1001}, "question is 1001"),
        ({"question": "  "}, "question must not be empty"),
        ({"choices": [str(i) for i in range(11)]}, "11 choices"),
        ({"choices": "abc"}, "list of strings"),
        ({"choices": ["a", "b" * 201]}, "choice is 201"),
        ({"source": "Bad Source!"}, "slug"),
        ({"meta": {"x": float("nan")}}, "JSON"),
        ({"meta": {"x": "y" * 70_000}}, "limit is 65536"),
        ({"clip": "../../etc/passwd"}, "not a clip hash"),
        ({"question": "a\x00b"}, "NUL"),
    ]:
        args = {"question": "Q?", "choices": ["a", "b"], **kwargs}
        with pytest.raises(ValueError, match=message):
            store.add_item(**args)
    with pytest.raises(NotFoundError):
        store.add_item("Q?", ["a"], clip="0" * 64)
    assert _count(store, Item) == n_items


def test_votes_validation(store: Store) -> None:
    a, b = _seed(store, 2)
    other_item = store.add_item("Other?", ["x", "y"])
    c = store.add_generation(other_item.id, "tiny", "think", THINK).id
    for args, error, message in [
        ((a, a, "A"), ValueError, "two different"),
        ((a, b, "left"), ValueError, "choice must be one of"),
        ((a, c, "B"), ValueError, "different items"),
        ((a, 10_000, "tie"), NotFoundError, "no generation"),
    ]:
        with pytest.raises(error, match=message):
            store.vote(*args, "bob")
    with pytest.raises(ValueError, match="swapped"):
        store.vote(a, b, "A", "bob", swapped="yes")  # type: ignore[arg-type]
    assert _count(store, Vote) == 0
    store.vote(a, b, "tie", "bob")
    store.vote(b, a, "both_bad", "carol", swapped=True)
    assert [(v.choice, v.preferred, v.swapped) for v in store.votes()] == [
        ("tie", None, False), ("both_bad", None, True),
    ]  # fmt: skip


def test_one_vote_per_pair_and_annotator_under_concurrency(store: Store) -> None:
    """Twenty threads of one annotator voting on one pair (in both orders) leave one vote: the unique index
    plus the retry turn racing inserts into updates; another annotator keeps their own vote."""
    a, b = _seed(store, 2)
    barrier = threading.Barrier(20)
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            barrier.wait()
            store.vote(*((a, b) if k % 2 else (b, a)), "A", "bob")
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.vote(a, b, "tie", "carol")
    assert errors == [] and sorted(v.annotator for v in store.votes()) == ["bob", "carol"]


def test_rating_queue(store: Store) -> None:
    g1, g2, g3, no_think = _seed(store, 3, with_no_think=True)
    store.rate(g1, "alice", consistent=True, quality=0.5)
    store.rate(g2, "alice", status="draft")
    ids = [g.id for g in store.rating_queue("alice")]
    assert ids == [g2, g3]  # rated g1 left; a draft stays queued; no-think outputs have no trace to rate
    assert no_think not in ids
    assert [g.id for g in store.rating_queue("bob", limit=2)] == [g1, g2]
    queue = store.rating_queue("bob", limit=2, score=lambda g: {g3: 0.9, g1: 0.5}.get(g.id, 0.0))
    assert [g.id for g in queue] == [g3, g1]
    assert queue[0].item.question == "How many beeps?"  # loaded for the caller
    store.rate(g2, "alice", status="skipped")
    assert [g.id for g in store.rating_queue("alice")] == [g3]


def test_identical_copies_queue_once(store: Store) -> None:
    item = store.add_item("How many beeps?", ["1", "2"], source="synth-aqa")
    copies = [
        store.add_generation(item.id, "tiny", "think", THINK, run=run).id for run in ("a", "b", "studio")
    ]
    again = store.add_generation(item.id, "tiny", "think", THINK, run="studio", reuse=True)
    assert again.id == copies[2] and _count(store, Generation) == 3  # reuse: the studio's copy, not a 4th
    assert [g.id for g in store.rating_queue("alice")] == [copies[0]] and store.rating_queue_size(
        "alice"
    ) == 1
    store.rate(copies[1], "alice", status="draft")  # a draft of a copy keeps the first queued
    assert [g.id for g in store.rating_queue("alice")] == [copies[0]]
    store.rate(copies[2], "alice", consistent=True, quality=0.5)  # rating any copy rates them all
    assert store.rating_queue("alice") == [] and store.rating_queue_size("alice") == 0
    assert [g.id for g in store.rating_queue("bob")] == [copies[0]]


def test_ratings_filter_by_source(store: Store) -> None:
    g1, g2 = _seed(store, 2)
    store.rate(g1, "alice", consistent=True, quality=0.6)
    store.rate(g1, "oracle", consistent=False, quality=0.3, source="oracle")
    store.rate(g2, "judge-qwen", consistent=True, quality=0.9, source="judge")
    store.rate(g2, "alice", status="draft")
    assert {r.source for r in store.ratings()} == {"human", "oracle", "judge"}
    assert [r.annotator for r in store.ratings(sources=["oracle", "judge"])] == ["oracle", "judge-qwen"]
    assert [r.quality for r in store.ratings(sources=["human"], batch=1)] == [0.6]
    assert store.counts()["ratings_by_annotator"]["alice"] == {"draft": 1, "submitted": 1}


# ----------------------------------------------------------------------------------------------- audio


def test_bad_audio_stores_nothing(store: Store, tmp_path: Path) -> None:
    good = _wav_bytes(tmp_path)
    text_file = tmp_path / "notes.wav"
    text_file.write_text("not audio at all")
    too_long = tmp_path / "long.wav"
    write_wav(too_long, _tone(seconds=31.0))
    for source in [b"", b"RIFF0000WAVEfmt garbage", good[: len(good) // 2], text_file, too_long,
                   tmp_path / "missing.wav", 12345]:  # fmt: skip
        with pytest.raises(AudioError):
            store.add_clip(source, "x.wav")  # type: ignore[arg-type]
    assert _count(store, Clip) == 0
    assert _media_files(store) == []


def test_clip_dedup_by_hash_and_file_named_by_hash(store: Store, tmp_path: Path) -> None:
    data = _wav_bytes(tmp_path)
    first = store.add_clip(data, "../../etc/passwd")
    path_copy = tmp_path / "my upload (1).wav"
    path_copy.write_bytes(data)
    second = store.add_clip(path_copy)
    assert second.hash == first.hash and first.original_name == "passwd"
    assert _count(store, Clip) == 1
    expected = store.media_dir / first.hash[:2] / f"{first.hash}.wav"
    assert store.clip_path(first.hash) == expected and expected.read_bytes() == data
    assert _media_files(store) == [expected]

    expected.unlink()  # a lost media file comes back on the next add
    assert store.add_clip(data).hash == first.hash and expected.read_bytes() == data

    buf = io.BytesIO()
    sf.write(buf, np.stack([_tone(880.0), _tone(220.0)], axis=1), 22050, format="FLAC")
    flac = store.add_clip(buf.getvalue(), "stereo.flac")
    assert (flac.ext, flac.channels, flac.sample_rate) == ("flac", 2, 22050)
    assert store.clip_path(flac.hash).name == f"{flac.hash}.flac"
    assert _count(store, Clip) == 2 and len(_media_files(store)) == 2

    with pytest.raises(ValueError, match="not a clip hash"):
        store.clip_path("../" + "a" * 61)
    with pytest.raises(NotFoundError):
        store.clip_path("a" * 64)


# ------------------------------------------------------------------------------------------ migrations


def test_migration_from_0001_keeps_rows(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    migrate(_url(db), "0001")
    con = sqlite3.connect(db)
    tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"clips", "items", "generations", "annotators", "ratings"} <= tables and "votes" not in tables
    assert "source" not in {row[1] for row in con.execute("PRAGMA table_info(ratings)")}
    ts = "2026-01-01 00:00:00.000000"
    con.executescript(
        f"""
        INSERT INTO clips VALUES ('{"ab" * 32}', 'wav', 'old.wav', 1.5, 16000, 1, 48044, '{ts}');
        INSERT INTO items (id, question, choices, answer, source, external_id, clip_hash, task, difficulty,
                           meta, created_at)
            VALUES (1, 'How many beeps?', '["1", "2"]', '1', 'synth-aqa', 's-1', '{"ab" * 32}', 'count',
                    'medium', '{{"events": []}}', '{ts}');
        INSERT INTO generations (id, item_id, model, mode, raw_text, think, answer, created_at)
            VALUES (1, 1, 'tiny', 'think', 'raw', 'old trace', '1', '{ts}'),
                   (2, 1, 'tiny', 'no-think', '<answer>2</answer>', NULL, '2', '{ts}');
        INSERT INTO annotators (id, name, created_at) VALUES (1, 'alice', '{ts}');
        INSERT INTO ratings (id, generation_id, annotator_id, consistent, quality, flawed_start, flawed_end,
                             comment, status, created_at, updated_at)
            VALUES (1, 1, 1, 1, 0.7, 0, 3, 'from 0001', 'submitted', '{ts}', '{ts}');
        """
    )
    con.commit()
    con.close()

    with Store(_url(db), tmp_path / "media") as store:
        with store.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == HEAD
        (old,) = list(store.ratings())
        assert (old.rating_id, old.annotator, old.quality, old.comment, old.flawed_span) == (
            1, "alice", 0.7, "from 0001", (0, 3),
        )  # fmt: skip
        assert (old.source, old.lead_time_s, old.think, old.clip_hash) == (
            "human",
            None,
            "old trace",
            "ab" * 32,
        )
        assert old.updated_at.year == 2026 and old.meta == {"events": []}
        assert store.get_rating(1, "alice").status == "submitted"
        # the new columns and table work on the upgraded file
        store.rate(1, "oracle", consistent=True, quality=1.0, source="oracle", lead_time=0.0)
        store.vote(1, 2, "B", "alice")
        store.rate(1, "alice", consistent=False, quality=0.4, lead_time=9.0)  # upsert onto the old row
        assert [(r.annotator, r.source, r.lead_time_s) for r in store.ratings()] == [
            ("alice", "human", 9.0), ("oracle", "oracle", 0.0),
        ]  # fmt: skip
        assert [v.choice for v in store.votes()] == ["B"]
        assert store.counts()["ratings"] == 2


def test_migrations_0003_0004_keep_latest_votes_and_hide_old_uploads(tmp_path: Path) -> None:
    """Duplicate votes (one annotator voting on a pair again and again, in either order) become one vote per
    (pair, annotator): the latest; other annotators' votes and the rest of the data are kept."""
    db = tmp_path / "votes.db"
    migrate(_url(db), "0002")
    ts = "2026-01-01 00:00:00.000000"
    con = sqlite3.connect(db)
    con.executescript(
        f"""
        INSERT INTO items (id, question, choices, source, created_at) VALUES (1, 'Q?', '[]', 'upload', '{ts}');
        INSERT INTO generations (id, item_id, model, mode, raw_text, think, run, created_at)
            VALUES (1, 1, 'tiny', 'think', 'a', 'a', 'studio', '{ts}'),
                   (2, 1, 'tiny', 'no-think', 'b', NULL, 'studio', '{ts}'),
                   (3, 1, 'tiny', 'adaptive', 'c', NULL, 'studio', '{ts}');
        INSERT INTO annotators (id, name, created_at) VALUES (1, 'ann', '{ts}'), (2, 'bea', '{ts}');
        INSERT INTO votes (id, generation_a_id, generation_b_id, swapped, choice, annotator_id, created_at)
            VALUES (1, 1, 2, 0, 'A', 2, '{ts}'), (2, 1, 2, 0, 'A', 2, '{ts}'), (3, 2, 1, 1, 'A', 2, '{ts}'),
                   (4, 1, 2, 0, 'B', 1, '{ts}'), (5, 1, 3, 0, 'tie', 2, '{ts}'), (6, 1, 2, 1, 'tie', 1, '{ts}');
        """
    )
    con.commit()
    con.close()
    with Store(_url(db), tmp_path / "media") as store:
        # 0004: an old studio upload's uploader is unknown: it leaves every queue until an admin shares it
        assert (store.get_item(1).shared, store.get_item(1).owner_id) == (False, None)
        assert store.rating_queue("bea") == [] and not store.can_see(1, "bea")
        kept = sorted((v.vote_id, v.annotator, v.choice) for v in store.votes())
        assert kept == [(3, "bea", "A"), (5, "bea", "tie"), (6, "ann", "tie")]
        # the kept votes can be changed (their pairs count as shown), and stay one per pair
        store.vote(1, 2, "B", "bea", shown_only=True)
        store.vote(1, 2, "A", "ann", shown_only=True)
        with pytest.raises(AccessDeniedError):
            store.vote(2, 3, "A", "ann", shown_only=True)
        assert sorted((v.vote_id, v.annotator, v.generation_a_id, v.choice) for v in store.votes()) == [
            (3, "bea", 2, "A"), (5, "bea", 1, "tie"), (6, "ann", 1, "A"),
        ]  # fmt: skip
        with pytest.raises(IntegrityError), store.session(write=True) as session:  # the unique index
            session.execute(
                text("INSERT INTO votes (generation_a_id, generation_b_id, swapped, choice, annotator_id, "
                     "created_at) VALUES (1, 2, 0, 'A', 1, '2026-01-02')")
            )  # fmt: skip
        store.share_item(1)
        assert store.can_see(1, "bea") and [g.id for g in store.rating_queue("someone-new")] == [1]


def test_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    url = _url(tmp_path / "r.db")
    with Store(url, tmp_path / "media") as store:
        (gen_id,) = _seed(store, 1)
        store.rate(gen_id, "alice", consistent=True, quality=0.5, source="judge")
    command.downgrade(alembic_config(url), "0001")
    with sqlite3.connect(tmp_path / "r.db") as con:
        assert con.execute("SELECT quality FROM ratings").fetchall() == [(0.5,)]
    with Store(url, tmp_path / "media") as store:
        assert [(r.quality, r.source) for r in store.ratings()] == [(0.5, "human")]


def test_models_match_the_migrations(store: Store) -> None:
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


def test_postgresql_migration_sql_renders() -> None:
    buf = io.StringIO()
    cfg = alembic_config("postgresql://user@localhost/ratings")
    cfg.output_buffer = buf
    command.upgrade(cfg, "head", sql=True)
    sql = buf.getvalue()
    assert "CREATE TABLE ratings" in sql and "CREATE TABLE votes" in sql
    assert "ALTER TABLE ratings ADD COLUMN source VARCHAR(16) DEFAULT 'human' NOT NULL" in sql
    assert "TIMESTAMP WITH TIME ZONE" in sql and "PRAGMA" not in sql


@pytest.mark.skipif(
    not os.environ.get("AUDIO_THINKER_TEST_POSTGRES"),
    reason="set AUDIO_THINKER_TEST_POSTGRES to a PostgreSQL URL of an empty database to run",
)
def test_postgresql_live(tmp_path: Path) -> None:
    with Store(os.environ["AUDIO_THINKER_TEST_POSTGRES"], tmp_path / "media") as store:
        gen_ids = _seed(store, 5)
        _rate_concurrently(store, gen_ids, n_threads=8)
        assert _count(store, Rating) == 8 * 5 + 5
        assert store.counts()["ratings_by_annotator"]["shared"] == {"submitted": 5}


# ----------------------------------------------------------------------------------------- concurrency


def _rate_concurrently(store: Store, gen_ids: list[int], n_threads: int) -> None:
    """Each thread rates every generation as itself and as the shared annotator ``shared``."""
    barrier = threading.Barrier(n_threads)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            barrier.wait()
            for gid in gen_ids:
                store.rate(gid, f"thread-{t}", consistent=True, quality=0.5)
                store.rate(gid, "shared", consistent=t % 2 == 0, quality=t / 10)
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_concurrent_threads_lose_nothing(store: Store) -> None:
    gen_ids = _seed(store, 25)
    _rate_concurrently(store, gen_ids, n_threads=8)
    assert _count(store, Rating) == 8 * 25 + 25
    with store.session() as session:
        per_pair = session.execute(
            select(Rating.generation_id, Rating.annotator_id, func.count()).group_by(
                Rating.generation_id, Rating.annotator_id
            )
        ).all()
    assert len(per_pair) == 8 * 25 + 25 and all(n == 1 for *_, n in per_pair)
    assert {name: sum(by.values()) for name, by in store.counts()["ratings_by_annotator"].items()} == {
        **{f"thread-{t}": 25 for t in range(8)}, "shared": 25,
    }  # fmt: skip


def _process_worker(url: str, media: str, worker: int, gen_ids: list[int]) -> None:
    """Runs in a spawned process: 25 own ratings and 25 upserts onto the shared annotator's rows."""
    with Store(url, media) as store:
        for gid in gen_ids:
            store.rate(gid, f"proc-{worker}", consistent=True, quality=0.5, lead_time=1.0)
            store.rate(gid, "shared", consistent=bool(worker % 2), quality=worker / 10)


def test_concurrent_processes_lose_nothing(tmp_path: Path) -> None:
    url, media = _url(tmp_path / "ratings.db"), str(tmp_path / "media")
    with Store(url, media) as store:
        gen_ids = _seed(store, 25)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_process_worker, args=(url, media, w, gen_ids)) for w in range(4)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert [proc.exitcode for proc in procs] == [0, 0, 0, 0]
    with Store(url, media) as store:
        assert _count(store, Rating) == 4 * 25 + 25
        by_annotator = store.counts()["ratings_by_annotator"]
        assert by_annotator == {
            **{f"proc-{w}": {"submitted": 25} for w in range(4)},
            "shared": {"submitted": 25},
        }
        assert sorted(r.generation_id for r in store.ratings_for("proc-3")) == sorted(gen_ids)


# ----------------------------------------------------------------------------------- engine and config


def test_sqlite_pragmas_are_on(store: Store) -> None:
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    with sqlite3.connect(store.engine.url.database) as con:  # WAL is a property of the file
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    with pytest.raises(IntegrityError), store.session(write=True) as session:  # foreign keys enforced
        session.execute(
            text(
                "INSERT INTO ratings (generation_id, annotator_id, status, source, created_at, updated_at) "
                "VALUES (999, 999, 'draft', 'human', '2026-01-01', '2026-01-01')"
            )
        )
    assert _count(store, Rating) == 0


def test_env_var_and_default_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUDIO_THINKER_MEDIA", raising=False)
    env_db = tmp_path / "from-env" / "sub" / "env.db"
    monkeypatch.setenv("AUDIO_THINKER_DB", _url(env_db))
    with Store() as store:
        assert store.url == _url(env_db) and env_db.exists()
        assert store.media_dir == env_db.parent / "media"
    explicit = tmp_path / "explicit.db"
    with Store(_url(explicit)) as store:  # an explicit URL wins over the environment
        assert explicit.exists()

    monkeypatch.delenv("AUDIO_THINKER_DB")
    monkeypatch.chdir(tmp_path)
    with Store() as store:
        assert store.url == "sqlite:///annotations/ratings.db"
        assert (tmp_path / "annotations" / "ratings.db").exists()
        assert store.media_dir == Path("annotations") / "media"
        _seed(store, 1)
    monkeypatch.setenv("AUDIO_THINKER_MEDIA", str(tmp_path / "elsewhere"))
    with Store() as store:
        assert store.media_dir == tmp_path / "elsewhere" and store.counts()["generations"] == 1


def test_a_plain_path_is_a_sqlite_file_and_a_bad_url_one_line(tmp_path: Path) -> None:
    from audio_thinker.store import database_url

    with Store(str(tmp_path / "plain" / "ratings.db")) as store:  # a path, not a URL
        assert store.url == f"sqlite:///{tmp_path / 'plain' / 'ratings.db'}"
    assert (tmp_path / "plain" / "ratings.db").is_file()
    for bad in ("sqlit:///x.db", "postgresql+nodriver://u@h/db", "not a url://"):
        with pytest.raises(ValueError, match=r"^cannot use database URL") as err:
            Store(bad)
        assert "\n" not in str(err.value)
    assert database_url("sqlite:///a.db") == "sqlite:///a.db"
