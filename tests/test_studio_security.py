"""Issue #17, security and privacy: what another signed-in annotator (or an anonymous visitor) would try,
over ``gradio_client`` and plain HTTP against the real studio server (auth on, a temporary SQLite
database, the shipped tiny model). ``ann`` is the admin (A), ``bea`` an annotator (B)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import studio_harness
from studio_harness import configured_service

from app.services import reward as reward_service
from app.services import state as state_service

USERS = {"ann": "ann-pw", "bea": "bea-pw", "cat": "cat-pw"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("studio-security")


@pytest.fixture(scope="module")
def configured(workdir, shipped_lm):
    # the model is given; its path on the server is only a label that must not leak
    label = str(workdir / "models" / "grpo-final")
    with configured_service(workdir, shipped_lm, USERS, "ann", model_path=label) as service:
        yield service


def client(url: str, user: str):
    return studio_harness.client(url, user, USERS[user])


def db(workdir: Path) -> sqlite3.Connection:
    return sqlite3.connect(workdir / "ratings.db")


def ask(c, example) -> dict:
    from gradio_client import handle_file

    path, item = example
    return c.predict(handle_file(path), item["question"], "\n".join(item["choices"]), api_name="/compare")


# ------------------------------------------------------------------------------------------------ votes


def test_one_vote_per_comparison_and_user_only_on_what_they_were_shown(server, configured, workdir, example):
    from gradio_client.exceptions import AppError

    ann, bea = client(server, "ann"), client(server, "bea")
    r = ask(ann, example)
    a, b = r["a"]["generation_id"], r["b"]["generation_id"]  # think, no-think
    ann.predict(a, b, "A", api_name="/vote")  # the admin prefers the think answer
    refused = 0
    for _ in range(20):  # bea never saw this comparison: every vote (either orientation) is refused
        try:
            bea.predict(b, a, "A", api_name="/vote")
        except AppError as err:
            refused += 1
            assert "Traceback" not in str(err)
        try:
            bea.predict(a, b, "B", api_name="/vote")
        except AppError:
            refused += 1
    assert refused == 40
    # ann changes her mind twice: still one row, the latest choice
    ann.predict(a, b, "tie", api_name="/vote")
    ann.predict(b, a, "B", api_name="/vote")  # the same comparison, named the other way round: think wins
    with db(workdir) as con:
        rows = con.execute(
            "select an.name, v.generation_a_id, v.generation_b_id, v.choice from votes v "
            "join annotators an on an.id = v.annotator_id where ? in (v.generation_a_id, v.generation_b_id)",
            (a,),
        ).fetchall()
    assert len(rows) == 1 and rows[0][0] == "ann"
    _, ga, gb, choice = rows[0]
    assert {"A": ga, "B": gb}[choice] == a  # the think answer is the one preferred
    # the ranking counts ann once; the export lists the think answer as chosen
    comps, names = reward_service.vote_comparisons()
    assert len(comps) == 1
    trl = Path(ann.predict("jsonl", api_name="/export")).read_text().splitlines()
    votes = [json.loads(x) for x in trl if json.loads(x).get("origin") == "vote"]
    assert len(votes) == 1 and votes[0]["chosen_id"] == a and votes[0]["rejected_id"] == b


# ----------------------------------------------------------------------------------------------- exports


class _Fetched:
    def __init__(self, codes: list[int]) -> None:
        self.codes = codes
        self.status_code = 200 if 200 in codes else codes[0]  # 200 when any of Gradio's file routes served it


def _get(url: str, c, path: str) -> _Fetched:
    """GET a server file as the signed-in user of client ``c`` (its session cookie), through both of
    Gradio's file routes (``/file=`` and the older ``/file/``)."""
    import httpx

    base = url.rstrip("/")
    routes = (f"{base}/gradio_api/file={path}", f"{base}/gradio_api/file/{path}")
    return _Fetched([httpx.get(r, cookies=c.cookies, timeout=30).status_code for r in routes])


def test_exports_are_only_for_the_user_who_asked(server, configured, workdir, example):
    from gradio.utils import get_upload_folder

    ann, bea = client(server, "ann"), client(server, "bea")
    r = ask(ann, example)
    ann.predict(r["a"]["generation_id"], True, 0.9, api_name="/rate")
    ann.predict(r["a"]["generation_id"], r["b"]["generation_id"], "A", api_name="/vote")
    for fmt in ("trl", "jsonl", "hf"):
        got = Path(ann.predict(fmt, api_name="/export"))
        assert got.is_file() and got.stat().st_size > 0
        # bea knows the file name: neither the exports folder nor Gradio's cache hands it to her
        tried = [
            str(workdir / "exports" / got.name),
            str(Path(state_service.settings().exports_dir) / got.name),
        ]
        tried += [str(p) for p in Path(get_upload_folder()).rglob(got.name)]
        assert len(tried) >= 3, "the delivered copy should be in Gradio's cache"
        for path in tried:
            assert _get(server, bea, path).status_code != 200, (fmt, path)
        for path in tried[2:]:  # ... while ann, who asked, can fetch her copy
            assert _get(server, ann, path).status_code == 200
        assert not list((workdir / "exports").glob(f"*{got.suffix}")), "exports must not pile up in a folder"


# ----------------------------------------------------------------------------------------- private audio


def _recording(tmp_path: Path, freq: float) -> str:
    """A 'microphone recording': a clip that is not one of the shipped examples."""
    import numpy as np

    from audio_thinker.audio import write_wav

    t = np.arange(16000) / 16000
    path = tmp_path / f"recording-{freq:g}.wav"
    write_wav(path, 0.3 * np.sin(2 * np.pi * freq * t) * (t % 0.5 < 0.2))
    return str(path)


def test_uploads_are_private_until_an_admin_shares_them(server, configured, workdir, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    ann, bea = client(server, "ann"), client(server, "bea")
    # bea records something private and asks about it
    r = bea.predict(
        handle_file(_recording(tmp_path, 523.0)), "How many beeps are there?", "1\n2\n3", api_name="/compare"
    )
    gens = {r["a"]["generation_id"], r["b"]["generation_id"]}
    with db(workdir) as con:
        clip_hash, ext = con.execute(
            "select hash, ext from clips where hash = ?", (r["clip_hash"],)
        ).fetchone()
    media = Path(state_service.store().media_dir) / clip_hash[:2] / f"{clip_hash}.{ext}"
    assert media.is_file()
    # ann (even the admin) and cat do not get it in their queue, cannot open, rate or fetch it
    for other in (ann, client(server, "cat")):
        queued = {t["generation_id"] for t in other.predict(200, api_name="/queue")["traces"]}
        assert not queued & gens
        with pytest.raises(AppError) as err:
            other.predict(r["a"]["generation_id"], True, 0.5, api_name="/rate")
        assert str(media.parent) not in str(err.value)
        assert _get(server, other, str(media)).status_code != 200
    assert r["a"]["generation_id"] in {
        t["generation_id"] for t in bea.predict(200, api_name="/queue")["traces"]
    }
    # bea cannot share it herself; the admin can, and then it is in everyone's queue
    with pytest.raises(AppError, match="admin"):
        bea.predict(r["item_id"], api_name="/share")
    assert ann.predict(r["item_id"], api_name="/share")["shared"] is True
    assert r["a"]["generation_id"] in {
        t["generation_id"] for t in client(server, "cat").predict(200, api_name="/queue")["traces"]
    }


# ----------------------------------------------------------------------------------------------- sign-in


class FakeClock:
    """A clock the test moves by hand (the throttle's ``clock``)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sign_in_is_throttled_per_account_and_per_address(server, configured, monkeypatch):
    import httpx

    from app import guard

    login = f"{server.rstrip('/')}/login"
    clock = FakeClock()
    monkeypatch.setattr(guard.LOGIN_THROTTLE, "clock", clock)
    guard.LOGIN_THROTTLE.reset()
    try:
        with httpx.Client(timeout=30) as http:

            def attempt(user: str, password: str) -> int:
                return http.post(login, data={"username": user, "password": password}).status_code

            # 100 wrong passwords as fast as possible, then the right one
            statuses = [attempt("cat", f"guess-{k}") for k in range(100)]
            checked, refused = statuses.count(400), statuses.count(429)
            assert checked + refused == 100 and checked <= 5, statuses
            assert attempt("cat", USERS["cat"]) == 429  # still refused: no 101st try right now
            # an attacker who keeps going, waiting whenever refused: how long until 100 guesses were checked?
            start, checked = clock.now, 0
            while checked < 100:
                status = attempt("cat", f"again-{checked}")
                if status == 429:
                    clock.now += 5.0
                else:
                    assert status == 400
                    checked += 1
            assert clock.now - start > 60.0, "100 guesses must take more than a minute"
            assert guard.LOGIN_THROTTLE.min_seconds(100) > 60.0
            clock.now += 120.0  # the owner, later, signs in
            assert attempt("cat", USERS["cat"]) == 200
            # per client address: guessing across many accounts is throttled too
            guard.LOGIN_THROTTLE.reset()
            statuses = [attempt(f"user{k}", "123456") for k in range(60)]
            assert statuses.count(400) <= 20 and statuses.count(429) >= 40
    finally:
        guard.LOGIN_THROTTLE.reset()


def test_sign_out_link_ends_the_session(server, configured):
    import httpx

    ann = client(server, "ann")
    base = server.rstrip("/")
    page = httpx.get(f"{base}/config", cookies=ann.cookies, timeout=30).text
    assert '"/logout"' in page or "logout" in page  # the page has a sign-out link (a button to /logout)
    assert httpx.get(f"{base}/gradio_api/user", cookies=ann.cookies, timeout=30).json() == "ann"
    httpx.get(f"{base}/logout", cookies=ann.cookies, timeout=30)
    assert httpx.get(f"{base}/gradio_api/user", cookies=ann.cookies, timeout=30).json() is None


# -------------------------------------------------------------------------------- what non-admins see


def test_no_server_paths_in_answers_or_errors_for_non_admins(server, configured, workdir, example):
    from gradio_client.exceptions import AppError

    bea = client(server, "bea")
    secrets = [str(workdir), str(Path.cwd()), "/tmp/", "Traceback", 'File "']
    answers = json.dumps(
        [ask(bea, example), bea.predict(50, api_name="/queue"), bea.predict(api_name="/my_ratings")]
    )
    assert "grpo-final" in answers  # the model is named ...
    for secret in secrets:  # ... but not where it lies on the server
        assert secret not in answers, secret
    attempts = [
        ("x", api := "/queue"),
        (["1; drop table ratings"], "/rate"),
        ([10**30], "/get_rating"),
        (["../../etc/passwd"], "/export"),
        ([1, 2, "sideways"], "/vote"),
        ([{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, "How many?", ""], "/compare"),
    ]
    del api
    for args, name in attempts:
        args = args if isinstance(args, list) else [args]
        with pytest.raises(AppError) as err:
            bea.predict(*args, api_name=name)
        message = str(err.value)
        assert message.strip() and len(message.strip().splitlines()) == 1, (name, message)
        for secret in secrets:
            assert secret not in message, (name, message)
