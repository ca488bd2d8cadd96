"""Issue #25: the raters' flawed-step marks exported in TRL's stepwise-supervision format (``PRMTrainer``:
``prompt``, ``completions`` as steps, ``labels``), read back with ``datasets``. A real SQLite store."""

from __future__ import annotations

import pytest

from audio_thinker.reward_model import main
from audio_thinker.rewards import sentence_spans
from audio_thinker.store import Store

THINK = "Beep 1 at 0.2 s: high. Beep 2 at 0.9 s: high. Beep 3 at 1.5 s: low. So the answer is flat then down."
GOLD = "Beep 1 at 0.2 s: high. Beep 2 at 0.9 s: low. Beep 3 at 1.5 s: low. So the answer is down then flat."
EVENTS = [
    {"kind": "tone", "onset": 0.2, "pitch": "high", "length": "short", "level": "loud"},
    {"kind": "tone", "onset": 0.9, "pitch": "low", "length": "short", "level": "loud"},
    {"kind": "tone", "onset": 1.5, "pitch": "low", "length": "short", "level": "loud"},
]


@pytest.fixture()
def db(tmp_path) -> str:
    """Four ratings of one trace: a marked flawed step (beep 2), a flawless and consistent one, a flawless
    but inconsistent one, and a flawed one without a mark."""
    url = f"sqlite:///{tmp_path / 'ratings.db'}"
    with Store(url) as st:
        item = st.add_item("What is the pitch pattern?", ["up then down", "flat then down", "falling"],
                           answer="falling", source="synth-aqa", external_id="p1",
                           meta={"events": EVENTS, "sub-category": "pitch_pattern", "reasoning": GOLD})  # fmt: skip
        g = st.add_generation(
            item.id, "tiny", "think", f"<think>{THINK}</think><answer>flat then down</answer>"
        )
        step_two = sentence_spans(THINK)[1]
        st.rate(g.id, "ann", consistent=True, quality=0.6, flawed_span=step_two)
        st.rate(g.id, "bea", consistent=True, quality=1.0)
        st.rate(g.id, "cal", consistent=False, quality=1.0)
        st.rate(g.id, "dot", consistent=True, quality=0.7)  # a flaw, not located: left out
    return url


def test_stepwise_export_loads_with_datasets_with_trl_columns_and_step_labels(db, tmp_path):
    from datasets import load_dataset

    out = tmp_path / "steps.jsonl"
    assert main(["export", "--db", db, "--out", str(out), "--format", "stepwise"]) == 0
    ds = load_dataset("json", data_files=str(out), split="train")
    assert ds.column_names == ["prompt", "completions", "labels"]
    assert (
        ds.features["labels"].feature.dtype == "bool" and ds.features["completions"].feature.dtype == "string"
    )
    assert len(ds) == 3
    marked, flawless, inconsistent = ds
    steps = [THINK[s:e] for s, e in sentence_spans(THINK)] + ["Answer: flat then down"]
    assert marked["completions"] == steps
    assert marked["labels"] == [True, False, False, False, False]  # before the mark True; it and after False
    assert flawless["labels"] == [True] * 5
    assert inconsistent["labels"] == [True, True, True, True, False]  # every sentence holds; the answer not
    assert marked["prompt"].startswith("Question: What is the pitch pattern?\nChoices: up then down | ")
    assert "Reference: Beep 1 at 0.2 s: high" in marked["prompt"]  # the true events, as the judge reads them

    plain = tmp_path / "plain.jsonl"
    assert main(["export", "--db", db, "--out", str(plain), "--format", "stepwise", "--no-reference"]) == 0
    assert "Reference" not in load_dataset("json", data_files=str(plain), split="train")[0]["prompt"]


def test_stepwise_export_refuses_what_it_cannot_write(db, tmp_path, capsys):
    assert main(["export", "--db", db, "--out", str(tmp_path), "--format", "stepwise"]) == 2  # a folder
    assert main(["export", "--db", db, "--out", str(tmp_path / "s.jsonl"), "--format", "stepwise",
                 "--what", "labels"]) == 2  # fmt: skip
    assert main(["export", "--db", db, "--out", str(tmp_path / "s.jsonl"), "--format", "stepwise",
                 "--sources", "oracle"]) == 2  # no oracle ratings: nothing to write  # fmt: skip
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 3 and all(e.startswith("error: ") for e in errors)
