"""MMAU-layout evaluation: files, metric keys, scoring, resilience to bad items."""

from __future__ import annotations

import json

import pytest

from audio_thinker import evaluate as ev


def test_cli_writes_predictions_and_metrics(synth_set, tmp_path, monkeypatch, random_lm, capsys):
    monkeypatch.setattr(
        "audio_thinker.inference.AudioLM.from_pretrained", classmethod(lambda cls, path=None: random_lm)
    )
    out = tmp_path / "eval"
    ev.main(
        ["--data", str(synth_set), "--mode", "think", "--out", str(out), "--limit", "9", "--batch-size", "4"]
    )
    metrics = json.loads((out / "metrics.json").read_text())
    preds = json.loads((out / "predictions.json").read_text())
    assert len(preds) == metrics["n"] == 9
    for key in (
        "accuracy",
        "n",
        "no_prediction",
        "no_think_rate",
        "mean_completion_tokens",
        "by_difficulty",
        "by_task",
    ):
        assert key in metrics
    for d in metrics["by_difficulty"].values():
        assert set(d) == {"accuracy", "no_think_rate", "mean_completion_tokens", "n"}
    assert sum(d["n"] for d in metrics["by_difficulty"].values()) == 9
    assert metrics["config"]["mode"] == "think"
    for p in preds:
        for key in (
            "id",
            "question",
            "choices",
            "answer",
            "events",
            "model_prediction",
            "mode",
            "think",
            "completion_tokens",
        ):
            assert key in p
    assert metrics["accuracy"] == pytest.approx(sum(p["correct"] for p in preds) / 9, abs=1e-4)
    # it ends on a readable summary (a table by difficulty), not a raw Python dict
    said = capsys.readouterr().out
    assert "{" not in said and "'" not in said, said
    table = [line.split() for line in said.splitlines()]
    rows = {r[0]: r[1:] for r in table if r and r[0] in ("all", *metrics["by_difficulty"])}
    assert float(rows["all"][0]) == pytest.approx(metrics["accuracy"], abs=1e-3)
    for name, m in metrics["by_difficulty"].items():
        assert (
            float(rows[name][0]) == pytest.approx(m["accuracy"], abs=1e-3) and int(rows[name][-1]) == m["n"]
        )
    assert str(out / "metrics.json") in said


def test_cli_decodes_each_clip_once(synth_set, tmp_path, monkeypatch, random_lm):
    """The clip check before the model loads decodes every clip; the evaluation reuses them (it decoded each
    clip a second time)."""
    from audio_thinker import audio

    decoded: list[str] = []
    real_load = audio._load

    def counting_load(source, *args):
        decoded.append(str(source))
        return real_load(source, *args)

    monkeypatch.setattr(audio, "_load", counting_load)
    monkeypatch.setattr(
        "audio_thinker.inference.AudioLM.from_pretrained", classmethod(lambda cls, path=None: random_lm)
    )
    ev.main(["--data", str(synth_set), "--mode", "no-think", "--out", str(tmp_path / "eval"), "--limit", "5"])
    assert len(decoded) == len(set(decoded)) == 5, decoded


def test_metrics_by_difficulty_hand_computed():
    rows = [
        {
            "difficulty": "easy",
            "task": "sound",
            "sub-category": "a",
            "correct": True,
            "output_mode": "no_think",
            "completion_tokens": 4,
            "model_prediction": "x",
        },
        {
            "difficulty": "easy",
            "task": "sound",
            "sub-category": "a",
            "correct": False,
            "output_mode": "think",
            "completion_tokens": 40,
            "model_prediction": "",
        },
        {
            "difficulty": "hard",
            "task": "sound",
            "sub-category": "b",
            "correct": True,
            "output_mode": "think",
            "completion_tokens": 60,
            "model_prediction": "y",
        },
    ]
    m = ev.compute_metrics(rows)
    assert m["accuracy"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["no_prediction"] == 1
    assert m["no_think_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["mean_completion_tokens"] == pytest.approx(104 / 3, abs=0.01)
    assert m["by_difficulty"]["easy"] == {
        "accuracy": 0.5,
        "no_think_rate": 0.5,
        "mean_completion_tokens": 22.0,
        "n": 2,
    }
    assert m["by_sub_category"]["b"]["accuracy"] == 1.0


def test_unreadable_audio_is_scored_as_no_prediction(synth_set, tmp_path, random_lm):
    items = ev.load_items(synth_set)[:3]
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF....WAVEfmt garbage")
    items[1]["audio_path"] = str(broken)
    preds, metrics = ev.evaluate(random_lm, items, mode="no-think", batch_size=2, progress=False)
    assert metrics["n"] == 3 and metrics["no_prediction"] >= 1
    err = [p for p in preds if "error" in p]
    assert len(err) == 1 and "broken.wav" in err[0]["error"] and err[0]["correct"] is False


def test_load_items_refuses_bad_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        ev.load_items(bad)
    bad.write_text(json.dumps([{"question": "q"}]))
    with pytest.raises(ValueError, match="lacks audio_id"):
        ev.load_items(bad)


def test_hiss_ablation_keeps_length_and_level():
    import numpy as np

    audio = np.ones(48000, np.float32)
    hiss = ev.ablate(audio, "hiss", seed=0)
    assert hiss.shape == audio.shape and hiss.dtype == np.float32
    assert -43 < 20 * np.log10(np.sqrt(np.mean(hiss.astype(float) ** 2))) < -41
    assert ev.ablate(audio, "none", 0) is audio


def test_oracle_judge_adds_consistency_rate():
    """Gold traces with their answers are consistent; a swapped answer is not; no-think rows are not judged."""
    from audio_thinker import synth
    from audio_thinker.judges import make_judge

    rows = []
    for k, task in enumerate(("count", "odd_one_out", "high_low_difference")):
        item, _ = synth.generate_item(task, 5, k, "test")
        wrong = next(c for c in item["choices"] if c != item["answer"])
        base = {**item, "output_mode": "think", "completion_tokens": 10, "correct": True}
        rows.append({**base, "think": item["reasoning"], "model_prediction": item["answer"]})
        rows.append({**base, "think": item["reasoning"], "model_prediction": wrong, "correct": False})
        rows.append({**base, "think": None, "model_prediction": item["answer"], "output_mode": "no_think"})
    ev.judge_predictions(rows, make_judge("oracle"))
    assert [r["consistent"] for r in rows] == [1, 0, None] * 3
    assert all(r["think_quality"] == 1.0 for r in rows if r["consistent"] is not None)
    metrics = ev.compute_metrics(rows)
    assert metrics["consistency_rate"] == 0.5 and metrics["n_judged"] == 6
    assert metrics["mean_think_quality"] == 1.0
    assert metrics["by_difficulty"]["hard"]["consistency_rate"] == 0.5


def test_pass_at_k_metrics_hand_computed():
    """pass@k: an item counts when any draw is right; sample accuracy counts draws; both by difficulty."""

    def row(difficulty, draws):
        samples = [
            {
                "model_prediction": "x",
                "output_mode": "think",
                "think": "t",
                "correct": c,
                "completion_tokens": 5,
            }
            for c in draws
        ]
        return {
            "difficulty": difficulty,
            "sub-category": "t",
            "correct": draws[0],
            "output_mode": "think",
            "completion_tokens": 5,
            "model_prediction": "x",
            "samples": samples,
        }

    rows = [
        row("easy", [True, True, True, True]),
        row("easy", [False, False, True, False]),
        row("hard", [False, False, False, False]),
        row("hard", [False, True, False, False]),
    ]
    m = ev.compute_metrics(rows)
    assert m["k"] == 4
    assert m["pass_at_k"] == 0.75 and m["sample_accuracy"] == pytest.approx(6 / 16, abs=1e-4)
    assert m["accuracy"] == 0.25  # the first draw
    assert m["by_difficulty"]["easy"]["pass_at_k"] == 1.0
    assert m["by_difficulty"]["hard"]["pass_at_k"] == 0.5
    assert m["by_difficulty"]["hard"]["sample_accuracy"] == 0.125


def test_samples_draw_k_completions_per_item_and_judge_them(synth_set, random_lm):
    from audio_thinker.judges import make_judge

    items = ev.load_items(synth_set)[:4]
    preds, metrics = ev.evaluate(
        random_lm,
        items,
        mode="think",
        batch_size=3,
        temperature=1.0,
        samples=3,
        progress=False,
        judge=make_judge("oracle"),
    )
    assert len(preds) == 4 and all(len(p["samples"]) == 3 for p in preds)
    assert metrics["k"] == 3 and metrics["pass_at_k"] >= metrics["sample_accuracy"]
    # the draws differ (a random model at temperature 1 does not repeat itself)
    assert any(len({d["model_output"] for d in p["samples"]}) > 1 for p in preds)
    for p in preds:
        assert p["model_output"] == p["samples"][0]["model_output"]
        for d in p["samples"]:
            assert ("consistent" in d) and (d["consistent"] is None) == (not d["think"])
    assert "sample_consistency_rate" in metrics
    # deterministic for a seed
    again, _ = ev.evaluate(
        random_lm, items, mode="think", batch_size=3, temperature=1.0, samples=3, progress=False
    )
    assert [d["model_output"] for p in again for d in p["samples"]] == [
        d["model_output"] for p in preds for d in p["samples"]
    ]
    with pytest.raises(ValueError, match="temperature"):
        ev.evaluate(random_lm, items, mode="think", samples=3, progress=False)


def test_fidelity_targets_from_a_summary():
    """The four numbers of issue #16 and the two of #23, and whether each holds, from the runs' summaries."""
    from audio_thinker.fidelity import targets

    def run(acc, hard, **extra):
        return {"accuracy": acc, "by_difficulty": {"hard": {"accuracy": hard}}, **extra}

    summary = {
        "think": run(0.78, 0.70, consistency_rate=0.88, right_inconsistent_rate=0.2, right_flawed_rate=0.4),
        "no-think": run(0.75, 0.30),
        "think@k": run(0.6, 0.5, pass_at_k=0.96),
    }
    t = targets(summary)
    assert t["think_hard"] == 0.70 and t["think_minus_no_think_hard"] == 0.40
    assert t["pass_k_minus_pass_1"] == 0.18 and t["consistency_rate"] == 0.88
    assert (t["right_inconsistent_rate"], t["right_flawed_rate"]) == (0.2, 0.4)
    assert all(t["holds"].values())
    # the gold base: every trace consistent and flawless, right or not
    summary["think"] = run(
        0.99, 1.0, consistency_rate=1.0, right_inconsistent_rate=0.0, right_flawed_rate=0.0
    )
    t = targets(summary)
    assert t["holds"] == {
        "think_hard": False,
        "think_minus_no_think_hard": True,
        "consistency_rate": False,
        "pass_k_gain": False,
        "right_inconsistent": False,
        "right_flawed": False,
    }


def test_fidelity_target_at_the_bar_holds():
    """A gain of exactly 15 points (27 items of 180: 0.8333 → 0.9833) meets 'at least 15 points'."""
    from audio_thinker.fidelity import targets

    def run(acc, hard, **extra):
        return {"accuracy": acc, "by_difficulty": {"hard": {"accuracy": hard}}, **extra}

    t = targets(
        {
            "think": run(
                0.8333, 0.7667, consistency_rate=0.9, right_inconsistent_rate=0.15, right_flawed_rate=0.25
            ),
            "no-think": run(0.7, 0.6167),
            "think@k": run(0.6, 0.5, pass_at_k=0.9833),
        }
    )
    assert t["holds"] == dict.fromkeys(t["holds"], True)


def _refuses(argv, capsys) -> str:
    """Run the evaluate CLI; it must stop with exit 2 and a one-line error (returned)."""
    with pytest.raises(SystemExit) as exit_:
        ev.main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err.startswith("error: ") and "\n" not in err, err
    return err


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model fails the test: the refusals come before any evaluation."""

    def refuse(cls, path=None):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("audio_thinker.inference.AudioLM.from_pretrained", classmethod(refuse))


@pytest.mark.parametrize(
    "clip,reason",
    [
        ("gone.wav", "file not found"),
        ("broken.wav", "not a recognised audio file"),
        ("long.wav", "audio is 31.0 s long; the limit is 30.0 s"),
    ],
    ids=["missing", "unreadable", "over-long"],
)
def test_cli_refuses_items_whose_clips_cannot_be_used(synth_set, tmp_path, capsys, no_model, clip, reason):
    """Such items were scored as wrong answers and a confident accuracy printed; now nothing is evaluated."""
    import numpy as np

    from audio_thinker.audio import write_wav

    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    write_wav(tmp_path / "long.wav", np.zeros(16000 * 31, dtype=np.float32))
    items = json.loads(synth_set.read_text())[:3]
    for it in items:
        it["audio_id"] = str(synth_set.parent / it["audio_id"])
    bad = str(tmp_path / clip)
    items[1]["audio_id"] = items[2]["audio_id"] = bad
    data = tmp_path / "items.json"
    data.write_text(json.dumps(items))
    err = _refuses(["--data", str(data), "--out", str(tmp_path / "out")], capsys)
    assert "2 of 3 items" in err and f"the first: {bad}: {reason}" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--limit", "-1"], "--limit must be at least 1, got -1"),
        (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
        (["--samples", "0"], "--samples must be at least 1, got 0"),  # was a traceback from evaluate()
    ],
)
def test_cli_refuses_a_bad_limit_or_batch_size(synth_set, tmp_path, capsys, no_model, flags, message):
    err = _refuses(["--data", str(synth_set), "--out", str(tmp_path / "out"), *flags], capsys)
    assert message in err


def test_cli_refuses_an_out_that_is_a_file_before_evaluating(synth_set, tmp_path, capsys, no_model):
    taken = tmp_path / "results.json"
    taken.write_text("an earlier evaluation")
    err = _refuses(["--data", str(synth_set), "--out", str(taken)], capsys)
    assert str(taken) in err and "is a file" in err
    assert taken.read_text() == "an earlier evaluation"


def test_metrics_count_right_traces_that_are_inconsistent_or_flawed():
    """Issue #23's numbers: among judged think traces with a right answer, the share the judge finds
    inconsistent and the share below quality 1.0 (wrong answers and no-think rows do not count)."""

    def row(correct, consistent=None, quality=None, mode="think"):
        r = {"correct": correct, "output_mode": mode, "completion_tokens": 10, "difficulty": "hard"}
        r |= {"sub-category": "pitch_pattern", "task": "sound", "model_prediction": "x"}
        if consistent is not None:
            r |= {"consistent": consistent, "think_quality": quality}
        return r

    rows = [
        row(True, 1, 1.0),
        row(True, 0, 0.6),
        row(True, 1, 0.8),
        row(True, 1, 1.0),
        row(False, 0, 0.5),  # wrong: not among the right traces
        row(True, mode="no_think"),  # not judged
    ]
    m = ev.compute_metrics(rows)
    assert (m["right_inconsistent_rate"], m["right_flawed_rate"], m["n_right_judged"]) == (0.25, 0.5, 4)
    assert m["consistency_rate"] == 0.6 and m["n_judged"] == 5


def test_ablation_reuses_a_run_saved_before_a_config_key_existed(tmp_path):
    """A run's saved config.json without a key added later (here no_think_consistency and threads) is the
    same run when the wanted value is that key's default; any key that differs is refused, naming it."""
    import json
    from dataclasses import asdict

    from audio_thinker.ablate import AblationError, ensure_run
    from audio_thinker.grpo import GRPOConfig

    cfg = GRPOConfig(out=str(tmp_path / "run"), reward_set="atar", max_steps=3)
    saved = {k: v for k, v in json.loads(json.dumps(asdict(cfg))).items()}
    del saved["no_think_consistency"], saved["threads"]
    (tmp_path / "run" / "final").mkdir(parents=True)
    (tmp_path / "run" / "config.json").write_text(json.dumps(saved))
    assert ensure_run(cfg) == str(tmp_path / "run" / "final")  # reused, nothing trained
    assert ensure_run(GRPOConfig(**{**asdict(cfg), "threads": 2})) == str(tmp_path / "run" / "final")
    with pytest.raises(AblationError, match="no_think_consistency"):
        ensure_run(GRPOConfig(**{**asdict(cfg), "no_think_consistency": "think-mean"}))
