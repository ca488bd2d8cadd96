"""Issue #24: what still broke a real rating session, tried as raters would, against the real studio
(auth on, a temporary SQLite store, the shipped tiny model): the Rate panel after a slip and on an empty
queue, a throttled sign-in, files reaching people they should not, and the store's URL in messages.
``ann`` is the admin, ``bea`` and ``cat`` annotators."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import studio_harness
from studio_harness import CHROMIUM, configured_service

from app.services import compare as compare_service
from app.services import state as state_service

USERS = {"ann": "ann-pw", "bea": "bea-pw", "cat": "cat-pw", "dan": "dan-pw"}
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}: apt-get install -y chromium"
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("studio-session")


@pytest.fixture(scope="module")
def configured(workdir, shipped_lm):
    """Two shared traces in everyone's queue, and a run folder with a model and its completions."""
    run = workdir / "runs" / "default"
    (run / "final").mkdir(parents=True)
    (run / "final" / "model.safetensors").write_bytes(b"weights")
    (run / "completions.jsonl").write_text('{"completion": "secret"}\n')
    with configured_service(workdir, shipped_lm, USERS, "ann") as service:
        st = state_service.store()
        for path, it in compare_service.example_items()[:2]:
            clip = st.add_clip(path)
            item = st.add_item(it["question"], it["choices"], answer=it["answer"], source="synth-aqa",
                               external_id=it["id"], clip=clip.hash)  # fmt: skip
            st.add_generation(item.id, "tiny", "think", f"<think>{it['reasoning']}</think><answer>x</answer>")
        yield service


def client(url: str, user: str):
    return studio_harness.client(url, user, USERS[user])


def rows(workdir: Path, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(workdir / "ratings.db") as con:
        return con.execute(sql, args).fetchall()


def _fetch(url: str, c, path: str) -> list[int]:
    """GET a server file through both of Gradio's file routes with client ``c``'s session cookie."""
    import httpx

    base = url.rstrip("/")
    routes = (f"{base}/gradio_api/file={path}", f"{base}/gradio_api/file/{path}")
    return [httpx.get(r, cookies=c.cookies, timeout=30).status_code for r in routes]


def _error_boxes(page) -> int:
    """Gradio's red "Error" boxes painted over components of the Rate panel (status trackers in error)."""
    return page.locator("#rate-panel").get_by_text("Error", exact=True).locator("visible=true").count()


# ------------------------------------------------------------------------------------ 1: the Rate panel


@needs_chromium
def test_a_slip_in_the_rate_panel_shows_a_toast_and_leaves_the_panel_usable(
    server, configured, workdir, browser
):
    from playwright.sync_api import expect

    page = studio_harness.signed_in(browser, server, "bea", USERS["bea"])
    page.get_by_role("tab", name="Rate").click()
    expect(page.locator("#rate-header")).to_contain_text("trace #")
    page.locator("#rate-consistent input[value='yes']").click()
    page.locator("#rate-header").click()
    page.keyboard.press("Enter")  # consistent chosen, no quality: the most common slip
    expect(page.locator(".toast-body").first).to_contain_text("quality", timeout=20_000)
    page.wait_for_timeout(1000)
    assert _error_boxes(page) == 0
    page.locator("#rate-quality input[value='0.7']").click(timeout=5_000)  # nothing covers the choices
    page.locator("#rate-submit").click(timeout=5_000)
    expect(page.locator("#rate-progress")).to_contain_text("1 submitted")
    assert rows(workdir, "select r.quality, r.consistent from ratings r join annotators a on a.id = "
                "r.annotator_id where a.name = 'bea'") == [(0.7, 1)]  # fmt: skip
    # the other trace, then an empty queue: the controls are off and Submit covers nothing
    page.locator("#rate-consistent input[value='no']").click()
    page.locator("#rate-quality input[value='0.2']").click()
    page.locator("#rate-submit").click()
    expect(page.locator("#rate-header")).to_contain_text("queue is empty")
    expect(page.locator("#rate-submit")).to_be_disabled()
    expect(page.locator("#rate-consistent input[value='yes']")).to_be_disabled()
    page.locator("#rate-submit").dispatch_event("click")
    page.keyboard.press("Enter")
    page.wait_for_timeout(1500)
    assert _error_boxes(page) == 0
    page.context.close()


# ----------------------------------------------------------------------------------- 2: a throttled sign-in


@needs_chromium
def test_a_throttled_sign_in_says_so_not_incorrect_credentials(server, configured, browser):
    from playwright.sync_api import expect

    from app import guard

    guard.LOGIN_THROTTLE.reset()
    page = browser.new_context().new_page()
    try:
        page.goto(server)
        for k in range(6):  # five wrong passwords use up the account's attempts; the sixth is refused
            page.get_by_label("username").fill("cat")
            page.get_by_label("password").fill(f"wrong-{k}")
            with page.expect_response(lambda r: r.url.endswith("/login")) as got:
                page.get_by_role("button", name="Login").click()
            assert got.value.status == (400 if k < 5 else 429)
        expect(page.get_by_text("Incorrect Credentials")).to_be_hidden()
        expect(page.get_by_text("Too many sign-in attempts")).to_be_visible()
        page.get_by_label("username").fill("cat")  # the right password, still throttled: told so again
        page.get_by_label("password").fill(USERS["cat"])
        page.get_by_role("button", name="Login").click()
        expect(page.get_by_text("Too many sign-in attempts")).to_contain_text("s")
        expect(page.get_by_text("Incorrect Credentials")).to_be_hidden()
    finally:
        page.context.close()
        guard.LOGIN_THROTTLE.reset()


# ------------------------------------------------------------------------------------------ 4: files


def _recording(tmp_path: Path) -> str:
    import numpy as np

    from audio_thinker.audio import write_wav

    t = np.arange(16000) / 16000
    path = tmp_path / "my-voice-note.wav"
    write_wav(path, 0.3 * np.sin(2 * np.pi * 660.0 * t) * (t % 0.5 < 0.2))
    return str(path)


def test_a_private_upload_is_not_served_to_another_signed_in_user(server, configured, tmp_path):
    import httpx
    from gradio.utils import get_upload_folder

    bea = client(server, "bea")
    base = server.rstrip("/")
    recording = Path(_recording(tmp_path))
    # bea's page uploads the file (Gradio's /upload), then asks about it: the URLs her page plays from
    with open(recording, "rb") as f:
        uploaded = httpx.post(
            f"{base}/gradio_api/upload", files={"files": ("my-voice-note.wav", f, "audio/wav")},
            cookies=bea.cookies, timeout=30,
        ).json()[0]  # fmt: skip
    bea.predict(
        {"path": uploaded, "meta": {"_type": "gradio.FileData"}}, "How many beeps are there?", "1\n2\n3",
        api_name="/compare",
    )  # fmt: skip
    # every copy of the recording in Gradio's cache (the upload, and any copy a handler returned): the
    # upload must be one of them, on disk, so that the refusals below are not just missing files
    data = recording.read_bytes()
    cached = sorted(
        str(p) for p in Path(get_upload_folder()).rglob("*")
        if p.is_file() and p.stat().st_size == len(data) and p.read_bytes() == data
    )  # fmt: skip
    assert str(Path(uploaded).resolve()) in {str(Path(p).resolve()) for p in cached}, (uploaded, cached)
    for path in cached:
        assert 200 in _fetch(server, bea, path), path  # the owner's page plays each of them
    for other in ("cat", "ann"):  # another annotator, even the admin, with their own session cookies
        c = client(server, other)
        for path in cached:
            assert 200 not in _fetch(server, c, path), (other, path)


def test_nothing_under_runs_is_served_to_annotators(server, configured, workdir):
    cat = client(server, "cat")
    for name in ("default/final/model.safetensors", "default/completions.jsonl"):
        path = workdir / "runs" / name
        assert path.is_file()
        assert 200 not in _fetch(server, cat, str(path)), name
        assert 200 not in _fetch(server, cat, str(path.resolve())), name


def test_messages_never_carry_the_stores_password(tmp_path):
    from app.ui import _one_line
    from audio_thinker.reward_model import RewardModelError
    from audio_thinker.reward_model.export import export
    from audio_thinker.reward_model.train import TrainConfig, train
    from audio_thinker.store import Store

    secret_url = "postgresql+psycopg://rater:s3cret-pw@db.example:5432/ratings"
    st = Store(f"sqlite:///{tmp_path / 'empty.db'}")
    st.url = secret_url  # an empty store that says it lives in PostgreSQL
    try:
        for run in (
            lambda: export(st, tmp_path / "out.jsonl", "jsonl"),
            lambda: train(st, TrainConfig(out=str(tmp_path / "rm"))),
        ):
            with pytest.raises(RewardModelError) as err:
                run()
            assert "s3cret-pw" not in str(err.value) and "rater" in str(err.value), str(err.value)
    finally:
        st.close()
    assert "s3cret-pw" not in _one_line(f"could not connect to {secret_url}: timeout")


# ------------------------------------------------------------------------------------------ 9: backup


def test_admins_back_up_the_store_from_the_studio_and_it_restores(server, configured, workdir, tmp_path):
    from gradio_client.exceptions import AppError

    from audio_thinker.store import Store, restore

    ann, bea = client(server, "ann"), client(server, "bea")
    with pytest.raises(AppError, match="admin"):
        bea.predict(api_name="/backup")
    got = Path(ann.predict(api_name="/backup"))
    assert got.suffix == ".zip" and got.is_file()
    assert 200 not in _fetch(server, bea, str(got))  # delivered to the admin who asked, to nobody else
    with Store(f"sqlite:///{tmp_path / 'restored.db'}") as st:
        restore(st, got)
    tables = ("annotators", "clips", "items", "generations", "ratings", "votes", "comparisons")
    for table in tables:
        expected = rows(workdir, f"select * from {table} order by 1")
        with sqlite3.connect(tmp_path / "restored.db") as con:
            assert con.execute(f"select * from {table} order by 1").fetchall() == expected, table
    assert rows(workdir, "select count(*) from items")[0][0] >= 2


# --------------------------------------------------------------------------- 5: words raters can use


def _fake_pair(answers):
    """A pair runner (``STATE.pair_runner``) that 'generates' the given two answers."""
    from audio_thinker.inference import Answer

    def run(lm, wave, question, choices, modes):
        for k, (text, answer, tokens) in enumerate(answers):
            think = text.split("<think>")[1].split("</think>")[0] if "<think>" in text else None
            yield (
                k,
                Answer(text, modes[k], "think" if think else "no_think", think, answer, 10, tokens, 0.1),
                0.01,
            )
        for k in range(2):
            yield k, None, 0.0

    return run


def test_answer_panes_without_stray_tags_cut_off_direct_answers_and_off_choice_answers_said(
    configured, monkeypatch
):
    from app import compare
    from app.services.state import STATE

    path, it = next((p, it) for p, it in compare_service.example_items() if it["sub-category"] == "count")
    monkeypatch.setattr(
        STATE, "pair_runner",
        _fake_pair([
            ("<think>Beep 1. Beep 2.</think><answer>Answer: Answer: sixty</answer></think>", "Answer: sixty", 30),
            ("Answer: Beep 2 … 6 6 6 6 6", None, 10**6),  # a direct answer that hit the token cap
        ]),
    )  # fmt: skip
    steps = compare_service.compare_stream(
        path, it["question"], "\n".join(it["choices"]), "think vs no-think", user="bea"
    )
    comp = list(steps)[-1]
    assert comp is not None
    think_side, direct = comp.a, comp.b
    think_pane = compare._messages(it["question"], think_side)[-1]["content"]
    assert "</think>" not in think_pane and "<answer>" not in think_pane
    assert think_pane.count("Answer") == 1 and think_pane.endswith("sixty")
    assert "not one of the choices" in compare._stats(think_side)  # "sixty" is none of 1/2/3...
    direct_pane = compare._messages(it["question"], direct)[-1]["content"]
    assert direct.ran_out_of_tokens and "ran out of tokens" in direct_pane
    assert not direct_pane.startswith("**Answer:**")  # no answer shown as if it were one


def test_examples_do_not_show_the_right_answer_and_a_double_vote_is_one_quiet_vote(server, configured):
    import httpx

    from app import compare

    config = httpx.get(f"{server.rstrip('/')}/config", cookies=client(server, "bea").cookies, timeout=30).text
    for _, it in compare_service.example_items():
        assert f"✓ {it['answer']}" not in config
    state = {"voted": True, "a": 1, "b": 2, "swapped": False, "sides": ()}
    out = compare.cast_vote("left", state, studio_harness_request("bea"))  # the double-click's second click
    assert len(out) == compare.VOTE_OUTPUTS  # nothing raised: no error toast or boxes, nothing changed


def studio_harness_request(user: str):
    from types import SimpleNamespace

    return SimpleNamespace(username=user)


def test_the_reward_model_says_how_many_votes_it_had_and_what_to_do(tmp_path):
    from audio_thinker.reward_model import RewardModelError
    from audio_thinker.reward_model.train import TrainConfig, train
    from audio_thinker.store import Store

    with Store(f"sqlite:///{tmp_path / 'r.db'}") as st:
        item = st.add_item("How many beeps?", ["1", "2"], answer="2", source="synth-aqa", external_id="x")
        g1 = st.add_generation(item.id, "tiny", "think", "<think>Two beeps.</think><answer>2</answer>")
        g2 = st.add_generation(item.id, "tiny", "think", "<think>One beep.</think><answer>1</answer>")
        for who in ("ann", "bea"):
            st.rate(g1.id, who, consistent=True, quality=0.5)
            st.rate(g2.id, who, consistent=False, quality=0.5)
        for k in range(6):  # six votes stored, none preferring one answer
            st.vote(g1.id, g2.id, "tie", f"voter{k}")
        with pytest.raises(RewardModelError) as err:
            train(st, TrainConfig(out=str(tmp_path / "rm")))
    message = str(err.value)
    assert "(and no votes)" not in message and "0 votes that prefer one answer" in message, message
    assert "ties" in message and "vote" in message.rsplit(";", 1)[-1]  # why, and what to do


def test_agreement_on_few_overlaps_says_why_and_the_reward_model_result_is_words(server, configured):
    import httpx

    from app import reward

    st = state_service.store()
    gens = [g for (g,) in rows_of(st, 2)]
    for who, labels in (("ann", (True, 0.9)), ("cat", (False, 0.1))):
        for g in gens:
            st.rate(g, who, consistent=labels[0], quality=labels[1])
    md = reward.summary(studio_harness_request("ann"))[0]
    assert "κ" in md and "chance" in md and "two or more annotators" in md  # what the numbers mean, and why
    config = httpx.get(
        f"{server.rstrip('/')}/config", cookies=client(server, "ann").cookies, timeout=30
    ).json()
    shown = [c for c in config["components"] if c.get("props", {}).get("elem_id") == "rm-metrics"]
    assert shown and shown[0]["type"] == "markdown"  # not a raw JSON viewer
    text = reward.metrics_markdown(
        {
            "pairwise_accuracy": 0.75,
            "consistency_auc": 0.8,
            "counts": {"traces": 40, "items": 10, "eval_pairs": 8},
        }
    )
    assert "75%" in text and "0.80" in text and "{" not in text


def rows_of(st, n: int) -> list[tuple[int]]:
    """The ids of the first ``n`` generations of the shared traces."""
    return [(g.id,) for g in st.rating_queue("nobody-yet", limit=n)]


# ------------------------------------------------------------------------------------------ 6: layout

_BROKEN_WORDS_JS = """
(root) => {
  const broken = [];
  for (const th of root.querySelectorAll("th")) {
    const walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const re = /\\S+/g;
      let m;
      while ((m = re.exec(node.textContent))) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const tops = new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top)));
        if (tops.size > 1) broken.push(m[0]);
      }
    }
  }
  return broken;
}
"""


def _right_edge_visible(page, table: str, header: str) -> bool:
    """Whether the ``header`` column of ``table`` ends inside the table's visible box and the window."""
    th = page.locator(f"{table} th").filter(has_text=header).first
    cell, box = th.bounding_box(), page.locator(table).bounding_box()
    assert cell and box, (table, header)
    return cell["x"] + cell["width"] <= min(box["x"] + box["width"], page.viewport_size["width"]) + 1


@needs_chromium
def test_layout_headers_whole_columns_visible_toasts_clear_of_sign_out(server, configured, browser):
    import httpx
    from playwright.sync_api import expect

    st = state_service.store()
    for g in [g for (g,) in rows_of(st, 2)]:  # cat's ratings; a vote between two modes for the ranking
        st.rate(g, "cat", consistent=True, quality=0.6, comment="fine")
        gen = st.get_generation(g)
        # the shipped model's real label, as long as the ranking's names get
        think = st.add_generation(gen.item_id, "tiny-qwen2-audio", "think", gen.raw_text + " ")
        direct = st.add_generation(gen.item_id, "tiny-qwen2-audio", "no-think", "<answer>2</answer>")
        st.vote(think.id, direct.id, "A", "ann")
    page = studio_harness.signed_in(browser, server, "cat", USERS["cat"])
    page.set_viewport_size({"width": 1280, "height": 800})
    page.get_by_role("tab", name="Rate").click()
    page.locator("#rate-mine").get_by_text("My ratings").click()
    expect(page.locator("#rate-mine-table")).to_contain_text("#")
    table = page.locator("#rate-mine-table")
    assert table.evaluate(_BROKEN_WORDS_JS) == []  # no header breaks inside a word
    assert _right_edge_visible(page, "#rate-mine-table", "updated")
    # a toast (here: an export is ready) does not cover Sign out
    page.get_by_role("tab", name="Reward model").click()
    page.locator("#rm-export").click()
    toast = page.locator(".toast-body").first
    expect(toast).to_be_visible(timeout=20_000)
    t, s = toast.bounding_box(), page.locator("#sign-out").bounding_box()
    assert t and s
    overlap = not (
        t["x"] + t["width"] <= s["x"] or s["x"] + s["width"] <= t["x"]
        or t["y"] + t["height"] <= s["y"] or s["y"] + s["height"] <= t["y"]
    )  # fmt: skip
    assert not overlap, (t, s)
    page.context.close()
    page = studio_harness.signed_in(browser, server, "ann", USERS["ann"])
    page.set_viewport_size({"width": 1280, "height": 800})
    page.get_by_role("tab", name="Reward model").click()
    expect(page.locator("#rm-rank")).to_contain_text("tiny-qwen2-audio · think")
    assert page.locator("#rm-rank").evaluate(_BROKEN_WORDS_JS) == []
    assert _right_edge_visible(page, "#rm-rank", "win rate")
    page.context.close()
    # the Runs tab's plots are shown whole (not cropped to squares)
    config = httpx.get(
        f"{server.rstrip('/')}/config", cookies=client(server, "ann").cookies, timeout=30
    ).json()
    gallery = next(c for c in config["components"] if c.get("props", {}).get("elem_id") == "runs-gallery")
    assert gallery["props"].get("object_fit") == "contain"


# ------------------------------------------------------------------------------- 3: exports keep labels


def test_admin_exports_keep_the_human_labels(server, configured, workdir):
    import json

    ann = client(server, "ann")
    st = state_service.store()
    g = rows_of(st, 1)[0][0] if rows_of(st, 1) else 1
    think = st.get_generation(g).think or ""
    st.rate(
        g, "bea", consistent=False, quality=0.3, flawed_span=(0, min(8, len(think))), comment="wrong beep"
    )
    got = Path(ann.predict("labels", api_name="/export"))
    rows = [json.loads(line) for line in got.read_text().splitlines()]
    mine = [r for r in rows if r["annotator"] == "bea" and r["generation_id"] == g]
    assert len(mine) == 1
    r = mine[0]
    assert (r["consistent"], r["quality"], r["comment"], r["status"]) == (
        False,
        0.3,
        "wrong beep",
        "submitted",
    )
    assert r["flawed_span"] == [0, min(8, len(think))] and r["flawed_step"] == think[: min(8, len(think))]
    assert all(row["annotator"] for row in rows)
    stored = rows_of_db(workdir, "select count(*) from ratings")[0][0]
    assert len(rows) == stored


def rows_of_db(workdir: Path, sql: str) -> list[tuple]:
    return rows(workdir, sql)


# ---------------------------------------------------------------------------------- 7: seeing the sound

_MEDIA_TIMES_JS = """
(root) => {
  const found = [];
  const walk = (n) => {
    if (!n) return;
    if (n.tagName === "AUDIO" && (n.currentSrc || n.src)) found.push(n.currentTime);
    if (n.shadowRoot) walk(n.shadowRoot);
    for (const c of n.children || []) walk(c);
  };
  walk(root);
  return found;
}
"""


def test_spectrogram_has_a_time_axis_and_a_named_time_plays_the_clip_from_there(
    server, configured, browser, tmp_path
):
    from playwright.sync_api import expect

    from app.services import spectrogram

    path, it = compare_service.example_items()[0]
    fig = spectrogram.figure(path)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "time (s)" and "kHz" in ax.get_ylabel()
    assert ax.get_xlim()[0] == 0 and 2.5 < ax.get_xlim()[1] <= 30  # the clip's length, in seconds
    assert len(ax.get_xticks()) >= 8  # more time marks than 0:00 and 0:03
    assert spectrogram.named_times("Beep 2 at 0.6 s: high.") == [(10, 15, 0.6)]  # "0.6 s"

    st = state_service.store()
    for g in st.rating_queue("dan", limit=50):  # dan's queue: only the trace below
        st.rate(g.id, "dan", status="discarded")
    item = st.add_item(it["question"], it["choices"], source="synth-aqa", external_id="times",
                       clip=st.add_clip(path).hash)  # fmt: skip
    st.add_generation(item.id, "tiny", "think", "<think>Beep 1 at 0.1 s. Beep 2 at 0.6 s: high.</think>"
                      "<answer>high</answer>")  # fmt: skip
    page = studio_harness.signed_in(browser, server, "dan", USERS["dan"])
    page.get_by_role("tab", name="Rate").click()
    expect(page.locator("#rate-reasoning")).to_contain_text("Beep 2 at 0.6 s")
    expect(page.locator("#rate-spectrogram img, #rate-spectrogram svg, #rate-spectrogram canvas").first
           ).to_be_visible()  # fmt: skip
    link = page.locator("#rate-reasoning a.at-time[data-t='0.6']")
    expect(link).to_be_visible()
    page.wait_for_timeout(1000)  # the player has loaded the clip
    link.click()
    page.wait_for_function(
        f"() => ({_MEDIA_TIMES_JS})(document.getElementById('rate-audio')).some((t) => t >= 0.6)",
        timeout=10_000,
    )
    shot = tmp_path / "rate-spectrogram.png"
    page.locator("#rate-panel").screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    page.context.close()
