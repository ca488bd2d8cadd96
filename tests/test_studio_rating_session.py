"""Issue #24, the whole session in headless Chromium: three raters rate 50 traces each at once (keys and mouse,
with slips: consistent without a quality, Submit twice), and nothing covers the panel, no rating is lost or
stored twice, and no rater can fetch another's private upload. Screenshots (the spectrogram with a claim
played from its time, the gold-agreement table) go to ``$AUDIO_THINKER_SHOTS`` when set, else the test's
temporary folder. Slow: about 150 ratings through a real browser."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import pytest
import studio_harness
from studio_harness import CHROMIUM, configured_service, served

from app.services import compare as compare_service

USERS = {"ann": "ann-pw", "bea": "bea-pw", "cat": "cat-pw", "dan": "dan-pw"}
RATERS = ("bea", "cat", "dan")
PER_RATER = 50
QUALITY_KEYS = "`qwertyuiop"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}"),
]


def _error_boxes(page) -> int:
    return page.locator("#rate-panel").get_by_text("Error", exact=True).locator("visible=true").count()


def _shown(page) -> int | None:
    m = re.search(r"trace #(\d+)", page.locator("#rate-header").inner_text())
    return int(m.group(1)) if m else None


def test_three_raters_rate_fifty_traces_each_with_slips(tmp_path, shipped_lm, browser):
    import httpx
    from playwright.sync_api import expect

    shots = Path(os.environ.get("AUDIO_THINKER_SHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    with configured_service(tmp_path, shipped_lm, USERS, "ann") as state:
        st = state.store()
        examples = compare_service.example_items()
        for k in range(60):
            path, it = examples[k % len(examples)]
            item = st.add_item(it["question"], it["choices"], answer=it["answer"], source="synth-aqa",
                               external_id=f"{it['id']}-{k}", clip=st.add_clip(path).hash)  # fmt: skip
            think = (
                f"Beep 1 at 0.{k % 9 + 1} s. Beep 2 at 1.{k % 7} s: high. So the answer is {it['answer']}."
            )
            g = st.add_generation(
                item.id, "tiny", "think", f"<think>{think}</think><answer>{it['answer']}</answer>"
            )
            if k % 10 == 0:  # gold traces, labelled by the oracle
                st.rate(g.id, "oracle", consistent=True, quality=0.8, source="oracle")
        from app.services import rating as rating_service

        rating_service.set_queue_settings("ann", 0, 0.1)
        with served() as url:
            pages = {u: studio_harness.signed_in(browser, url, u, USERS[u]) for u in RATERS}
            for page in pages.values():
                page.get_by_role("tab", name="Rate").click()
                expect(page.locator("#rate-header")).to_contain_text("trace #")
            intended: dict[str, dict[int, tuple[bool, float]]] = {u: {} for u in RATERS}
            for step in range(PER_RATER):
                for n, (user, page) in enumerate(pages.items()):
                    gen = _shown(page)
                    assert gen is not None, (user, step)
                    consistent = (step + n) % 3 != 0
                    q = (step * 3 + n) % 11
                    if step % 7 == 3:  # the slip: consistent chosen, Enter before a quality
                        page.locator("#rate-header").click()
                        page.keyboard.press("1" if consistent else "0")
                        page.keyboard.press("Enter")
                        expect(page.locator(".toast-body").filter(has_text="quality").first).to_be_visible()
                        assert _error_boxes(page) == 0, (user, step)
                    if step % 2 == 0:  # keys
                        page.locator("#rate-header").click()
                        page.keyboard.press("1" if consistent else "0")
                        page.keyboard.press(QUALITY_KEYS[q])
                        page.keyboard.press("Enter")
                    else:  # mouse, and a double-click on Submit
                        page.locator(
                            f"#rate-consistent input[value='{'yes' if consistent else 'no'}']"
                        ).click()
                        page.locator(f"#rate-quality input[value='{q / 10:.1f}']").click()
                        page.locator("#rate-submit").dblclick()
                    intended[user][gen] = (consistent, q / 10)
                for user, page in pages.items():
                    gen = list(intended[user])[-1]
                    expect(page.locator("#rate-header")).not_to_contain_text(f"trace #{gen} ", timeout=30_000)
                    assert _error_boxes(page) == 0, (user, step)
            for page in pages.values():
                expect(page.locator("#rate-progress")).to_contain_text(f"{PER_RATER} submitted")
            # the spectrogram with a claim played from its time
            page = pages["bea"]
            link = page.locator("#rate-reasoning a.at-time").nth(1)
            link.click()
            page.wait_for_timeout(800)
            page.locator("#rate-panel").screenshot(path=str(shots / "rate-spectrogram-claim.png"))
            # no cross-user file: bea's private recording, fetched with cat's and dan's browser cookies
            import numpy as np
            from gradio.utils import get_upload_folder
            from gradio_client import handle_file

            from audio_thinker.audio import write_wav

            t = np.arange(16000) / 16000
            rec = tmp_path / "bea-recording.wav"
            write_wav(rec, 0.3 * np.sin(2 * np.pi * 587.0 * t) * (t % 0.5 < 0.2))
            bea = studio_harness.client(url, "bea", USERS["bea"])
            r = bea.predict(handle_file(str(rec)), "How many beeps?", "1\n2\n3", api_name="/compare")
            copies = [p for p in Path(get_upload_folder()).rglob("*") if p.is_file()
                      and st.clip_visibility(r["clip_hash"], "cat") is False
                      and p.read_bytes() == rec.read_bytes()]  # fmt: skip
            assert copies, "the upload should be in Gradio's cache"
            for who in ("cat", "dan", "bea"):
                cookies = {c["name"]: c["value"] for c in pages[who].context.cookies()}
                codes = {httpx.get(f"{url.rstrip('/')}/gradio_api/file={p}", cookies=cookies, timeout=30).status_code
                         for p in copies}  # fmt: skip
                assert (200 in codes) == (who == "bea"), (who, codes)
            for page in pages.values():
                page.context.close()
            # the admin's gold-agreement table
            admin = studio_harness.signed_in(browser, url, "ann", USERS["ann"])
            admin.get_by_role("tab", name="Reward model").click()
            expect(admin.locator("#rm-gold")).to_contain_text("bea")
            admin.locator("#rm-gold").screenshot(path=str(shots / "gold-agreement.png"))
            admin.context.close()
    with sqlite3.connect(tmp_path / "ratings.db") as con:
        stored = con.execute(
            "select a.name, r.generation_id, r.consistent, r.quality, r.status from ratings r "
            "join annotators a on a.id = r.annotator_id where a.name in ('bea', 'cat', 'dan')"
        ).fetchall()
    for user in RATERS:
        mine = [(g, bool(c), q, s) for u, g, c, q, s in stored if u == user]
        assert len(mine) == PER_RATER == len({g for g, *_ in mine}), user  # none lost, none twice
        assert {g: (c, q) for g, c, q, s in mine} == intended[user], user
        assert {s for *_, s in mine} == {"submitted"}
