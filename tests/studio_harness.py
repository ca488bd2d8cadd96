"""The real studio for tests: the service configured on a temporary SQLite database with sign-in, the
server on a free port, ``gradio_client`` clients and Debian's Chromium (Playwright) signed in to it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("AUDIO_THINKER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@contextmanager
def configured_service(root: Path, lm, users: dict[str, str], admin: str, **settings) -> Iterator:
    """``app.services`` configured for ``root/ratings.db`` (runs, reward model and exports under ``root``),
    with ``users`` signing in and ``admin`` as the admin; the settings are dropped and torch's thread count
    restored afterwards. Yields :mod:`app.services.state`."""
    import torch

    from app.services import model, state

    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUDIO_THINKER_DB", f"sqlite:///{root / 'ratings.db'}")
        mp.setenv("AUDIO_THINKER_USERS", ",".join(f"{u}:{p}" for u, p in users.items()))
        mp.setenv("AUDIO_THINKER_ADMINS", admin)
        mp.delenv("AUDIO_THINKER_MODEL", raising=False)
        state.configure(
            lm=lm,
            runs_root=root / "runs",
            reward_model_dir=root / "rm",
            exports_dir=root / "exports",
            **settings,
        )
        model.warm_up()
        try:
            yield state
        finally:
            state.configure(state.Settings())  # drop the store and model references
    torch.set_num_threads(threads)


@contextmanager
def served() -> Iterator[str]:
    """The studio launched in-process on a free port: its URL."""
    from app import studio

    demo, url = studio.serve()
    try:
        yield url
    finally:
        demo.close()


def client(url: str, user: str, password: str):
    from gradio_client import Client

    return Client(url, auth=(user, password), verbose=False)


@contextmanager
def chromium() -> Iterator:
    """A headless Debian Chromium driven by Playwright (no Playwright browser download)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield browser
        finally:
            browser.close()


def signed_in(browser, url: str, user: str, password: str):
    """A new page of ``browser`` signed in to the studio at ``url`` as ``user``."""
    from playwright.sync_api import expect

    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.set_default_timeout(60_000)
    expect.set_options(timeout=60_000)
    page.goto(url)
    page.get_by_label("username").fill(user)
    page.get_by_label("password").fill(password)
    page.get_by_role("button", name="Login").click()
    expect(page.locator("#studio-notice")).to_contain_text(f"Signed in as {user}")
    return page
