"""The studio in a real headless Chromium (Debian's ``chromium``, driven by Playwright's Python API):
log in, see a non-audio upload refused with a clear message, upload a wav, get both answers, vote, rate a
trace with the keyboard, and find the rows in the database; a screenshot of every tab is saved to ``runs/screenshots/`` (``$AUDIO_THINKER_SCREENSHOTS``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from app.services import compare as compare_service
from app.services import model as model_service
from app.services import state as state_service

CHROMIUM = os.environ.get("AUDIO_THINKER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(os.environ.get("AUDIO_THINKER_SCREENSHOTS", "runs/screenshots"))
USER, PASSWORD = "rater1", "rater1-pw"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}: apt-get install -y chromium"
)


@pytest.fixture(scope="module")
def studio(tmp_path_factory, shipped_lm):
    """The studio on a free port with auth and a fresh database; yields (url, database file)."""
    import torch

    from app import studio

    root = tmp_path_factory.mktemp("browser")
    run = root / "runs" / "demo-run"
    run.mkdir(parents=True)
    history = [
        {"step": s, "reward": 1.0 + 0.2 * s, "rewards/format/mean": 1.0, "rewards/accuracy_reward/mean": 0.1 * s,
         "accuracy": 0.6 + 0.05 * s, "no_think_rate": 0.2 + 0.05 * s, "accuracy/easy": 0.9, "accuracy/medium": 0.7,
         "accuracy/hard": 0.4 + 0.05 * s, "no_think_rate/easy": 0.5 + 0.05 * s, "no_think_rate/hard": 0.1}
        for s in range(1, 9)
    ]  # fmt: skip
    (run / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    (run / "ablation.md").write_text("| run · prompt | acc all | consistency rate |\n|---|---|---|\n"
                                     "| base · think | 0.900 | 0.85 |\n| full · adaptive | 0.940 | 0.91 |\n")  # fmt: skip
    db_file = root / "ratings.db"
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUDIO_THINKER_DB", f"sqlite:///{db_file}")
        mp.setenv("AUDIO_THINKER_USERS", f"{USER}:{PASSWORD},other:other-pw")
        mp.setenv("AUDIO_THINKER_ADMINS", USER)
        state_service.configure(
            lm=shipped_lm, runs_root=root / "runs", reward_model_dir=root / "rm", exports_dir=root / "exports"
        )
        model_service.warm_up()
        demo, url = studio.serve()
        yield url, db_file
        demo.close()
        state_service.configure(state_service.Settings())
    torch.set_num_threads(threads)


def _rows(db_file: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db_file) as con:
        return con.execute(sql).fetchall()


def _wait_rows(db_file: Path, sql: str, timeout: float = 30.0) -> list[tuple]:
    deadline = time.time() + timeout
    while True:
        rows = _rows(db_file, sql)
        if rows or time.time() > deadline:
            return rows
        time.sleep(0.3)


def _close_toasts(page) -> None:
    """Dismiss notifications so that screenshots show the page."""
    for button in page.locator("[data-testid=toast-close]").all():
        if button.is_visible():
            button.click()


def test_login_compare_vote_rate_with_keyboard(studio, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    url, db_file = studio
    clip, item = next((p, it) for p, it in compare_service.example_items() if it["sub-category"] == "count")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(90_000)
        expect.set_options(timeout=90_000)  # generous: the box may be busy with training jobs
        page.goto(url)

        # log in
        page.get_by_label("username").fill(USER)
        page.get_by_label("password").fill(PASSWORD)
        page.screenshot(path=str(SHOTS / "0-login.png"))
        page.get_by_role("button", name="Login").click()
        expect(page.locator("#studio-notice")).to_contain_text(f"Signed in as {USER}")

        # a file that is not audio: a clear message (on upload and on Ask), nothing stored
        bad = tmp_path / "notes.wav"
        bad.write_text("meeting notes, not a recording\n" * 40)
        page.locator("#cmp-audio input[type=file]").set_input_files(str(bad))
        page.locator("#cmp-question textarea, #cmp-question input").first.fill(item["question"])
        page.locator("#cmp-ask").click()
        toast = page.locator("[data-testid=toast-body].error [data-testid=toast-text]")
        expect(toast.first).to_contain_text("That file cannot be used as audio")
        assert "Traceback" not in toast.first.inner_text()
        page.screenshot(path=str(SHOTS / "1a-bad-upload.png"))
        _close_toasts(page)
        assert _rows(db_file, "select count(*) from clips")[0][0] == 0
        assert _rows(db_file, "select count(*) from generations")[0][0] == 0
        expect(page.locator("#vote-tie")).to_be_disabled()
        page.locator("#cmp-audio").get_by_label("Clear").click()

        # Ask & compare: upload, ask, both answers stream in; votes unlock only at the end
        page.locator("#cmp-audio input[type=file]").set_input_files(clip)
        page.locator("#cmp-question textarea, #cmp-question input").first.fill(item["question"])
        page.locator("#cmp-choices textarea").fill("\n".join(item["choices"]))
        expect(
            page.locator("#cmp-audio audio, #cmp-audio [data-testid='waveform-Audio (≤ 30 s)']").first
        ).to_be_attached()
        expect(page.locator("#vote-tie")).to_be_disabled()
        page.locator("#cmp-ask").click()
        expect(page.locator("#vote-tie")).to_be_enabled(timeout=180_000)
        for side in ("#cmp-left", "#cmp-right"):
            expect(page.locator(side)).to_contain_text("Answer:")
        expect(page.locator("#cmp-left-stats")).to_contain_text("tokens")
        _close_toasts(page)
        page.screenshot(path=str(SHOTS / "1-compare.png"), full_page=True)
        gens = _rows(db_file, "select id, mode, think is not null from generations order by id")
        assert [(m, t) for _, m, t in gens] == [("think", 1), ("no-think", 0)]
        assert _rows(db_file, "select count(*) from clips")[0][0] == 1

        page.locator("#vote-tie").click()
        expect(page.locator("#cmp-result")).to_contain_text("Saved")
        expect(page.locator("#vote-tie")).to_be_disabled()
        votes = _wait_rows(
            db_file, "select v.choice, a.name from votes v join annotators a on a.id = v.annotator_id"
        )
        assert votes == [("tie", USER)]
        page.screenshot(path=str(SHOTS / "1b-voted.png"), full_page=True)

        # Rate: the think trace is in the queue; rate it with the keyboard
        page.get_by_role("tab", name="Rate").click()
        expect(page.locator("#rate-header")).to_contain_text(item["question"])
        expect(page.locator("#rate-reasoning")).to_contain_text("Answer")
        page.locator("#rate-header").click()  # focus the page, not a text box
        page.keyboard.press("1")  # consistent: yes
        page.keyboard.press("o")  # quality 0.9
        flaw = page.locator("#rate-flawed input[type=radio]").nth(2)  # the second sentence
        flaw.click()
        expect(page.locator("#rate-consistent input[value='yes']")).to_be_checked()
        expect(page.locator("#rate-quality input[value='0.9']")).to_be_checked()
        span = flaw.get_attribute("value")
        page.screenshot(path=str(SHOTS / "2-rate.png"), full_page=True)
        page.keyboard.press("Enter")  # submit
        rows = _wait_rows(
            db_file,
            "select a.name, r.generation_id, r.consistent, r.quality, r.flawed_start, r.flawed_end, r.status, "
            "r.lead_time_s from ratings r join annotators a on a.id = r.annotator_id",
        )
        think_gen = gens[0][0]
        start, end = (int(x) for x in span.split(":"))
        assert len(rows) == 1 and rows[0][:7] == (USER, think_gen, 1, 0.9, start, end, "submitted")
        assert rows[0][7] > 0
        expect(page.locator("#rate-progress")).to_contain_text("1 submitted")

        # Reward model and Runs tabs render
        page.get_by_role("tab", name="Reward model").click()
        expect(page.locator("#rm-overview")).to_contain_text("1 ratings")
        expect(page.locator("#rm-rank")).to_contain_text("think")
        page.screenshot(path=str(SHOTS / "3-reward-model.png"), full_page=True)
        page.get_by_role("tab", name="Runs").click()
        expect(page.locator("#runs-head")).to_contain_text("8 logged steps")
        expect(page.locator("#runs-ablation")).to_contain_text("full · adaptive")
        for plot in ("#runs-reward", "#runs-acc", "#runs-nothink"):  # matplotlib figures, rendered as images
            expect(page.locator(plot).get_by_role("img", name=re.compile("plot"))).to_be_visible()
        page.screenshot(path=str(SHOTS / "4-runs.png"), full_page=True)
        browser.close()
