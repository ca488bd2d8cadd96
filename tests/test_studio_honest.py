"""Issue #17, the rest: the studio is honest about its model (model card, a flag on clips unlike the
training clips, a visible "ran out of tokens" state, a one-line exit for a model that cannot load), says
what to do when a tab is empty, marks the built-in examples' correct answers, shows a think answer's
reasoning open, and its radio groups act as groups for the keyboard. Against the real server, over
``gradio_client`` and in headless Chromium (Debian's ``chromium`` through Playwright's Python API)."""

from __future__ import annotations

import io
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import studio_harness
from studio_harness import CHROMIUM, configured_service, served

from app.services import compare as compare_service
from app.services import model as model_service

USERS = {"ann": "ann-pw", "bea": "bea-pw"}
ROOT = Path(__file__).resolve().parents[1]
SR = 16000

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}: apt-get install -y chromium"
)


@pytest.fixture(scope="module")
def studio(tmp_path_factory, shipped_lm):
    """The studio with ann (admin) and bea on a fresh database and an empty runs folder; yields
    (url, db file)."""
    root = tmp_path_factory.mktemp("studio-honest")
    (root / "runs").mkdir()
    with configured_service(root, shipped_lm, USERS, "ann"), served() as url:
        yield url, root / "ratings.db"


def signed_in(browser, url: str, user: str):
    return studio_harness.signed_in(browser, url, user, USERS[user])


def client(url: str, user: str):
    return studio_harness.client(url, user, USERS[user])


def count_example() -> tuple[str, dict]:
    return next((p, it) for p, it in compare_service.example_items() if it["sub-category"] == "count")


# ----------------------------------------------------------------------------------- made-up clips


def _resonator(x: np.ndarray, freq: float, bandwidth: float) -> np.ndarray:
    """A two-pole resonance (a formant) at ``freq`` Hz."""
    r = np.exp(-np.pi * bandwidth / SR)
    a1, a2 = -2 * r * np.cos(2 * np.pi * freq / SR), r * r
    y = np.zeros_like(x)
    y1 = y2 = 0.0
    for i, v in enumerate(x.tolist()):
        y1, y2 = (1 - r) * v - a1 * y1 - a2 * y2, y1
        y[i] = y1
    return y


def speech_like(rng: np.random.Generator, seconds: float = 3.0) -> np.ndarray:
    """A voiced pulse train with a gliding pitch through three formants, gated at syllable rate."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 110 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)) + rng.uniform(0, 60)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
    formants = ((500, 800, 80), (1000, 1800, 100), (2300, 2900, 120))
    y = sum(_resonator(voiced, rng.uniform(lo, hi), bw) for lo, hi, bw in formants)
    gate = (np.sin(2 * np.pi * rng.uniform(3, 5) * t) > -0.2).astype(float)
    y = y * np.convolve(gate, np.ones(400) / 400, "same")
    return (y / np.abs(y).max() * 0.5 + rng.standard_normal(len(y)) * 0.003).astype(np.float32)


def noise_clip(rng: np.random.Generator, kind: str) -> np.ndarray:
    w = rng.standard_normal(3 * SR)
    if kind == "pink":
        f = np.fft.rfft(w)
        f /= np.sqrt(np.maximum(np.arange(len(f)), 1))
        w = np.fft.irfft(f, 3 * SR)
    return (w / np.abs(w).max() * 0.4).astype(np.float32)


def phone_ring(seconds: float = 6.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    ring = (
        (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 480 * t)) * 0.3 * (np.sin(2 * np.pi * 20 * t) > 0)
    )
    return (ring * ((t % 6) < 2)).astype(np.float32)


def low_bitrate_mp3(wave: np.ndarray) -> np.ndarray:
    import soundfile as sf

    from audio_thinker.audio import load_audio

    buf = io.BytesIO()
    sf.write(buf, wave, SR, format="MP3", compression_level=0.99)
    return load_audio(buf.getvalue())


# ------------------------------------------------------------------------------- 2. empty states


@needs_chromium
def test_empty_tabs_say_what_to_do(studio, browser):
    """Fresh database, no runs: Rate, Reward model and Runs each say what to do next (for an annotator,
    nothing about importing, which only admins can do)."""
    from playwright.sync_api import expect

    url, _ = studio
    page = signed_in(browser, url, "bea")
    page.get_by_role("tab", name="Rate").click()
    expect(page.locator("#rate-header")).to_contain_text("Nothing to rate")
    expect(page.locator("#rate-header")).to_contain_text("Ask & compare")
    assert "below" not in page.locator("#rate-header").inner_text()  # the import form is admins' only
    page.get_by_role("tab", name="Reward model").click()
    expect(page.locator("#rm-overview")).to_contain_text("No ratings or votes yet")
    expect(page.locator("#rm-overview")).to_contain_text("Rate")
    page.get_by_role("tab", name="Runs").click()
    expect(page.locator("#runs-head")).to_contain_text("No runs yet")
    expect(page.locator("#runs-head")).to_contain_text("python -m audio_thinker.train")
    page.context.close()
    page = signed_in(browser, url, "ann")
    page.get_by_role("tab", name="Rate").click()
    expect(page.locator("#rate-header")).to_contain_text("Import traces")
    page.context.close()


# -------------------------------------------------------------------------------- 1. the model card


def test_model_card_says_what_the_model_hears(studio):
    """``/model_card``: the shipped model heard synthetic events only, at 16 kHz, its first 3 s (from its
    processor's feature extractor), with its numbers in docs/models.md."""
    url, _ = studio
    card = client(url, "bea").predict(api_name="/model_card")
    assert card["synthetic_only"] is True
    assert card["clip_window_s"] == 3.0 and card["sampling_rate"] == 16000
    assert "tones" in card["trained_on"] and "chirps" in card["trained_on"] and "noise" in card["trained_on"]
    assert "docs/models.md" in card["numbers"]
    assert card["max_new_tokens"] > 0


@needs_chromium
def test_model_card_panel_is_on_the_page(studio, browser):
    from playwright.sync_api import expect

    url, _ = studio
    page = signed_in(browser, url, "bea")
    panel = page.locator("#cmp-model-card-text")
    expect(panel).to_contain_text("first 3 s")
    expect(panel).to_contain_text("never heard speech")
    expect(panel).to_contain_text("docs/models.md")
    page.context.close()


def test_audio_check_separates_synth_from_speech_noise_and_mp3():
    """The cheap check on 90 synth-aqa clips (10 per task, unseen seed) and 45 of the shifted split: no
    flag; speech-like clips, loud noise, a 6-s phone ring and low-bitrate MP3s of synth clips: flagged."""
    from app.card import unlike_synth
    from audio_thinker import synth

    tasks = list(synth.TASKS)
    synth_clips = [synth.generate_item(tasks[k % len(tasks)], 777, k, "test")[1] for k in range(90)]
    shifted = [synth.generate_item(tasks[k % len(tasks)], 778, k, "test", shift=True)[1] for k in range(45)]
    false_flags = [c.flags for c in (unlike_synth(w, SR, 3.0) for w in synth_clips + shifted) if c.flags]
    assert false_flags == []
    rng = np.random.default_rng(0)
    far = {
        "speech": [speech_like(rng) for _ in range(10)],
        "white noise": [noise_clip(rng, "white") for _ in range(5)],
        "pink noise": [noise_clip(rng, "pink") for _ in range(5)],
        "phone ring": [phone_ring()],
        "low-bitrate mp3": [low_bitrate_mp3(w) for w in synth_clips[:10]],
    }
    for name, clips in far.items():
        flagged = [bool(unlike_synth(w, SR, 3.0).flags) for w in clips]
        assert sum(flagged) >= 0.8 * len(clips), (name, flagged)
    assert any("first 3 s" in f for f in unlike_synth(phone_ring(), SR, 3.0).flags)


def test_uploaded_speech_is_flagged_over_the_api(studio, tmp_path):
    """``/check_audio`` and ``/compare`` say why a speech-like upload is far from the training clips;
    a built-in example gets no flag."""
    import soundfile as sf
    from gradio_client import handle_file

    url, _ = studio
    clip = tmp_path / "speech.wav"
    sf.write(clip, speech_like(np.random.default_rng(1)), SR)
    c = client(url, "bea")
    flags = c.predict(handle_file(str(clip)), api_name="/check_audio")["flags"]
    assert flags and any("speech" in f for f in flags)
    path, _ = count_example()
    assert c.predict(handle_file(path), api_name="/check_audio")["flags"] == []
    r = c.predict(handle_file(str(clip)), "How many beeps are there?", "1\n2\n3", api_name="/compare")
    assert r["audio_flags"] and any("speech" in f for f in r["audio_flags"])


@needs_chromium
def test_an_upload_unlike_the_training_clips_is_flagged_on_the_page(studio, browser, tmp_path):
    """Right after the upload, under the player: a speech-like clip of 6 s is flagged (sounds and length);
    a built-in example is not."""
    import soundfile as sf
    from playwright.sync_api import expect

    url, _ = studio
    clip = tmp_path / "talk.wav"
    sf.write(clip, speech_like(np.random.default_rng(2), seconds=6.0), SR)
    page = signed_in(browser, url, "bea")
    page.locator("#cmp-audio input[type=file]").set_input_files(str(clip))
    flag = page.locator("#cmp-audio-flag")
    expect(flag).to_contain_text("unlike what the model was trained on")
    expect(flag).to_contain_text("first 3 s")
    expect(flag).to_contain_text("speech")
    page.context.close()


# --------------------------------------------------------------------------- 1. ran out of tokens


def test_a_think_answer_cut_at_the_token_cap_says_so(studio, shipped_lm, monkeypatch):
    """With the cap at 8 tokens the think answer cannot close: the API says ``ran_out_of_tokens``."""
    from gradio_client import handle_file

    url, _ = studio
    monkeypatch.setattr(shipped_lm, "max_new_tokens", 8)
    path, it = count_example()
    r = client(url, "bea").predict(
        handle_file(path), it["question"], "\n".join(it["choices"]), api_name="/compare"
    )
    think, direct = r["a"], r["b"]
    assert think["mode"] == "think" and think["completion_tokens"] == 8 and think["answer"] is None
    assert think["ran_out_of_tokens"] is True
    assert direct["ran_out_of_tokens"] is False and direct["answer"]


@needs_chromium
def test_out_of_tokens_is_shown_instead_of_an_endless_spinner(studio, browser, shipped_lm, monkeypatch):
    from playwright.sync_api import expect

    url, _ = studio
    monkeypatch.setattr(shipped_lm, "max_new_tokens", 8)
    page = signed_in(browser, url, "bea")
    _, it = count_example()
    page.get_by_text(it["question"]).first.click()
    expect(page.locator("#cmp-question textarea")).to_have_value(it["question"])
    page.locator("#cmp-ask").click()
    expect(page.locator("#cmp-result")).to_contain_text("Both answers are in")
    both = page.locator("#cmp-left, #cmp-right")
    expect(both.get_by_text("No answer: ran out of tokens")).to_have_count(1)
    expect(page.locator("#cmp-left-stats, #cmp-right-stats").get_by_text("ran out of tokens")).to_have_count(
        1
    )
    # no thought is left pending: Gradio draws a spinner for those
    assert page.locator("#cmp-left .loading-spinner, #cmp-right .loading-spinner, #cmp-left [class*=spinner], "
                        "#cmp-right [class*=spinner]").count() == 0  # fmt: skip
    page.context.close()


# ------------------------------------------------------------------------------ 1. a model that cannot load


def test_app_exits_with_one_line_when_the_model_cannot_be_loaded(tmp_path):
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "AUDIO_THINKER_DB": f"sqlite:///{tmp_path}/r.db",
    }
    for model in (str(tmp_path / "no-such-model"), "someone/not-cached-model"):
        p = subprocess.run(
            [sys.executable, "app.py", "--model", model],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert p.returncode != 0
        assert "Traceback" not in p.stderr, p.stderr[-2000:]
        lines = [line for line in p.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "cannot start the studio" in lines[0] and model in lines[0], p.stderr[
            -2000:
        ]


# ------------------------------------------------------------------- 2. correct answers, open reasoning


def test_examples_answers_are_marked_correct_or_wrong_over_the_api(studio):
    from gradio_client import handle_file

    url, _ = studio
    path, it = count_example()
    r = client(url, "bea").predict(
        handle_file(path), it["question"], "\n".join(it["choices"]), api_name="/compare"
    )
    assert r["gold"] == it["answer"]
    for side in (r["a"], r["b"]):
        assert side["correct"] is (side["answer"] is not None and it["answer"] in side["answer"])


@needs_chromium
def test_examples_hide_their_answer_until_asked_and_a_think_answer_shows_its_reasoning_open(studio, browser):
    from playwright.sync_api import expect

    url, db_file = studio
    page = signed_in(browser, url, "bea")
    _, it = count_example()
    example = page.get_by_text(it["question"]).first
    expect(example).not_to_contain_text(f"✓ {it['answer']}")  # not shown before asking (issue 24)
    example.click()
    expect(page.locator("#cmp-question textarea")).to_have_value(it["question"])
    page.locator("#cmp-ask").click()
    expect(page.locator("#cmp-result")).to_contain_text("Both answers are in")
    stats = page.locator("#cmp-left-stats, #cmp-right-stats")
    expect(stats.filter(has_text=re.compile("correct|wrong"))).to_have_count(2)
    with sqlite3.connect(db_file) as con:
        (think,) = con.execute(
            "select think from generations where mode = 'think' and think is not null order by id desc limit 1"
        ).fetchone()
    # the reasoning is open (Gradio closes a finished thought unless told otherwise): its text is visible
    expect(page.locator("#cmp-left, #cmp-right").get_by_text(think[:12]).first).to_be_visible()
    page.context.close()


# -------------------------------------------------------------------------------- 2. radio groups


@needs_chromium
def test_radio_groups_move_with_arrow_keys(studio, browser):
    """Tab reaches a radio group once; the arrow keys move the choice within it (not out of it)."""
    from playwright.sync_api import expect

    url, _ = studio
    page = signed_in(browser, url, "bea")
    group = page.locator("#cmp-pair")
    first = group.locator("input[type=radio]").first
    expect(first).to_be_checked()
    first.focus()
    page.keyboard.press("ArrowRight")
    expect(group.locator("input[type=radio]").nth(1)).to_be_checked()
    assert page.evaluate("document.activeElement.closest('#cmp-pair') !== null")
    page.keyboard.press("ArrowDown")
    expect(group.locator("input[type=radio]").nth(2)).to_be_checked()
    page.keyboard.press("ArrowLeft")
    expect(group.locator("input[type=radio]").nth(1)).to_be_checked()
    # one tab stop per group: Tab leaves the group
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('#cmp-pair') === null")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.closest('#cmp-pair') !== null")
    assert page.evaluate("document.activeElement.checked") is True
    page.context.close()


def test_another_models_card_says_what_its_config_and_processor_say(studio, monkeypatch):
    """For a model other than the shipped one, the card claims nothing about its training: it gives what the
    config and processor say, and uploads are checked only against the clip window."""
    monkeypatch.setattr(model_service, "model_name", lambda: "someone/audio-model")
    card = model_service.model_card("ann")
    assert card["model"] == "someone/audio-model" and card["synthetic_only"] is False
    assert card["trained_on"] is None and card["architecture"] == "Qwen2AudioForConditionalGeneration"
    assert card["clip_window_s"] == 3.0 and card["sampling_rate"] == 16000
    assert "see its model card" in model_service.model_card_markdown("ann")
    path, _ = count_example()
    assert model_service.audio_check(path) == []
