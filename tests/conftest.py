"""Shared fixtures: the shipped tiny model, a random tiny model of the same recipe, small synth sets."""

from __future__ import annotations

import os

import pytest
import torch

from audio_thinker.models import cpu_threads

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(cpu_threads())  # the project's rule (one thread on small machines: docs/grpo.md)


@pytest.fixture(scope="session")
def shipped_lm():
    """The shipped tiny audio LM (the project's default model)."""
    from audio_thinker.inference import AudioLM
    from audio_thinker.models import TINY_MODEL_DIR

    assert (TINY_MODEL_DIR / "model.safetensors").exists(), "the shipped tiny model is missing"
    return AudioLM.from_pretrained(str(TINY_MODEL_DIR))


@pytest.fixture(scope="session")
def random_lm():
    """A randomly initialised model of the tiny recipe (fast to build; for plumbing tests)."""
    from audio_thinker.inference import AudioLM
    from audio_thinker.models import build_processor, build_tiny_model, build_tokenizer
    from audio_thinker.warmstart import tokenizer_corpus

    tok = build_tokenizer(tokenizer_corpus(seed=1, n_per_task=20))
    return AudioLM(build_tiny_model(tok, seed=0), build_processor(tok), max_new_tokens=24)


@pytest.fixture(scope="session")
def synth_set(tmp_path_factory):
    """A small synth-aqa split on disk: 2 items per task."""
    from audio_thinker import synth

    out = tmp_path_factory.mktemp("synth")
    return synth.make_split(out, n=18, seed=321, split="test")


# -- the studio (tests/studio_harness.py): each studio module defines its own ``configured`` studio --------


@pytest.fixture(scope="module")
def server(configured):
    """The studio of the module's ``configured`` services, launched in-process on a free port: its URL."""
    from studio_harness import served

    with served() as url:
        yield url


@pytest.fixture(scope="module")
def example(configured) -> tuple[str, dict]:
    """A synth-aqa example clip (count task, whose think trace has several sentences) and its item."""
    from app.services.compare import example_items

    return next((p, it) for p, it in example_items() if it["sub-category"] == "count")


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium through Playwright."""
    from studio_harness import chromium

    with chromium() as b:
        yield b
