"""Issue #17 in a real headless Chromium (Debian's ``chromium`` through Playwright's Python API, no browser
download): what a non-admin annotator sees on the page, and the Rate tab's keyboard, undo, "My ratings"
and unsaved-changes behaviour."""

from __future__ import annotations

import re
import sqlite3
import time
from pathlib import Path

import pytest
import studio_harness
from studio_harness import CHROMIUM, configured_service, served

from app.services import compare as compare_service
from app.services import state as state_service

USERS = {"ann": "ann-pw", "bea": "bea-pw"}

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}: apt-get install -y chromium"
)


@pytest.fixture(scope="module")
def studio(tmp_path_factory, shipped_lm):
    """The studio with ann (admin) and bea, two shared traces both rated by ann; yields (url, db file)."""
    root = tmp_path_factory.mktemp("studio-browser")
    with configured_service(root, shipped_lm, USERS, "ann"):
        st = state_service.store()
        for path, it in compare_service.example_items()[:3]:
            clip = st.add_clip(path)
            item = st.add_item(it["question"], it["choices"], answer=it["answer"], source="synth-aqa",
                               external_id=it["id"], clip=clip.hash)  # fmt: skip
            gen = st.add_generation(
                item.id, "tiny", "think", f"<think>{it['reasoning']}</think><answer>x</answer>"
            )
            st.rate(gen.id, "ann", consistent=True, quality=0.9, comment="ann's private comment")
        with served() as url:
            yield url, root / "ratings.db"


def signed_in(browser, url: str, user: str):
    return studio_harness.signed_in(browser, url, user, USERS[user])


def rows(db_file: Path, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(db_file) as con:
        return con.execute(sql, args).fetchall()


def test_non_admins_see_no_server_paths_other_annotators_or_admin_controls(studio, browser):
    from playwright.sync_api import expect

    url, db_file = studio
    page = signed_in(browser, url, "bea")
    notice = page.locator("#studio-notice").inner_text()
    assert str(db_file.parent) not in notice and "ratings.db" not in notice and "sqlite" not in notice
    expect(page.locator("#cmp-privacy")).to_contain_text("private")  # the upload form says who hears it
    expect(page.locator("#cmp-share")).to_be_hidden()
    page.get_by_role("tab", name="Reward model").click()
    expect(page.locator("#rm-overview")).to_contain_text("ratings")
    for table in ("#rm-counts", "#rm-kappa"):
        assert not re.search(r"\bann\b", page.locator(table).inner_text()), table
    expect(page.locator("#rm-train")).to_be_hidden()
    page.get_by_role("tab", name="Rate").click()
    expect(page.locator("#rate-header")).to_be_visible()
    expect(page.locator("#rate-import")).to_be_hidden()
    assert "ann's private comment" not in page.content()
    page.locator("#sign-out").click()  # signing out ends the session: the sign-in form again
    expect(page.get_by_label("username")).to_be_visible()
    page.goto(url)
    expect(page.get_by_label("username")).to_be_visible()
    page.context.close()
    # the admin still sees all of it
    page = signed_in(browser, url, "ann")
    expect(page.locator("#studio-notice")).to_contain_text("ratings.db")
    page.get_by_role("tab", name="Reward model").click()
    expect(page.locator("#rm-counts")).to_contain_text("ann")
    expect(page.locator("#rm-train")).to_be_visible()
    page.context.close()


def _bea_rows(db_file: Path) -> list[tuple]:
    return rows(
        db_file,
        "select r.generation_id, r.status, r.quality from ratings r join annotators a on a.id = r.annotator_id "
        "where a.name = 'bea' order by r.generation_id",
    )


def _shown_trace(page) -> int:
    return int(re.search(r"trace #(\d+)", page.locator("#rate-header").inner_text()).group(1))


def test_keys_never_act_from_media_or_text_and_skip_discard_undo_and_ratings_reopen(studio, browser):
    from playwright.sync_api import expect

    url, db_file = studio
    page = signed_in(browser, url, "bea")
    page.get_by_role("tab", name="Rate").click()
    expect(page.locator("#rate-header")).to_contain_text("trace #")
    first = _shown_trace(page)
    # focus on the clip's player (then on the comment box): "x" and "s" do nothing
    player = page.locator("#rate-audio").get_by_role("button").first
    expect(player).to_be_visible()
    player.focus()
    page.keyboard.press("x")
    page.keyboard.press("s")
    page.locator("#rate-comment textarea").focus()
    page.keyboard.press("x")
    page.wait_for_timeout(1500)
    assert _bea_rows(db_file) == [] and _shown_trace(page) == first
    page.locator("#rate-comment textarea").fill("")
    # discard with the key, then undo it: the same trace is back and nothing is stored
    page.locator("#rate-header").click()
    page.keyboard.press("x")
    expect(page.locator("#rate-undo")).to_be_visible()
    assert _bea_rows(db_file) == [(first, "discarded", None)]
    page.locator("#rate-undo").click()
    expect(page.locator("#rate-header")).to_contain_text(f"trace #{first} ")
    expect(page.locator("#rate-undo")).to_be_hidden()
    assert _bea_rows(db_file) == []
    # skip, undo (by key), then rate it
    page.locator("#rate-header").click()
    page.keyboard.press("s")
    expect(page.locator("#rate-undo")).to_be_visible()
    page.locator("#rate-header").click()
    page.keyboard.press("z")
    expect(page.locator("#rate-header")).to_contain_text(f"trace #{first} ")
    assert _bea_rows(db_file) == []
    page.locator("#rate-header").click()
    page.keyboard.press("1")
    page.keyboard.press("o")
    page.keyboard.press("Enter")
    expect(page.locator("#rate-header")).not_to_contain_text(f"trace #{first} ")
    assert _bea_rows(db_file) == [(first, "submitted", 0.9)]
    # "My ratings" lists it and reopens it for editing
    page.locator("#rate-mine").get_by_text("My ratings").click()
    page.locator("#rate-mine-table span").get_by_text(f"#{first}", exact=True).click()
    expect(page.locator("#rate-header")).to_contain_text(f"trace #{first} ")
    expect(page.locator("#rate-quality input[value='0.9']")).to_be_checked()
    page.locator("#rate-header").click()
    page.keyboard.press("p")
    page.keyboard.press("Enter")
    page.wait_for_timeout(500)
    expect(page.locator("#rate-header")).not_to_contain_text(f"trace #{first} ")
    assert _bea_rows(db_file) == [(first, "submitted", 1.0)]
    page.context.close()


def test_leaving_with_an_unsaved_rating_asks_first(studio, browser):
    from playwright.sync_api import expect

    url, db_file = studio
    page = signed_in(browser, url, "bea")
    page.get_by_role("tab", name="Rate").click()
    expect(page.locator("#rate-header")).to_contain_text("trace #")
    dialogs: list[str] = []

    def on_dialog(dialog) -> None:
        dialogs.append(dialog.type)
        dialog.dismiss()  # stay on the page

    page.on("dialog", on_dialog)
    with page.expect_event("close", timeout=10_000):  # nothing chosen yet: leaves without asking
        page.close(run_before_unload=True)
    assert dialogs == []

    page = signed_in(browser, url, "bea")
    page.on("dialog", on_dialog)
    page.get_by_role("tab", name="Rate").click()
    expect(page.locator("#rate-header")).to_contain_text("trace #")
    page.locator("#rate-quality input[value='0.5']").click()  # an unsaved choice
    with page.expect_event("dialog", timeout=10_000):
        page.close(run_before_unload=True)
    page.wait_for_timeout(300)
    assert dialogs == ["beforeunload"] and not page.is_closed()
    before = len(_bea_rows(db_file))
    page.locator("#rate-draft").click()  # saved: leaving is quiet again
    expect(page.locator("#rate-progress")).to_contain_text("drafts")
    page.wait_for_timeout(500)
    assert len(_bea_rows(db_file)) == before + 1
    with page.expect_event("close", timeout=10_000):
        page.close(run_before_unload=True)
    assert dialogs == ["beforeunload"]


def test_ask_is_disabled_while_answering(studio, browser, monkeypatch):
    from playwright.sync_api import expect

    url, db_file = studio
    real, calls = compare_service.compare_stream, []

    def slow_compare_stream(*args, **kwargs):  # counts the runs; slow enough to click again meanwhile
        calls.append(1)
        for comp in real(*args, **kwargs):
            time.sleep(0.05)
            yield comp

    monkeypatch.setattr(compare_service, "compare_stream", slow_compare_stream)
    clip, item = next((p, it) for p, it in compare_service.example_items() if it["sub-category"] == "count")
    page = signed_in(browser, url, "bea")
    page.locator("#cmp-audio input[type=file]").set_input_files(clip)
    page.locator("#cmp-question textarea, #cmp-question input").first.fill(item["question"])
    page.locator("#cmp-choices textarea").fill("\n".join(item["choices"]))
    expect(page.locator("#cmp-audio audio, #cmp-audio [data-testid^='waveform']").first).to_be_attached()
    ask = page.locator("#cmp-ask")
    ask.click(click_count=3)
    expect(ask).to_be_disabled(timeout=5_000)
    ask.dispatch_event("click")  # a click the browser lets through anyway does nothing either
    expect(page.locator("#vote-tie")).to_be_enabled(timeout=120_000)
    expect(ask).to_be_enabled()
    page.wait_for_timeout(1500)
    assert len(calls) == 1
    page.context.close()


def test_no_vote_after_an_answer_pane_is_cleared(studio, browser):
    from playwright.sync_api import expect

    url, db_file = studio
    clip, item = next((p, it) for p, it in compare_service.example_items() if it["sub-category"] == "count")
    page = signed_in(browser, url, "ann")
    page.locator("#cmp-audio input[type=file]").set_input_files(clip)
    page.locator("#cmp-question textarea, #cmp-question input").first.fill(item["question"])
    page.locator("#cmp-choices textarea").fill("\n".join(item["choices"]))
    expect(page.locator("#cmp-audio audio, #cmp-audio [data-testid^='waveform']").first).to_be_attached()
    page.locator("#cmp-ask").click()
    expect(page.locator("#vote-tie")).to_be_enabled(timeout=120_000)
    votes = rows(db_file, "select count(*) from votes")[0][0]
    page.locator("#cmp-left").get_by_label("Clear").first.click()
    expect(page.locator("#vote-tie")).to_be_disabled()
    for vote in ("#vote-left", "#vote-right", "#vote-tie", "#vote-bad"):
        page.locator(vote).dispatch_event("click")  # even a click that gets through is refused
    page.wait_for_timeout(1500)
    assert rows(db_file, "select count(*) from votes")[0][0] == votes
    page.context.close()
