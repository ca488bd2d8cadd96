"""Issue #25: simulated raters. The oracle's first flawed step, the noise model, and a session through the real
studio server (``gradio_client`` over HTTP, a temporary SQLite store) whose ratings land with their annotators."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from audio_thinker import synth
from audio_thinker.judges import JudgeRequest
from audio_thinker.judges.oracle import OracleJudge
from audio_thinker.raters import (
    Label,
    NoiseModel,
    RaterResult,
    RatersConfig,
    RatersError,
    main,
    noisy_label,
    run_session,
)
from audio_thinker.rewards import sentence_spans

USERS = {"ann": "a", "bea": "b", "cal": "c", "dot": "d", "eve": "e"}


def _pattern_item() -> dict:
    """A pitch-pattern item (three beeps with onsets and pitches, a step derivation, a conclusion)."""
    return next(
        it for i in range(50) if (it := synth.generate_item("pitch_pattern", 7, i, "test")[0])["events"]
    )


def _flawed(item: dict, think: str) -> int | None:
    request = JudgeRequest(item["question"], item["choices"], think, item["answer"], item)
    return OracleJudge().first_flawed_step(request, [e for _, e in sentence_spans(think)])


def test_the_oracle_finds_the_first_flawed_step():
    item = _pattern_item()
    gold = item["reasoning"]
    parts = [gold[s:e] for s, e in sentence_spans(gold)]
    assert parts[0].startswith("Beep 1") and parts[2].startswith("Beep 3"), parts
    assert _flawed(item, gold) is None  # a flawless trace: no step
    second = parts[1]
    pitch = next(p for p in ("high", "low", "middle") if p in second)
    misheard = second.replace(pitch, "high" if pitch != "high" else "low")
    assert _flawed(item, " ".join([parts[0], misheard, *parts[2:]])) == 1
    assert _flawed(item, " ".join(["I like this clip.", *parts])) == 0  # an unsupported sentence
    assert _flawed(item, " ".join([*parts[:2], *parts[3:]])) == 2  # beep 3 left out: the trace moves on
    assert _flawed({**item, "events": None}, gold) is None  # no ground truth, no step


def test_the_noise_model():
    verdict = SimpleNamespace(consistent=1, quality=0.8)
    think = "Beep 1 at 0.2 s: high. Beep 2 at 0.9 s: low. So the answer is down."
    spans = sentence_spans(think)
    exact = NoiseModel(flip=0.0, quality_sd=0.0, bias_sd=0.0, off_by_one=0.0, skip=0.0)
    label = noisy_label(5, think, verdict, 1, noise=exact, bias=0.0, rng=random.Random(0))
    assert label == Label(5, "submitted", True, 0.8, 1, spans[1])
    assert (
        noisy_label(5, think, verdict, None, noise=exact, bias=0.0, rng=random.Random(0)).flawed_span is None
    )
    assert (
        noisy_label(5, think, verdict, 1, noise=exact, bias=0.5, rng=random.Random(0)).quality == 1.0
    )  # clipped
    always = NoiseModel(flip=1.0, quality_sd=0.0, bias_sd=0.0, off_by_one=1.0, skip=0.0)
    moved = noisy_label(5, think, verdict, 0, noise=always, bias=0.04, rng=random.Random(1))
    assert (moved.consistent, moved.quality, moved.flawed_step) == (False, 0.8, 1)  # 0.84 snaps to 0.8
    skip = NoiseModel(skip=1.0)
    assert noisy_label(5, think, verdict, 1, noise=skip, bias=0.0, rng=random.Random(0)).status == "skipped"
    noisy = NoiseModel(quality_sd=0.3, skip=0.0)
    draws = {
        noisy_label(5, think, verdict, 1, noise=noisy, bias=0.0, rng=random.Random(k)).quality
        for k in range(50)
    }
    assert draws <= {k / 10 for k in range(11)} and len(draws) > 3  # the 0.1 grid, spread


def test_a_rater_with_an_empty_queue_is_told_how_to_fill_it():
    empty = RaterResult(rater=0, annotator="ann", bias=0.0).summary()
    assert "0 traces" in empty and "queue was empty" in empty and "bootstrap" in empty
    busy = RaterResult(rater=0, annotator="ann", bias=0.0, labels=[Label(1, "skipped")]).summary()
    assert "queue was empty" not in busy


def test_bad_flags_are_one_line_errors(capsys):
    assert main(["--skip", "1.5"]) == 2
    assert main(["--per-rater", "0"]) == 2
    assert main(["--db", "/nonexistent/ratings.db"]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert [e.split()[1] for e in errors] == ["--skip", "--per-rater", "no"], errors
    with pytest.raises(RatersError, match="users"):
        run_session(RatersConfig(users="ann:a", raters=2), store=None)


@pytest.fixture()
def studio(tmp_path, shipped_lm):
    """A served studio whose queue holds a trace without ground truth, then 6 synth items with a gold and a
    corrupted trace each (the corrupted ones rated by nobody yet)."""
    from studio_harness import configured_service, served

    from audio_thinker.reward_model import corrupt_trace

    with configured_service(tmp_path, shipped_lm, USERS, "ann") as state:
        st = state.store()
        upload = st.add_item("What is this?", ["a", "b"], source="import", external_id="no-truth")
        st.add_generation(upload.id, "tiny", "think", "<think>A beep.</think><answer>a</answer>", run="r")
        rng = random.Random(3)
        for k, task in enumerate(("count", "pitch_pattern", "high_low_difference", "longest", "odd_one_out",
                                  "compare_pitch")):  # fmt: skip
            item, _ = synth.generate_item(task, 11, k, "test")
            meta = {key: item[key] for key in ("events", "reasoning", "sub-category")}
            row = st.add_item(item["question"], item["choices"], answer=item["answer"], source="synth-aqa",
                              external_id=item["id"], meta=meta, task=task)  # fmt: skip
            for think, answer in ((item["reasoning"], item["answer"]), corrupt_trace(item, rng)[:2]):
                st.add_generation(row.id, "tiny", "think", f"<think>{think}</think><answer>{answer}</answer>",
                                  run="r")  # fmt: skip
        with served() as url:
            yield url, st, state


def _stored(st, name: str) -> list[tuple]:
    rows = st.ratings(statuses=("submitted", "skipped"))
    return [
        (r.generation_id, r.status, r.consistent, r.quality, r.flawed_span)
        for r in rows
        if r.annotator == name
    ]


def _labels(result) -> list[tuple]:
    return [
        (lab.generation_id, lab.status, lab.consistent, lab.quality, lab.flawed_span) for lab in result.labels
    ]


@pytest.mark.slow
def test_simulated_raters_rate_through_the_studio_and_a_seed_repeats_them(studio, capsys):
    url, st, _ = studio
    noise = {"flip": 0.2, "quality_sd": 0.15, "bias_sd": 0.1, "off_by_one": 0.5, "skip": 0.25}
    cfg = RatersConfig(url=url, users="ann:a,bea:b", per_rater=8, seed=4)
    first = run_session(cfg, st, NoiseModel(**noise))
    assert [r.annotator for r in first] == ["ann", "bea"]
    for result in first:
        stored = _stored(st, result.annotator)
        assert sorted(stored) == sorted(_labels(result))  # every label arrived, with its annotator
        skipped = sum(s == "skipped" for _, s, *_ in stored)
        assert len(stored) == 8 and sum(s == "submitted" for _, s, *_ in stored) == 8 - skipped
        assert result.no_truth == 1  # the trace without ground truth was passed over, not rated
        votes = [v for v in st.votes() if v.annotator == result.annotator]
        assert len(votes) == len(result.votes) > 0
    assert any(s == "skipped" for r in first for _, s, *_ in _labels(r))
    assert any(lab.flawed_span for r in first for lab in r.labels)
    assert _labels(first[0]) != _labels(first[1])  # each rater draws its own

    argv = [
        "--url",
        url,
        "--users",
        "cal:c,dot:d",
        "--per-rater",
        "8",
        "--seed",
        "4",
        "--db",
        st.url,
        "--parallel",
    ]
    argv += [f"--{k.replace('_', '-')}={v}" for k, v in noise.items()]
    assert main(argv) == 0  # the command: the same seed, two other accounts, both raters at once
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and lines[0].startswith("rater 0 (cal): 8 traces"), lines
    assert _stored(st, "cal") == _stored(st, "ann") and _stored(st, "dot") == _stored(st, "bea")

    other = run_session(RatersConfig(url=url, users="eve:e", per_rater=8, seed=5), st, NoiseModel(**noise))
    assert _labels(other[0]) != _labels(first[0])  # another seed, other labels
