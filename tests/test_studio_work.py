"""Issue #17, lost or corrupted work: duplicates and refused ratings/votes, over ``gradio_client`` against
the real studio server (auth on, a temporary SQLite database, the shipped tiny model)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import studio_harness
from studio_harness import configured_service

from app.services import rating as rating_service
from app.services import state as state_service

USERS = {"ann": "ann-pw", "bea": "bea-pw", "cat": "cat-pw"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("studio-work")


@pytest.fixture(scope="module")
def configured(workdir, shipped_lm):
    with configured_service(workdir, shipped_lm, USERS, "ann") as service:
        yield service


def client(url: str, user: str):
    return studio_harness.client(url, user, USERS[user])


def count(workdir: Path, table: str) -> int:
    with sqlite3.connect(workdir / "ratings.db") as con:
        return con.execute(f"select count(*) from {table}").fetchone()[0]


def ask(c, example) -> dict:
    from gradio_client import handle_file

    path, item = example
    return c.predict(handle_file(path), item["question"], "\n".join(item["choices"]), api_name="/compare")


def test_identical_traces_are_stored_once_and_queued_once_per_annotator(server, configured, workdir, example):
    ann, bea, cat = client(server, "ann"), client(server, "bea"), client(server, "cat")
    first = ask(ann, example)
    n_gen = count(workdir, "generations")
    again = ask(ann, example)  # the same clip and question: the same (deterministic) answers
    theirs = ask(bea, example)
    ids = lambda r: (r["a"]["generation_id"], r["b"]["generation_id"])  # noqa: E731
    assert ids(again) == ids(first) == ids(theirs)
    assert count(workdir, "generations") == n_gen
    bea.predict(*ids(theirs), "A", api_name="/vote")  # bea was shown it too: she may vote
    # copies already in a database (an older studio, or two runs importing the same text) queue once
    st = state_service.store()
    item = st.get_item(first["item_id"])
    raw = st.get_generation(first["a"]["generation_id"]).raw_text
    copies = [
        st.add_generation(item.id, "tiny", "think", raw, run=run).id for run in ("studio", "run-1", "run-2")
    ]
    queue = [t["generation_id"] for t in cat.predict(200, api_name="/queue")["traces"]]
    same = [g for g in queue if g in {first["a"]["generation_id"], *copies}]
    assert same == [first["a"]["generation_id"]]
    assert rating_service.progress("cat")["todo"] == len(queue)
    cat.predict(first["a"]["generation_id"], True, 0.6, api_name="/rate")
    queue = [t["generation_id"] for t in cat.predict(200, api_name="/queue")["traces"]]
    assert not set(queue) & {first["a"]["generation_id"], *copies}


def test_no_think_answers_take_no_consistency_or_quality_rating(server, configured, workdir, example):
    from gradio_client.exceptions import AppError

    bea = client(server, "bea")
    r = ask(bea, example)
    no_think = r["b"]["generation_id"]
    assert r["b"]["mode"] == "no-think" and not r["b"]["think"]
    before = count(workdir, "ratings")
    for args in (
        (no_think, True, 0.8),
        (no_think, False, None, None, None, "", "draft"),
        (no_think, None, 0.3, None, None, "", "draft"),
    ):
        with pytest.raises(AppError, match="no reasoning"):
            bea.predict(*args, api_name="/rate")
    assert count(workdir, "ratings") == before
    assert no_think not in {t["generation_id"] for t in bea.predict(200, api_name="/queue")["traces"]}
