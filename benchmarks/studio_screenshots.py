"""The studio screenshots in docs/studio.md, made by a script (not by hand) in headless Debian Chromium.

    OMP_NUM_THREADS=1 python benchmarks/studio_screenshots.py            # writes docs/img/*.png
    OMP_NUM_THREADS=1 python benchmarks/studio_screenshots.py --out /tmp/shots --items 20

Seeds a fresh SQLite store in a temporary folder: ``--items`` synth-aqa items (their clips), each with its
gold think trace and a corrupted one (``reward_model.bootstrap.corrupt_trace``), both labelled by the
oracle, so every trace is a gold trace; two raters rate some of them (``bea`` agreeing with the oracle,
``cat`` less). Then it launches the studio in-process with sign-in and drives Chromium through Playwright:

* ``rate-spectrogram-claim.png``: bea's Rate panel, the second time named in the reasoning clicked; the
  script checks that the player is playing from at least that time before it takes the picture;
* ``gold-agreement.png``: the admin's gold-agreement table (Reward model tab);
* ``reward-model-result.png``: the admin presses *Train reward model* in the page; the held-out result as
  the page shows it (words and a table, no JSON).

Each picture is checked for what it must show before it is saved, and saved as a small palette PNG. Prints
one line per picture and the seconds the training took in the browser.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

USERS = {"ann": "ann-pw", "bea": "bea-pw", "cat": "cat-pw"}
CHROMIUM = os.environ.get("AUDIO_THINKER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

_PLAYING_JS = """
() => {
  const found = [];
  const walk = (n) => {
    if (!n) return;
    if (n.tagName === "AUDIO") found.push(n);
    if (n.shadowRoot) walk(n.shadowRoot);
    for (const c of n.children || []) walk(c);
  };
  walk(document.getElementById("rate-audio"));
  return found.filter((m) => m.currentSrc || m.src).map((m) => [m.currentTime, m.paused, m.readyState]);
}
"""


def _seed(st, n_items: int, seed: int) -> None:
    """Synth items with a gold and a corrupted trace each, all labelled by the oracle; bea and cat rate
    some of them (the first item's gold trace is one with two timed beeps, so the Rate panel opens on it)."""
    from app.services.spectrogram import named_times
    from audio_thinker import synth
    from audio_thinker.judges import JudgeRequest, make_judge
    from audio_thinker.reward_model.bootstrap import _wav_bytes, corrupt_trace

    oracle = make_judge("oracle")
    rng = random.Random(seed)
    made = []
    for i, task in enumerate(synth.task_schedule(n_items)):
        item, audio = synth.generate_item(task, seed, i, "shots")
        made.append((item, audio))
    made.sort(key=lambda m: len(named_times(m[0]["reasoning"])) < 2)  # two named times first (stable)
    for item, audio in made:
        clip = st.add_clip(_wav_bytes(audio, synth.SAMPLE_RATE), original_name=f"{item['id']}.wav")
        row = st.add_item(
            item["question"], item["choices"], answer=item["answer"], source="synth-aqa",
            external_id=item["id"], clip=clip.hash, meta={"events": item["events"], "id": item["id"]},
            task=item["sub-category"], difficulty=item["difficulty"],
        )  # fmt: skip
        bad_think, bad_answer, _ = corrupt_trace(item, rng)
        for think, answer in ((item["reasoning"], item["answer"]), (bad_think, bad_answer)):
            g = st.add_generation(row.id, "tiny", "think", f"<think>{think}</think><answer>{answer}</answer>")
            (v,) = oracle.score_batch([JudgeRequest(item["question"], item["choices"], think, answer, item)])
            st.rate(g.id, "oracle", consistent=bool(v.consistent), quality=v.quality, source="oracle")
    oracle_labels = {(r.generation_id): r for r in st.ratings(["oracle"])}
    for k, (gid, r) in enumerate(sorted(oracle_labels.items())[2:14]):  # not the first item: bea rates it
        st.rate(gid, "bea", consistent=bool(r.consistent), quality=r.quality)
        if k % 2 == 0:
            st.rate(gid, "cat", consistent=not r.consistent if k % 4 == 0 else bool(r.consistent),
                    quality=round(max(0.0, r.quality - 0.3), 1))  # fmt: skip


def _where(states: list[list]) -> list[tuple[float, str]]:
    """The players' (position in seconds, playing or paused), for the printed line."""
    return [(round(pos, 2), "paused" if paused else "playing") for pos, paused, _ in states]


def _small_png(path: Path) -> None:
    """Rewrite ``path`` as a palette PNG (a screenshot with few colours: a fraction of the bytes)."""
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="docs/img", help="folder for the PNGs")
    p.add_argument("--items", type=int, default=20, help="synth-aqa items (two traces each)")
    p.add_argument("--seed", type=int, default=3)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="studio-shots-"))
    os.environ["AUDIO_THINKER_DB"] = f"sqlite:///{tmp / 'ratings.db'}"
    os.environ["AUDIO_THINKER_USERS"] = ",".join(f"{u}:{pw}" for u, pw in USERS.items())
    os.environ["AUDIO_THINKER_ADMINS"] = "ann"

    from playwright.sync_api import expect, sync_playwright

    from app import studio
    from app.services import state

    state.configure(runs_root=tmp / "runs", exports_dir=tmp / "exports", reward_model_dir=tmp / "rm")
    _seed(state.store(), args.items, args.seed)
    demo, url = studio.serve()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM,
                args=[
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--autoplay-policy=no-user-gesture-required",
                ],
            )
            expect.set_options(timeout=120_000)

            def signed_in(user: str):
                page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
                page.set_default_timeout(120_000)
                page.goto(url)
                page.get_by_label("username").fill(user)
                page.get_by_label("password").fill(USERS[user])
                page.get_by_role("button", name="Login").click()
                expect(page.locator("#studio-notice")).to_contain_text(f"Signed in as {user}")
                return page

            # (a) the spectrogram, a claim's time clicked, the clip playing from it
            page = signed_in("bea")
            page.get_by_role("tab", name="Rate").click()
            expect(page.locator("#rate-spectrogram")).to_be_visible()
            links = page.locator("#rate-reasoning a.at-time")
            expect(links.nth(1)).to_be_visible()
            link = links.nth(1)
            t = float(link.get_attribute("data-t"))
            deadline = time.time() + 30
            while not any(ready >= 2 for *_, ready in page.evaluate(_PLAYING_JS)):  # the clip loaded
                if time.time() > deadline:
                    raise SystemExit(f"error: the clip did not load: {page.evaluate(_PLAYING_JS)}")
                page.wait_for_timeout(50)
            if any(pos >= t or not paused for pos, paused, _ in page.evaluate(_PLAYING_JS)):
                raise SystemExit(
                    f"error: the player was not paused before {t} s: {page.evaluate(_PLAYING_JS)}"
                )
            link.click()
            deadline = time.time() + 30
            while not any(pos >= t and not paused for pos, paused, _ in page.evaluate(_PLAYING_JS)):
                if time.time() > deadline:
                    raise SystemExit(
                        f"error: the player is not playing from {t} s: {page.evaluate(_PLAYING_JS)}"
                    )
                page.wait_for_timeout(20)
            before = page.evaluate(_PLAYING_JS)  # at once: the picture shows the playhead just past t
            shot = out / "rate-spectrogram-claim.png"
            page.locator("#rate-panel").screenshot(path=str(shot))
            after = page.evaluate(_PLAYING_JS)
            _small_png(shot)
            print(
                f"{shot}: clicked {link.inner_text()!r}; player before / after the picture: {_where(before)} / {_where(after)}"
            )
            page.context.close()

            # (b) the admin's gold-agreement table, (c) the reward model trained in the page
            admin = signed_in("ann")
            admin.get_by_role("tab", name="Reward model").click()
            gold = admin.locator("#rm-gold")
            expect(gold).to_contain_text("bea")
            expect(gold).to_contain_text("cat")
            shot = out / "gold-agreement.png"
            gold.screenshot(path=str(shot))
            _small_png(shot)
            print(f"{shot}: {' | '.join(gold.inner_text().split(chr(10)))!r}")
            t0 = time.perf_counter()
            admin.locator("#rm-train").click()
            result = admin.locator("#rm-metrics")
            expect(result).to_contain_text("Reward model trained", timeout=900_000)
            seconds = time.perf_counter() - t0
            text = result.inner_text()
            if "{" in text or "pairwise accuracy" not in text:
                raise SystemExit(f"error: the reward model's result is not in words: {text[:200]!r}")
            shot = out / "reward-model-result.png"
            result.screenshot(path=str(shot))
            _small_png(shot)
            print(f"{shot}: trained in the browser in {seconds:.0f} s; {text.splitlines()[0]!r}")
            admin.context.close()
            browser.close()
    finally:
        demo.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
