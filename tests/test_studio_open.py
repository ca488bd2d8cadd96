"""Issue #17: a studio started without sign-in (no ``AUDIO_THINKER_USERS``) is open to anyone who can reach
it. Each visitor (browser session / client) is an anonymous guest: what they upload or record stays
theirs, and nobody exports everyone's ratings. Over ``gradio_client`` against the real server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.services import model as model_service
from app.services import state as state_service


@pytest.fixture(scope="module")
def server(tmp_path_factory, shipped_lm):
    import torch

    from app import studio

    root = tmp_path_factory.mktemp("studio-open")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUDIO_THINKER_DB", f"sqlite:///{root / 'ratings.db'}")
        for var in ("AUDIO_THINKER_USERS", "AUDIO_THINKER_ADMINS", "SPACE_ID", "AUDIO_THINKER_MODEL"):
            mp.delenv(var, raising=False)
        state_service.configure(
            lm=shipped_lm, runs_root=root / "runs", reward_model_dir=root / "rm", exports_dir=root / "exports"
        )
        model_service.warm_up()
        demo, url = studio.serve()
        yield url
        demo.close()
        state_service.configure(state_service.Settings())
    torch.set_num_threads(threads)


def test_anonymous_visitors_do_not_see_each_others_recordings_or_ratings(server, tmp_path):
    import numpy as np
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    from audio_thinker.audio import write_wav

    t = np.arange(16000) / 16000
    rec = tmp_path / "microphone.wav"
    write_wav(rec, 0.3 * np.sin(2 * np.pi * 700 * t) * (t % 0.4 < 0.15))
    first, second = Client(server, verbose=False), Client(server, verbose=False)
    r = first.predict(handle_file(str(rec)), "How many beeps are there?", "2\n3", api_name="/compare")
    mine = {x["generation_id"] for x in first.predict(100, api_name="/queue")["traces"]}
    theirs = {x["generation_id"] for x in second.predict(100, api_name="/queue")["traces"]}
    assert r["a"]["generation_id"] in mine and r["a"]["generation_id"] not in theirs
    first.predict(r["a"]["generation_id"], True, 0.8, None, None, "first visitor's note", api_name="/rate")
    with pytest.raises(AppError):
        second.predict(r["a"]["generation_id"], True, 0.1, api_name="/rate")
    exported = Path(second.predict("trl", api_name="/export")).read_text()
    assert "first visitor's note" not in exported and "microphone" not in exported
    own = [json.loads(x) for x in Path(first.predict("jsonl", api_name="/export")).read_text().splitlines()]
    assert [x["comment"] for x in own] == ["first visitor's note"]  # a guest gets their own ratings only
