"""The studio: service layer, statistics, UI handlers, and the named API endpoints through gradio_client
against the app launched in-process (auth on, a temporary SQLite database, the shipped tiny model)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import studio_harness
from studio_harness import configured_service

from app.services import auth as auth_service
from app.services import compare as compare_service
from app.services import importing as importing_service
from app.services import rating as rating_service
from app.services import runs as runs_service
from app.services import state as state_service

USERS = {"alice": "alice-pw", "bob": "bob-pw"}


# ----------------------------------------------------------------------------------------------- fixtures


def _synth_run(root: Path) -> Path:
    """A fake GRPO run (history, completions with synth meta) and an evaluation folder under ``root``."""
    from audio_thinker import synth

    run = root / "grpo-demo"
    run.mkdir(parents=True)
    completions, predictions = [], []
    for k, task in enumerate(("count", "pitch_level", "high_low_difference")):
        item, _ = synth.generate_item(task, 7000, k, "grpo")
        think = item["reasoning"]
        base = {
            key: item[key]
            for key in ("id", "question", "choices", "answer", "difficulty", "sub-category", "events")
        }
        completions.append({
            "step": 1, "prompt_mode": "adaptive", "completion": f"<think>{think}</think><answer>{item['answer']}</answer>",
            **base, "synth": {"task": task, "seed": 7000, "index": k, "split": "grpo"}, "total": 1.0, "think": True,
            "correct": True,
        })  # fmt: skip
        completions.append({"step": 1, "prompt_mode": "adaptive", "completion": f"<answer>{item['answer']}</answer>",
                            **base, "synth": {"task": task, "seed": 7000, "index": k, "split": "grpo"}})  # fmt: skip
        predictions.append({**base, "audio_id": f"./audio/{item['id']}.wav", "model_output":
                            f"<think>{think}</think><answer>{item['answer']}</answer>", "mode": "think"})  # fmt: skip
    (run / "completions.jsonl").write_text("".join(json.dumps(c) + "\n" for c in completions))
    history = [
        {"step": s, "reward": 1 + 0.1 * s, "accuracy": 0.5 + 0.05 * s, "no_think_rate": 0.3, "rewards/format/mean": 1.0,
         "accuracy/easy": 0.9, "accuracy/hard": 0.4 + 0.05 * s, "no_think_rate/easy": 0.6, "no_think_rate/hard": 0.2}
        for s in range(1, 5)
    ]  # fmt: skip
    (run / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    (run / "ablation.md").write_text("| run | acc all |\n|---|---|\n| base | 0.90 |\n| full | 0.95 |\n")
    ev = root / "eval-think"
    ev.mkdir()
    (ev / "predictions.json").write_text(json.dumps(predictions))
    return run


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("studio")
    _synth_run(root / "runs")
    return root


@pytest.fixture(scope="module")
def configured(workdir, shipped_lm):
    """The service configured for a temporary database and runs folder, with auth (alice is admin)."""
    with configured_service(workdir, shipped_lm, USERS, "alice") as service:
        yield service


@pytest.fixture(scope="module")
def imported(configured) -> None:
    """The fake run's and the evaluation's traces in the store (importing again adds nothing), so that a test
    that rates them does not depend on an earlier test having imported them."""
    importing_service.import_traces("alice", "grpo-demo/completions.jsonl")
    importing_service.import_traces("alice", "eval-think/predictions.json")


def client(url: str, user: str):
    return studio_harness.client(url, user, USERS[user])


def db(workdir: Path) -> sqlite3.Connection:
    return sqlite3.connect(workdir / "ratings.db")


def req(user: str | None) -> SimpleNamespace:
    """A stand-in for gr.Request with a server-side user name."""
    return SimpleNamespace(username=user)


# ------------------------------------------------------------------------------------------- statistics


def test_cohen_kappa_and_krippendorff_alpha_known_values():
    from app.stats import cohen_kappa, krippendorff_alpha, mean_kappa, pairwise_kappa

    assert cohen_kappa([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(0.5)
    assert cohen_kappa([True, False], [True, False]) == pytest.approx(1.0)
    assert cohen_kappa([1, 1], [1, 1]) == 1.0 and cohen_kappa([], []) is None
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 coders, 12 units, interval α = 0.849
    rows = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = [[v for v in col if v is not None] for col in zip(*rows, strict=True)]
    assert krippendorff_alpha(units) == pytest.approx(0.849, abs=5e-4)
    assert krippendorff_alpha({1: [0.5, 0.5], 2: [0.9, 0.9], 3: [0.1, 0.1]}) == pytest.approx(1.0)
    assert krippendorff_alpha({1: [0.5]}) is None
    pairs = pairwise_kappa(
        {"a": {1: True, 2: False, 3: True}, "b": {1: True, 2: False, 4: True}, "c": {9: True}}
    )
    assert [(p.a, p.b, p.n) for p in pairs] == [("a", "b", 2)] and mean_kappa(pairs) == pytest.approx(1.0)


def test_bradley_terry_recovers_strengths_with_intervals():
    from app.stats import bradley_terry, bt_bootstrap

    rng = np.random.default_rng(0)
    true = np.array([1.0, 2.0, 4.0, 0.5])
    comps = []
    for _ in range(3000):
        i, j = rng.choice(4, 2, replace=False)
        comps.append((int(i), int(j), float(rng.random() < true[i] / (true[i] + true[j]))))
    p = bradley_terry(comps, 4)
    assert np.allclose(p / p[0], true / true[0], rtol=0.15)
    ranked = bt_bootstrap(comps, ["a", "b", "c", "d"], rounds=50)
    assert [r.name for r in ranked] == ["c", "b", "a", "d"]
    assert all(r.low <= r.rating <= r.high for r in ranked)
    # an undefeated player stays finite; ties count half
    assert np.isfinite(bradley_terry([(0, 1, 1.0)] * 5 + [(1, 2, 0.5)], 3)).all()


# ------------------------------------------------------------------------------------- service, no server


def test_parse_users_env_and_file(tmp_path):
    from app.services.state import _parse_users

    assert _parse_users("a:x, b:y:z") == {"a": "x", "b": "y:z"}
    f = tmp_path / "users.txt"
    f.write_text("# annotators\nann1:p,1\n\nann2:q\n")
    assert _parse_users(str(f)) == {"ann1": "p,1", "ann2": "q"}
    with pytest.raises(ValueError, match="user:password"):
        _parse_users("nopassword")


def test_identity_comes_from_the_request_only(monkeypatch):
    monkeypatch.delenv("AUDIO_THINKER_USERS", raising=False)
    monkeypatch.delenv("SPACE_ID", raising=False)
    old = state_service.settings()
    try:
        state_service.configure(state_service.Settings())
        assert auth_service.annotator(req(None)) == auth_service.LOCAL_ANNOTATOR and auth_service.is_admin(
            "local"
        )
        state_service.configure(state_service.Settings(users={"alice": "x"}, admins={"alice"}))
        assert auth_service.annotator(req("alice")) == "alice"
        with pytest.raises(state_service.UserError, match="sign in"):
            auth_service.annotator(req(None))
        assert not auth_service.is_admin("bob")
        state_service.configure(state_service.Settings(oauth=True))
        session = {"oauth_info": {"userinfo": {"preferred_username": "hf-user"}}}
        oauth_req = SimpleNamespace(username=None, request=SimpleNamespace(scope={"session": session}))
        assert auth_service.annotator(oauth_req) == "hf-user"
    finally:
        state_service.configure(old)


def test_sentence_spans_and_vote_mapping():
    from app.services.compare import screen_vote_to_stored
    from app.services.rating import sentence_spans

    think = (
        "Beep 1 at 0.1 s: high (1 high, 0 low). Beep 2 at 0.5 s: low. That is 2 beeps.  So the answer is 1."
    )
    spans = sentence_spans(think)
    assert [think[s:e] for s, e in spans] == [
        "Beep 1 at 0.1 s: high (1 high, 0 low).", "Beep 2 at 0.5 s: low.", "That is 2 beeps.", "So the answer is 1.",
    ]  # fmt: skip
    assert sentence_spans("") == [] and sentence_spans("no period") == [(0, 9)]
    assert screen_vote_to_stored("left", False) == "A" and screen_vote_to_stored("left", True) == "B"
    assert screen_vote_to_stored("right", True) == "A" and screen_vote_to_stored("tie", True) == "tie"


def test_import_runs_and_evaluations_once(configured, workdir):
    files = importing_service.importable_files()
    assert files == ["eval-think/predictions.json", "grpo-demo/completions.jsonl"]
    with pytest.raises(state_service.UserError, match="admins"):
        importing_service.import_traces("bob", files[1])
    with pytest.raises(state_service.UserError, match="not a file under the runs folder"):
        importing_service.import_traces("alice", "../ratings.db")
    first = importing_service.import_traces("alice", "grpo-demo/completions.jsonl")
    assert first == {"records": 6, "imported": 3, "already": 0, "no_think": 3, "no_audio": 0, "bad": 0}
    again = importing_service.import_traces("alice", "grpo-demo/completions.jsonl")
    assert again["already"] == 3 and again["imported"] == 0
    ev = importing_service.import_traces("alice", "eval-think/predictions.json")
    assert ev["imported"] == 3  # same items (synth ids), a different run: new generations, audio re-rendered
    with db(workdir) as con:
        assert con.execute("select count(*) from items where source = 'synth-aqa'").fetchone()[0] == 3
        assert con.execute("select count(*) from clips").fetchone()[0] == 3
        runs = dict(con.execute("select run, count(*) from generations group by run").fetchall())
    assert runs == {"grpo-demo": 3, "eval-think": 3}
    media = Path(state_service.store().media_dir)
    assert all(len(p.stem) == 64 for p in media.rglob("*.wav"))  # stored by content hash


def test_rate_queue_skip_draft_and_progress(configured, imported):
    user = "carol"
    before = rating_service.progress(user)
    first = rating_service.next_trace(user)
    assert first is not None and first.audio_path and first.sentences
    rating_service.rate(user, first.generation_id, status="skipped")
    second = rating_service.next_trace(user)
    assert second is not None and second.generation_id != first.generation_id
    rating_service.rate(user, second.generation_id, consistent=True, quality=0.55, status="draft")
    again = rating_service.trace(user, second.generation_id)
    assert again.draft["status"] == "draft" and again.draft["quality"] == 0.6  # snapped to tenths
    span = again.sentences[0]
    rating_service.rate(
        user, second.generation_id, consistent=False, quality=0.3, flawed_span=span, comment="off"
    )
    after = rating_service.progress(user)
    assert after["submitted"] == before["submitted"] + 1 and after["skipped"] == 1
    queue = [g.id for g in rating_service.queue(user, limit=100)]
    assert queue[-1] == first.generation_id and second.generation_id not in queue  # skipped ones come last
    with pytest.raises(state_service.UserError, match="consistent"):
        rating_service.rate(user, second.generation_id, quality=0.5)  # a submit needs both fields
    with pytest.raises(state_service.UserError):
        rating_service.rate(user, second.generation_id, consistent=True, quality=0.5, flawed_span=(0, 10_000))


def test_queue_puts_the_learned_judges_least_sure_traces_first(configured, imported, monkeypatch):
    oldest_first = [g.id for g in rating_service.queue("erin", limit=50)]
    assert oldest_first == sorted(oldest_first) and len(oldest_first) >= 3
    probs = np.linspace(0.99, 0.5, len(oldest_first))  # the oldest is the surest

    class FakeJudge:  # (reward, P(consistent)) per request, as LearnedJudge.raw_scores; asked oldest first
        def raw_scores(self, requests):
            assert len(requests) == len(probs)
            return np.zeros(len(requests)), probs

    monkeypatch.setattr(rating_service, "learned_judge", lambda: FakeJudge())
    monkeypatch.setattr(state_service.STATE, "judge_scores", {})
    assert [g.id for g in rating_service.queue("erin", limit=50)] == oldest_first[
        ::-1
    ]  # closest to 0.5 first


def test_a_reward_model_that_cannot_load_is_said_not_swallowed(configured, imported, workdir, caplog):
    """A reward-model folder that cannot be loaded leaves the queue oldest first, is logged, and the Rate tab
    tells the annotator in one line (without server paths); once it is gone, nothing is said."""
    import logging

    from app import rate

    folder = workdir / "rm"
    folder.mkdir(exist_ok=True)
    (folder / "reward_model.json").write_text("{half written")
    try:
        with caplog.at_level(logging.WARNING), pytest.warns(UserWarning, match="reward model could not be"):
            rate.load(req("fay"))
        assert any("learned judge" in r.getMessage() for r in caplog.records)
        problem = rating_service.judge_problem()
        assert "\n" not in problem and str(workdir) not in problem
        gens = [g.id for g in rating_service.queue("fay", limit=50)]
        assert gens == sorted(gens)
    finally:
        (folder / "reward_model.json").unlink()
    rating_service.queue("fay", limit=5)
    assert rating_service.judge_problem() is None


def test_database_unavailable_is_a_visible_error(configured, tmp_path):
    old = state_service.settings()
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"definitely not an SQLite file " * 100)
    try:
        for url in (f"sqlite:///{blocker}/ratings.db", f"sqlite:///{corrupt}"):
            state_service.configure(old, db_url=url)
            with pytest.raises(state_service.StoreUnavailable, match="Nothing was saved"):
                rating_service.rate("alice", 1, consistent=True, quality=0.5)
    finally:
        state_service.configure(old)


def test_runs_tab_data_and_no_path_escape(configured):
    from app import runs

    assert runs_service.list_runs()[0] == "grpo-demo"
    assert len(runs_service.run_history("grpo-demo")) == 4
    head, reward_fig, acc_fig, nt_fig, table, images, samples = runs.show("grpo-demo")
    assert "4 logged steps" in head and "| full | 0.95 |" in table
    assert {line.get_label() for line in acc_fig["value"].axes[0].get_lines()} == {"easy", "hard", "all"}
    assert samples["value"]["data"][0][-1].startswith("<think>") and not images["visible"]
    for bad in ("..", "../..", "/etc", "grpo-demo/../../"):
        with pytest.raises(state_service.UserError):
            runs_service.run_history(bad)


# ------------------------------------------------------------------------------------------- UI handlers


def test_compare_handler_streams_then_unlocks_votes(configured, example):
    from app import compare

    path, item = example
    steps = list(
        compare.ask(path, item["question"], "\n".join(item["choices"]), "think vs no-think", req("alice"))
    )
    assert len(steps) >= 3
    for step in steps[:-1]:
        assert step[0] is None and all(not b["interactive"] for b in step[5:9])  # no vote while streaming
    state, chat_l, _, chat_r, _ = steps[-1][:5]
    assert all(b["interactive"] for b in steps[-1][5:9])
    assert {state["modes"][0], state["modes"][1]} == {"think", "no-think"}
    left_mode = state["sides"][0].mode
    assert (left_mode == "no-think") == state["swapped"]
    assert chat_l[-1]["role"] == "assistant" and chat_r[-1]["role"] == "assistant"
    out = compare.cast_vote("left", state, req("alice"))
    assert "Saved" in out[-1] and out[0]["voted"]
    n_votes = len(list(state_service.store().votes()))
    again = compare.cast_vote("right", out[0], req("alice"))  # one vote per comparison: a second click
    assert len(again) == compare.VOTE_OUTPUTS  # changes nothing, quietly (no error toast or boxes)
    votes = list(state_service.store().votes())
    assert len(votes) == n_votes
    last = votes[-1]
    assert last.swapped == state["swapped"] and last.choice == ("B" if state["swapped"] else "A")


def test_streaming_survives_worker_thread_hops(configured, example):
    """Gradio resumes a streaming handler on any free worker thread; every step runs on a new one here."""
    import threading

    path, item = example
    stream = compare_service.compare_stream(
        path, item["question"], item["choices"], "think vs adaptive", save=False
    )
    last = None
    while True:
        box: dict = {}

        def step(box: dict = box) -> None:
            try:
                box["value"] = next(stream)
            except StopIteration:
                box["stop"] = True
            except Exception as err:  # re-raised below, on the test's thread
                box["error"] = err

        worker = threading.Thread(target=step)
        worker.start()
        worker.join()
        if "error" in box:
            raise box["error"]
        if "stop" in box:
            break
        last = box["value"]
    assert last is not None and last.finished and last.a.tokens > 5


def test_rate_handler_submits_for_the_request_user(configured, imported):
    from app import rate

    shown = rate.load(req("dave"))
    gen_id = shown[0]
    assert gen_id is not None and "<sup>1</sup>" in shown[5]
    flaw = shown[6]["choices"][1][1]
    nxt = rate.act("submit", gen_id, shown[1], flaw, "no", "0.4", "beep 2 is wrong", req("dave"))
    assert nxt[0] != gen_id
    mine = rating_service.my_ratings("dave")
    assert (
        mine[-1]["generation_id"] == gen_id and mine[-1]["quality"] == 0.4 and mine[-1]["consistent"] is False
    )
    assert mine[-1]["flawed_span"] == [int(x) for x in flaw.split(":")] and mine[-1]["lead_time_s"] >= 0


# ------------------------------------------------------------------------------------------ API (client)


def test_api_compare_vote_rate_export(server, configured, workdir, example):
    path, item = example
    from gradio_client import handle_file

    alice = client(server, "alice")
    named = alice.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/compare", "/vote", "/rate", "/export"} <= set(named)
    for name, spec in named.items():  # nobody can name the annotator
        assert not {p["parameter_name"] for p in spec["parameters"]} & {"annotator", "user", "username"}, name
    with db(workdir) as con:
        n_gen = con.execute("select count(*) from generations").fetchone()[0]
    r = alice.predict(handle_file(path), item["question"], "\n".join(item["choices"]), api_name="/compare")
    a, b = r["a"], r["b"]
    assert (a["mode"], b["mode"]) == ("think", "no-think") and a["output_mode"] == "think" and a["think"]
    assert a["completion_tokens"] > b["completion_tokens"] > 0 and a["latency_s"] > 0
    with db(workdir) as con:  # asked before (the compare handler test): the identical answers are reused
        assert con.execute("select count(*) from generations").fetchone()[0] <= n_gen + 2
        known = {row[0] for row in con.execute("select id from generations")}
        assert {a["generation_id"], b["generation_id"]} <= known
        clip = con.execute("select hash, ext from clips where hash = ?", (r["clip_hash"],)).fetchone()
        src = con.execute("select source, answer from items where id = ?", (r["item_id"],)).fetchone()
    assert clip is not None and src == ("synth-aqa", item["answer"])  # an example keeps its gold answer
    assert (Path(state_service.store().media_dir) / clip[0][:2] / f"{clip[0]}.{clip[1]}").is_file()

    v = alice.predict(a["generation_id"], b["generation_id"], "B", True, api_name="/vote")
    assert v["choice"] == "B" and v["swapped"] is True and v["annotator"] == "alice"
    rating = alice.predict(a["generation_id"], True, 0.7, 0, 5, "first beep", api_name="/rate")
    assert (
        rating["annotator"] == "alice" and rating["flawed_span"] == [0, 5] and rating["status"] == "submitted"
    )
    with db(workdir) as con:
        row = con.execute(
            "select a.name, r.consistent, r.quality, r.comment from ratings r join annotators a on a.id = r.annotator_id "
            "where r.id = ?", (rating["rating_id"],),
        ).fetchone()  # fmt: skip
    assert row == ("alice", 1, 0.7, "first beep")

    exported = Path(alice.predict("jsonl", api_name="/export"))
    rows = [json.loads(line) for line in exported.read_text().splitlines()]
    assert rows and {"prompt", "chosen", "rejected"} <= set(rows[0])
    trl = [
        json.loads(line) for line in Path(alice.predict("trl", api_name="/export")).read_text().splitlines()
    ]
    assert set(trl[0]) == {"prompt", "chosen", "rejected", "margin"}


def test_api_isolation_between_annotators(server, configured, imported, workdir):
    from gradio_client.exceptions import AppError

    alice, bob = client(server, "alice"), client(server, "bob")
    gen = alice.predict(5, api_name="/queue")["traces"][0]["generation_id"]
    mine = alice.predict(gen, False, 0.2, None, None, "alice's note", api_name="/rate")
    # bob cannot read it ...
    with pytest.raises(AppError, match="No rating"):
        bob.predict(mine["rating_id"], api_name="/get_rating")
    assert all(r["annotator"] == "bob" for r in bob.predict(api_name="/my_ratings")["ratings"])
    assert mine["rating_id"] not in {r["rating_id"] for r in bob.predict(api_name="/my_ratings")["ratings"]}
    # ... nor change it: rating the same trace writes bob's own row
    theirs = bob.predict(gen, True, 1.0, None, None, "bob's note", api_name="/rate")
    assert theirs["rating_id"] != mine["rating_id"] and theirs["annotator"] == "bob"
    again = alice.predict(mine["rating_id"], api_name="/get_rating")
    assert (again["consistent"], again["quality"], again["comment"]) == (False, 0.2, "alice's note")
    # bob's export holds only his own ratings; drafts, skips and discards stay his too
    bob_rows = [json.loads(x) for x in Path(bob.predict("trl", api_name="/export")).read_text().splitlines()]
    assert bob_rows and {r["annotator"] for r in bob_rows} == {"bob"}
    assert "alice's note" not in json.dumps(bob_rows)
    with pytest.raises(AppError):
        bob.predict(gen, None, None, None, None, "", "bogus-status", api_name="/rate")
    # the UI's own events are not callable by clients
    with pytest.raises(ValueError, match="Cannot find a function with `api_name`: /rate_submit"):
        bob.predict(api_name="/rate_submit")  # the client refuses private endpoints
    with db(workdir) as con:
        rows = con.execute(
            "select a.name, r.quality from ratings r join annotators a on a.id = r.annotator_id "
            "where r.generation_id = ? and a.name in ('alice', 'bob')",
            (gen,),
        ).fetchall()  # fmt: skip
    assert sorted(rows) == [("alice", 0.2), ("bob", 1.0)]


def test_api_bad_upload_is_refused_and_nothing_stored(server, configured, workdir, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    fake = tmp_path / "notes.wav"
    fake.write_text("this is not audio, just text pretending to be a wav file\n" * 20)
    media = Path(state_service.store().media_dir)
    files_before = sorted(media.rglob("*"))
    with db(workdir) as con:
        before = [
            con.execute(f"select count(*) from {t}").fetchone()[0] for t in ("clips", "items", "generations")
        ]
    with pytest.raises(AppError) as err:
        client(server, "alice").predict(
            handle_file(str(fake)), "How many beeps?", "1\n2", api_name="/compare"
        )
    msg = str(err.value)
    assert "cannot be used as audio" in msg and "Traceback" not in msg and str(tmp_path) not in msg
    with db(workdir) as con:
        after = [
            con.execute(f"select count(*) from {t}").fetchone()[0] for t in ("clips", "items", "generations")
        ]
    assert after == before and sorted(media.rglob("*")) == files_before


def test_documented_client_example_runs(server, example):
    from app import api

    path, _ = example
    code = api.CLIENT_EXAMPLE.replace("http://127.0.0.1:7860", server).replace("clip.wav", path)
    code = code.replace('("alice", "secret")', f'("alice", "{USERS["alice"]}")')
    scope: dict = {}
    exec(compile(code, "client_example", "exec"), scope)  # noqa: S102 (our own documented example)
    assert scope["r"]["a"]["generation_id"] and Path(scope["path"]).is_file()
