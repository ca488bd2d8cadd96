"""Issue #24 item 9: a backup of the whole store (every rating with its labels, votes, comparisons, items,
generations, clips) restores into an empty store as the same rows, and over a non-empty one refuses
unless merging, which adds nothing twice. Through the API and the CLI."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from audio_thinker.audio import write_wav
from audio_thinker.store import STATUSES, BackupError, Store, backup, restore
from audio_thinker.store.__main__ import main as cli

TABLES = ("annotators", "clips", "items", "generations", "ratings", "votes", "comparisons", "settings")


def _clip(tmp_path: Path, freq: float) -> Path:
    t = np.arange(16000) / 16000
    path = tmp_path / f"tone-{freq:g}.wav"
    write_wav(path, 0.3 * np.sin(2 * np.pi * freq * t))
    return path


def _fill(st: Store, tmp_path: Path, who: str = "ann", freq: float = 440.0) -> None:
    """Two items (a synth one and a private upload), four generations, ratings of every status with every
    label, a comparison and a vote."""
    shared = st.add_item("How many beeps?", ["1", "2", "3"], answer="2", source="synth-aqa",
                         external_id=f"count-{freq:g}", clip=st.add_clip(_clip(tmp_path, freq)).hash,
                         meta={"events": [{"t": 0.6, "kind": "tone"}]})  # fmt: skip
    private = st.add_item("Is it high?", ["yes", "no"], source="upload", owner="bea",
                          clip=st.add_clip(_clip(tmp_path, freq * 2), original_name="voice note.wav").hash)  # fmt: skip
    think = "Beep 1 at 0.1 s. Beep 2 at 0.6 s: high. So two beeps."
    g1 = st.add_generation(
        shared.id, "tiny", "think", f"<think>{think}</think><answer>2</answer>", run="r1", step=3
    )
    g2 = st.add_generation(shared.id, "tiny", "no-think", "<answer>3</answer>")
    g3 = st.add_generation(private.id, "tiny", "think", "<think>It is high.</think><answer>yes</answer>")
    g4 = st.add_generation(shared.id, "tiny", "think", "<think>One beep.</think><answer>1</answer>")
    st.rate(g1.id, who, consistent=True, quality=0.7, flawed_span=(17, 40), comment="beep 2 is low, not high",
            lead_time=12.5)  # fmt: skip
    st.rate(g1.id, "bea", consistent=False, quality=0.2, comment="ünïcode ✓")
    st.rate(g3.id, "bea", consistent=True, quality=1.0)
    st.rate(g4.id, who, status="draft", quality=0.4)
    st.rate(g4.id, "bea", status="skipped")
    st.rate(g2.id, who, status="discarded")
    st.show_comparison(g1.id, g2.id, who)
    st.vote(g1.id, g2.id, "A", who, swapped=True)
    st.set_setting("overlap", 2)


def _rows(db: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(db) as con:
        return {t: con.execute(f"select * from {t} order by 1").fetchall() for t in TABLES}


def _media(st: Store) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in Path(st.media_dir).rglob("*.*")}


def test_backup_restores_into_an_empty_store_as_the_same_rows_and_clips(tmp_path):
    a_db, b_db = tmp_path / "a" / "ratings.db", tmp_path / "b" / "ratings.db"
    a_db.parent.mkdir()
    b_db.parent.mkdir()
    with Store(f"sqlite:///{a_db}") as a:
        _fill(a, tmp_path)
        written = backup(a, tmp_path / "backup.zip")
        media = _media(a)
    assert written == {"annotators": 2, "clips": 2, "items": 2, "generations": 4, "ratings": 6, "votes": 1,
                       "comparisons": 1, "settings": 1}  # fmt: skip
    with Store(f"sqlite:///{b_db}") as b:
        assert restore(b, tmp_path / "backup.zip") == written
        assert _media(b) == media and len(media) == 2
        # what the store's readers see is the same too: labels, annotator, times
        rated = {(r.annotator, r.generation_id): r for r in b.ratings(statuses=STATUSES)}
    assert _rows(b_db) == _rows(a_db)
    r = rated[("ann", 1)]
    assert (r.consistent, r.quality, r.flawed_span, r.comment, r.lead_time_s, r.status) == (
        True, 0.7, (17, 40), "beep 2 is low, not high", 12.5, "submitted"
    )  # fmt: skip


def _backed_up(tmp_path: Path) -> tuple[Path, Path]:
    """A filled store ``a`` backed up to ``tmp_path/a.zip``, and the path of a second store ``c`` (not made)."""
    a_db, c_db = tmp_path / "a" / "ratings.db", tmp_path / "c" / "ratings.db"
    a_db.parent.mkdir()
    c_db.parent.mkdir()
    with Store(f"sqlite:///{a_db}") as a:
        _fill(a, tmp_path)
        backup(a, tmp_path / "a.zip")
    return a_db, c_db


def test_restore_over_a_store_with_rows_refuses_unless_merging_and_merging_adds_nothing_twice(tmp_path):
    a_db, c_db = _backed_up(tmp_path)
    with Store(f"sqlite:///{c_db}") as c:
        _fill(c, tmp_path, who="cat", freq=300.0)  # another store: cat, bea and other clips
        c.rate(1, "bea", consistent=True, quality=0.9)  # bea changed her mind here later than in a's backup
        before = _rows(c_db)
        with pytest.raises(BackupError, match="not empty"):
            restore(c, tmp_path / "a.zip")
        assert _rows(c_db) == before  # refused: nothing written
        added = restore(c, tmp_path / "a.zip", merge=True)
        assert added["annotators"] == 1 and added["items"] == 2 and added["generations"] == 4
        assert added["ratings"] == 6 and added["votes"] == 1 and added["comparisons"] == 1
        assert added["settings"] == 0  # the store's own setting wins
        merged = _rows(c_db)
        assert restore(c, tmp_path / "a.zip", merge=True) == dict.fromkeys(TABLES, 0)  # again: nothing new
        assert _rows(c_db) == merged
        names = {r.annotator for r in c.ratings(statuses=STATUSES)}
        assert names == {"ann", "bea", "cat"}
        assert len(_media(c)) == 4
    # every rating of the backup is in the merged store once, with its labels
    with sqlite3.connect(c_db) as con:
        keys = con.execute(
            "select a.name, i.external_id, i.clip_hash, g.raw_text, r.status, r.quality, r.comment "
            "from ratings r join annotators a on a.id = r.annotator_id join generations g on g.id = "
            "r.generation_id join items i on i.id = g.item_id"
        ).fetchall()
    assert len(keys) == len(set(keys)) == 12, sorted(map(repr, keys))


def test_the_cli_backs_up_restores_refuses_and_says_why_in_one_line(tmp_path, capsys):
    a_db, b_db = tmp_path / "a" / "ratings.db", tmp_path / "b" / "ratings.db"
    a_db.parent.mkdir()
    b_db.parent.mkdir()
    with Store(f"sqlite:///{a_db}") as a:
        _fill(a, tmp_path)
    out = tmp_path / "backup.zip"
    assert cli(["backup", "--db", f"sqlite:///{a_db}", "--out", str(out)]) == 0
    assert cli(["restore", "--db", f"sqlite:///{b_db}", "--from", str(out)]) == 0
    assert _rows(b_db) == _rows(a_db)
    capsys.readouterr()
    assert cli(["restore", "--db", f"sqlite:///{b_db}", "--from", str(out)]) == 1
    err = capsys.readouterr().err
    assert "not empty" in err and "--merge" in err and len(err.strip().splitlines()) == 1
    assert cli(["restore", "--db", f"sqlite:///{b_db}", "--from", str(out), "--merge"]) == 0
    assert _rows(b_db) == _rows(a_db)
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    assert (
        cli(["restore", "--db", f"sqlite:///{tmp_path / 'x.db'}", "--from", str(tmp_path / "junk.zip")]) == 1
    )
    err = capsys.readouterr().err
    assert "not a store backup" in err and "Traceback" not in err


def test_a_store_holding_only_settings_is_empty_to_restore_and_takes_the_backups_settings(tmp_path, capsys):
    """An admin who saved the queue settings on a fresh store (settings rows, nothing rated) can still
    restore into it: the backup's settings replace the store's, a setting the backup lacks stays."""
    a_db, b_db = tmp_path / "a" / "ratings.db", tmp_path / "b" / "ratings.db"
    a_db.parent.mkdir()
    b_db.parent.mkdir()
    with Store(f"sqlite:///{a_db}") as a:
        _fill(a, tmp_path)  # overlap 2
        backup(a, tmp_path / "backup.zip")
    with Store(f"sqlite:///{b_db}") as b:
        b.set_setting("overlap", 5)
        b.set_setting("gold_rate", 0.2)
    assert cli(["restore", "--db", f"sqlite:///{b_db}", "--from", str(tmp_path / "backup.zip")]) == 0, (
        capsys.readouterr().err
    )
    a_rows, b_rows = _rows(a_db), _rows(b_db)
    assert {t: b_rows[t] for t in TABLES[:-1]} == {t: a_rows[t] for t in TABLES[:-1]}
    with Store(f"sqlite:///{b_db}") as b:
        assert (b.get_setting("overlap"), b.get_setting("gold_rate")) == (2, 0.2)


def test_postgresql_sequences_restart_after_the_restored_ids_and_at_1_in_an_empty_table():
    """``sequence_sql`` under PostgreSQL's ``setval`` rule (``setval(seq, v)`` or ``setval(seq, v, true)``:
    the next id is v + 1; ``setval(seq, v, false)``: it is v), evaluated by SQLite with the two functions
    defined to follow that rule, on an empty table and on one with ids 1 and 7."""
    from audio_thinker.store.backup import sequence_sql

    following: dict[str, int] = {}

    def setval(seq: str, value: int, is_called: int = 1) -> int:
        following[seq] = value + 1 if is_called else value
        return value

    con = sqlite3.connect(":memory:")
    con.create_function("pg_get_serial_sequence", 2, lambda table, column: f"{table}_{column}_seq")
    con.create_function("setval", 2, setval)
    con.create_function("setval", 3, setval)
    con.execute("create table ratings (id integer primary key)")
    con.execute(sequence_sql("ratings"))
    assert following == {"ratings_id_seq": 1}  # an empty table's next id is 1, not 2
    con.executemany("insert into ratings values (?)", [(1,), (7,)])
    con.execute(sequence_sql("ratings"))
    assert following == {"ratings_id_seq": 8}


def _rewritten(src: Path, dst: Path, change) -> Path:
    """A copy of the backup ``src`` whose store.jsonl lines went through ``change`` (a list -> list)."""
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name == "store.jsonl":
                data = ("\n".join(change(data.decode().splitlines())) + "\n").encode()
            zout.writestr(name, data)
    return dst


def _drop(table: str, row_id: int):
    import json

    def change(lines: list[str]) -> list[str]:
        return [
            x for x in lines if not (f'"table": "{table}"' in x and json.loads(x)["row"].get("id") == row_id)
        ]

    return change


def _edit(table: str, edit):
    import json

    def change(lines: list[str]) -> list[str]:
        out = [lines[0]]
        for x in lines[1:]:
            rec = json.loads(x)
            if rec["table"] == table:
                edit(rec["row"])
            out.append(json.dumps(rec))
        return out

    return change


MALFORMED = {
    "a rating names a missing generation": (_drop("generations", 1), "generation_id 1"),
    "an annotator without an id": (
        _edit("annotators", lambda r: r.pop("id")),
        "row of annotators in the backup has no id",
    ),
    "an item owned by a missing annotator": (_edit("items", lambda r: r.update(owner_id=99)), "owner_id 99"),
    "a header that is a list": (lambda lines: ["[1]"] + lines[1:], "not a version-1 store backup"),
    "a row that is a number": (lambda lines: lines + ["5"], "not a row of a known table"),
    "two ratings with one id": (
        lambda lines: lines + [x for x in lines if '"ratings"' in x][:1],
        "two ratings",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
@pytest.mark.parametrize("merge", [False, True], ids=["into-empty", "merge"])
def test_a_malformed_backup_is_one_line_exit_1_and_leaves_the_store_as_it_was(tmp_path, capsys, case, merge):
    a_db, c_db = _backed_up(tmp_path)
    with Store(f"sqlite:///{c_db}") as c:
        if merge:
            _fill(c, tmp_path, who="cat", freq=300.0)
    before, media_before = _rows(c_db), sorted(p.name for p in (c_db.parent / "media").rglob("*.*"))
    change, named = MALFORMED[case]
    bad = _rewritten(tmp_path / "a.zip", tmp_path / "bad.zip", change)
    capsys.readouterr()
    argv = ["restore", "--db", f"sqlite:///{c_db}", "--from", str(bad)] + (["--merge"] if merge else [])
    assert cli(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and named in err, err
    assert _rows(c_db) == before
    assert sorted(p.name for p in (c_db.parent / "media").rglob("*.*")) == media_before


def test_a_backup_clip_whose_hash_is_a_path_is_refused(tmp_path, capsys):
    """A clip row's hash and ext make the media file's path: a hash like ``../../x`` is refused, not stored."""
    a_db, b_db = _backed_up(tmp_path)

    def escape(lines: list[str]) -> list[str]:
        import json

        out = [lines[0]]
        for x in lines[1:]:
            rec = json.loads(x)
            for key in ("hash", "clip_hash"):
                if rec["row"].get(key):
                    rec["row"][key] = "../../" + rec["row"][key][6:]
            out.append(json.dumps(rec))
        return out

    bad = _rewritten(tmp_path / "a.zip", tmp_path / "bad.zip", escape)
    assert cli(["restore", "--db", f"sqlite:///{b_db}", "--from", str(bad)]) == 1
    assert "bad hash" in capsys.readouterr().err
    assert all(not rows for rows in _rows(b_db).values())
