"""The learned judge: bootstrap into a real SQLite store, export formats (datasets, TRL), training, the judge."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest

from audio_thinker import reward_model as rm
from audio_thinker import synth
from audio_thinker.judges import JudgeRequest, LearnedJudge, Verdict, learned, make_judge, oracle_grammar
from audio_thinker.rewards import sentences
from audio_thinker.store import Store

JUNK_WORDS = ["zz", "qq", "beep", "maybe", "blorp", "0.9", "s", "so", "wub", "??"]


def _url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core box a second one mostly spins (and slows everyone down)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def store(tmp_path: Path):
    with Store(_url(tmp_path / "ratings.db")) as s:
        yield s


def _fill(store: Store, n_items: int = 16, seed: int = 5) -> None:
    """Items with a gold trace (rated 1.0, consistent) and a junk trace (rated 0.0-0.2, inconsistent)."""
    rng = random.Random(seed)
    for i, task in enumerate(synth.task_schedule(n_items)):
        item, _ = synth.generate_item(task, seed, i, "t")
        row = store.add_item(
            item["question"], item["choices"], answer=item["answer"], source="synth-aqa",
            external_id=item["id"], meta={"events": item["events"], "sub-category": task},
        )  # fmt: skip
        gold = store.add_generation(
            row.id, "gold", "think", f"<think>{item['reasoning']}</think><answer>{item['answer']}</answer>"
        )
        store.rate(gold.id, "oracle", consistent=True, quality=1.0, source="oracle")
        junk_text = " ".join(rng.choice(JUNK_WORDS) for _ in range(rng.randint(4, 12)))
        junk = store.add_generation(row.id, "junk", "think", f"<think>{junk_text}</think><answer>x</answer>")
        store.rate(junk.id, "oracle", consistent=False, quality=rng.choice([0.0, 0.1, 0.2]), source="oracle")


# ------------------------------------------------------------------------------------------ pieces


def test_the_learned_and_the_oracle_judge_count_the_same_sentences() -> None:
    """One sentence splitter (rewards.sentences): a T: line per sentence the oracle parses."""
    think = "Beep 1 at 0.2 s: high; Beep 2 at 0.4 s: low\nThat is 2 beeps. so the answer is 0."
    said = [x[3:] for x in learned.render_completion(think, "0", "R.").split("\n") if x.startswith("T: ")]
    assert (
        said
        == sentences(think)
        == [
            "Beep 1 at 0.2 s: high;",
            "Beep 2 at 0.4 s: low",
            "That is 2 beeps.",
            "so the answer is 0.",
        ]
    )
    assert len(oracle_grammar.trace_sentences(think)) == len(said)


def test_render_and_reference() -> None:
    item, _ = synth.generate_item("count", 0, 1, "x")
    gold = item["reasoning"]
    assert gold.endswith(f"So the answer is {item['answer']}.")
    said = gold.replace("Beep 1 at", "Beep 1 oops at", 1)  # sentence 1 differs, the rest match
    req = JudgeRequest(item["question"], item["choices"], said, item["answer"], item)
    prompt, completion = learned.render(req)
    assert prompt == f"Question: {item['question']}\nChoices: {' | '.join(item['choices'])}\n"
    lines = completion.split("\n")
    ref = [s for s in re.split(r"(?<=\.) (?=[A-Z0-9])", gold.rsplit(" So the answer", 1)[0])]
    assert lines[-1] == f"Answer: {item['answer']}"
    assert lines[-3:-1] == [
        f"T: So the answer is {item['answer']}.",
        "R: -",
    ]  # the reference has no conclusion
    assert [x[3:] for x in lines[1:-3:2]] == ref  # R: lines are the reference, sentence by sentence
    assert lines[0].startswith("T: ") and "oops" in lines[0] and "oops" not in lines[1]
    assert [x[3:] for x in lines[2:-3:2]] == ref[1:]  # beside each other, the same sentence
    short = learned.render_completion(
        "Beep 1 at 0.1 s: high.", "2", "Beep 1 at 0.1 s: high. Beep 2 at 0.5 s: low."
    )
    assert short.split("\n") == [
        "T: Beep 1 at 0.1 s: high.",
        "R: Beep 1 at 0.1 s: high.",
        "T: -",
        "R: Beep 2 at 0.5 s: low.",
        "Answer: 2",
    ]
    events_only = {"events": synth.generate_item("pitch_level", 0, 1, "x")[0]["events"]}
    # no gold trace: the events
    assert learned.reference_text(events_only) == "Beep 1 at 0.1 s: high, long, loud."
    assert learned.render(req, reference=False)[1] == f"Reasoning: {said}\nAnswer: {item['answer']}"
    assert learned.reference_text({"question": "uploaded clip"}) is None  # no ground truth: text only
    assert learned.reference_text({"events": []}) == "I hear no sound event, only background hiss."
    assert "<|endoftext|>" not in learned.render_completion("a <|endoftext|> b", "c")


def test_roc_auc_and_isotonic() -> None:
    rng = np.random.default_rng(0)
    y, s = rng.integers(0, 2, 60), np.round(rng.normal(size=60), 1)  # rounded: ties
    brute = np.mean([(a > b) + 0.5 * (a == b) for a in s[y == 1] for b in s[y == 0]])
    assert rm.roc_auc(y, s) == pytest.approx(brute)
    assert np.isnan(rm.roc_auc([1, 1], [0.1, 0.2]))
    cal = rm.fit_isotonic([0, 1, 2, 3, 4], [0.1, 0.5, 0.3, 0.9, 0.8])
    assert np.all(np.diff(cal["y"]) >= 0)
    assert list(learned.apply_calibration(cal, [-10.0, 10.0])) == pytest.approx([0.1, 0.85])


def test_corrupt_trace_is_flawed_and_oracle_agrees() -> None:
    oracle = make_judge("oracle")
    rng = random.Random(0)
    kinds = set()
    for i, task in enumerate(synth.task_schedule(27)):
        item, _ = synth.generate_item(task, 3, i, "x")
        think, answer, kind = rm.corrupt_trace(item, rng)
        kinds.add(kind)
        (v,) = oracle.score_batch([JudgeRequest(item["question"], item["choices"], think, answer, item)])
        assert (think, answer) != (item["reasoning"], item["answer"])
        assert v.consistent == 0 or v.quality < 1.0, (kind, think, answer, v)
    assert {"answer", "fact", "onset"} <= kinds


# ------------------------------------------------------------------------------------------ bootstrap


def test_bootstrap_fills_a_fresh_store_and_resumes(store: Store, shipped_lm) -> None:
    added = rm.bootstrap(
        store, shipped_lm, n=3, temperatures=(0.7, 1.3), corrupt_share=0.5, max_new_tokens=12, progress=False
    )
    counts = store.counts()
    assert counts["clips"] == counts["items"] == added["items"] == 3
    assert added["corrupted"] == 6  # share 0.5 of 12 traces: two per item
    assert counts["generations"] == added["generations"] == 6 - added["empty"] + 6
    rated = list(store.ratings())
    assert len(rated) == added["ratings"] >= 6
    assert counts["ratings_by_source"] == {"oracle": {"submitted": added["ratings"]}}
    assert all(r.annotator == "oracle" and r.run in (rm.BOOTSTRAP_RUN, rm.CORRUPTED_RUN) for r in rated)
    assert all(r.meta and r.meta["events"] is not None and r.mode == "think" for r in rated)
    assert store.get_item(rated[0].item_id).clip is not None
    again = rm.bootstrap(store, shipped_lm, n=3, temperatures=(0.7,), max_new_tokens=4, progress=False)
    assert again["skipped_items"] == 3 and again["generations"] == 0
    assert store.counts()["generations"] == counts["generations"]


# ------------------------------------------------------------------------------------------ export


def test_export_formats_load_back_and_train_with_trl(store: Store, tmp_path: Path) -> None:
    from datasets import load_dataset, load_from_disk
    from trl import RewardConfig, RewardTrainer

    _fill(store, n_items=6)
    n_trl = rm.export(store, tmp_path / "pairs.trl.jsonl", "trl")
    n_jsonl = rm.export(store, tmp_path / "pairs.jsonl", "jsonl")
    n_hf = rm.export(store, tmp_path / "pairs_hf", "hf")
    assert n_trl == n_jsonl == n_hf == 6  # one pair per item, oracle only: no replication
    trl_ds = load_dataset("json", data_files=str(tmp_path / "pairs.trl.jsonl"), split="train")
    assert trl_ds.column_names == ["prompt", "chosen", "rejected", "margin"]
    plain = load_dataset("json", data_files=str(tmp_path / "pairs.jsonl"), split="train")
    saved = load_from_disk(str(tmp_path / "pairs_hf"))
    for ds in (plain, saved):
        assert {"prompt", "chosen", "rejected", "margin", "weight", "origin", "item_id"} <= set(
            ds.column_names
        )
        assert len(ds) == 6 and all(m >= 0.8 for m in ds["margin"])
    assert (
        trl_ds[0]["chosen"].startswith("T: ") and "\nR: " in trl_ds[0]["chosen"]
    )  # aligned with the reference
    assert trl_ds[0]["prompt"].startswith("Question: ")
    labels = rm.export(store, tmp_path / "labels.jsonl", "jsonl", what="labels")
    rows = [json.loads(line) for line in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert labels == 12 and {r["consistent"] for r in rows} == {0, 1}

    tok = learned.load_tokenizer(rm.default_tokenizer_path())
    model = rm.build_model(tok)
    args = RewardConfig(
        output_dir=str(tmp_path / "trl"), max_steps=1, per_device_train_batch_size=2, report_to="none",
        save_strategy="no", bf16=False, use_cpu=True, activation_checkpointing=False, disable_tqdm=True,
    )  # fmt: skip
    trainer = RewardTrainer(model=model, args=args, train_dataset=trl_ds, processing_class=tok)
    result = trainer.train()
    assert result.global_step == 1 and np.isfinite(result.training_loss)


def test_human_ratings_outweigh_oracle(store: Store, tmp_path: Path) -> None:
    item, _ = synth.generate_item("count", 0, 0, "x")
    row = store.add_item(
        item["question"], item["choices"], answer=item["answer"], meta={"events": item["events"]}
    )
    g1 = store.add_generation(
        row.id, "m", "think", "<think>Beep 1 at 0.1 s. That is 1 beep.</think><answer>1</answer>"
    )
    g2 = store.add_generation(
        row.id, "m", "think", "<think>Beep 1 at 0.1 s. That is 2 beeps.</think><answer>1</answer>"
    )
    store.rate(g1.id, "oracle", consistent=True, quality=0.9, source="oracle")
    store.rate(g2.id, "oracle", consistent=False, quality=0.3, source="oracle")
    (pair,) = rm.build_pairs(rm.collect_traces(store))
    assert (pair.chosen_id, pair.weight, pair.margin) == (g1.id, 1, pytest.approx(0.6))

    store.rate(g1.id, "alice", consistent=False, quality=0.2)  # a person disagrees with the oracle
    store.rate(g2.id, "alice", consistent=True, quality=0.8)
    traces = {t.generation_id: t for t in rm.collect_traces(store)}
    assert traces[g1.id].quality == pytest.approx((3 * 0.2 + 0.9) / 4) and traces[g1.id].consistent == 0
    assert traces[g2.id].quality == pytest.approx((3 * 0.8 + 0.3) / 4) and traces[g2.id].consistent == 1
    (pair,) = rm.build_pairs(list(traces.values()))
    assert (pair.chosen_id, pair.rejected_id, pair.weight) == (g2.id, g1.id, rm.HUMAN_WEIGHT)
    assert len(rm.replicate([pair])) == rm.HUMAN_WEIGHT
    (oracle_only,) = rm.build_pairs(rm.collect_traces(store, ["oracle"]))
    assert oracle_only.chosen_id == g1.id and oracle_only.weight == 1

    store.vote(g1.id, g2.id, "A", "bob")  # votes add human pairs; ties are skipped
    store.vote(g1.id, g2.id, "tie", "carol")
    assert rm.export(store, tmp_path / "t.jsonl", "trl") == 2 * rm.HUMAN_WEIGHT
    rows = [json.loads(x) for x in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert sum("\nT: That is 1 beep.\n" in r["chosen"] for r in rows) == rm.HUMAN_WEIGHT


# ------------------------------------------------------------------------------------------ train + judge


def test_train_writes_metrics_and_the_judge_loads(store: Store, tmp_path: Path) -> None:
    _fill(store, n_items=16)
    out = tmp_path / "model"
    cfg = rm.TrainConfig(
        out=str(out), epochs=6, consistency_epochs=6, batch_size=8, eval_frac=0.25, progress=False
    )
    metrics = rm.train(store, cfg)
    for key in ("pairwise_accuracy", "consistency_auc", "counts", "quality_mae", "seconds", "config"):
        assert key in metrics
    assert json.loads((out / "metrics.json").read_text())["counts"]["eval_items"] == 4
    for name in ("calibration.png", "calibration.json", "reward_model.json", "quality/config.json",
                 "consistency/config.json", "quality/tokenizer.json"):  # fmt: skip
        assert (out / name).is_file(), name
    assert metrics["counts"]["eval_pairs"] == 4 and metrics["pairwise_accuracy"] >= 0.75
    assert metrics["consistency_auc"] >= 0.75

    judge = make_judge("learned", path=str(out))
    assert isinstance(judge, LearnedJudge) and judge.name == "learned"
    # the loaded judge reads exactly what training read: its scores reproduce the training-time metric
    traces = rm.collect_traces(store)
    text = traces[0].prompt + traces[0].completion
    assert (
        judge.tokenizer(text)["input_ids"]
        == learned.load_tokenizer(rm.default_tokenizer_path())(text)["input_ids"]
    )
    requests = []
    for t in traces:
        rec, item = store.get_generation(t.generation_id), store.get_item(t.item_id)
        requests.append(
            JudgeRequest(item.question, item.choices, rec.think or "", rec.answer or "", item.meta)
        )
    reward, prob = judge.raw_scores(requests)
    scores = dict(zip([t.generation_id for t in traces], reward, strict=True))
    held_out = rm.split_items([t.item_id for t in traces], 0.25, 0)
    train_pairs = [p for p in rm.build_pairs(traces) if p.item_id not in held_out]
    assert np.mean([scores[p.chosen_id] > scores[p.rejected_id] for p in train_pairs]) == pytest.approx(
        metrics["train_pairwise_accuracy"], abs=1e-4
    )
    # the consistency head reads the reasoning without the reference, in training and in the judge alike
    assert judge.reference and not judge.consistency_reference
    train_idx = [i for i, t in enumerate(traces) if t.item_id not in held_out]
    assert rm.roc_auc([traces[i].consistent for i in train_idx], prob[train_idx]) == pytest.approx(
        metrics["train_consistency_auc"], abs=1e-4
    )
    reqs = []
    for i, task in enumerate(synth.task_schedule(6)):
        item, _ = synth.generate_item(task, 99, i, "t")
        reqs.append(JudgeRequest(item["question"], item["choices"], item["reasoning"], item["answer"], item))
        reqs.append(JudgeRequest(item["question"], item["choices"], "qq zz wub blorp ?? maybe", "x", item))
    reqs.insert(3, JudgeRequest("q?", ["a", "b"], "", "a"))
    verdicts = judge.score_batch(reqs)
    assert len(verdicts) == len(reqs) and all(isinstance(v, Verdict) for v in verdicts)
    assert verdicts[3] == Verdict(0, 0.0, detail="empty think")
    assert all(round(v.quality * 10) == pytest.approx(v.quality * 10) for v in verdicts)
    one_by_one = [judge.score_batch([r])[0] for r in reqs]
    assert [(v.consistent, v.quality) for v in one_by_one] == [(v.consistent, v.quality) for v in verdicts]
    gold = [v for r, v in zip(reqs, verdicts, strict=True) if r.answer != "x" and r.think]
    junk = [v for r, v in zip(reqs, verdicts, strict=True) if r.answer == "x"]
    assert np.mean([v.quality for v in gold]) > np.mean([v.quality for v in junk])
    with pytest.raises(ValueError, match="not a trained reward model"):
        LearnedJudge(path=str(tmp_path))


# ------------------------------------------------------------------------------------------ CLI


def test_cli_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a database that is not there is never created by train / export: a mistyped path says so
    for cmd in (
        ["train", "--out", str(tmp_path / "m")],
        ["export", "--out", str(tmp_path / "x"), "--format", "trl"],
    ):
        assert rm.main([*cmd, "--db", str(tmp_path / "typo.db")]) == 2
        err = capsys.readouterr().err.strip()
        assert (
            err
            == f"error: no database at {tmp_path / 'typo.db'} ({cmd[0]} reads an existing one; bootstrap makes one)"
        )
        assert rm.main([*cmd, "--db", "sqlit:///x.db"]) == 2  # a URL SQLAlchemy cannot use: one line
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "cannot use database URL 'sqlit:///x.db'" in err
    assert not (tmp_path / "typo.db").exists()
    url = _url(tmp_path / "empty.db")
    Store(url).close()
    assert rm.main(["train", "--db", url, "--out", str(tmp_path / "m"), "--quiet"]) == 2
    assert "no submitted ratings" in capsys.readouterr().err
    assert rm.main(["export", "--db", url, "--out", str(tmp_path / "x.jsonl"), "--format", "trl"]) == 2
    assert "nothing to export" in capsys.readouterr().err
    assert rm.main(["train", "--db", url, "--out", str(tmp_path / "m"), "--sources", "robots"]) == 2
    assert "unknown rating source" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        rm.main(["export", "--db", url, "--out", str(tmp_path / "x"), "--format", "xml"])
    assert exc.value.code == 2 and "invalid choice: 'xml'" in capsys.readouterr().err
    with Store(url) as s:
        _fill(s, n_items=2)
    assert (
        rm.main(["export", "--db", url, "--out", str(tmp_path / "l"), "--format", "trl", "--what", "labels"])
        == 2
    )
    assert "export labels as jsonl or hf" in capsys.readouterr().err
    assert rm.main(["export", "--db", url, "--out", str(tmp_path / "p.jsonl"), "--format", "jsonl"]) == 0
    assert "wrote 2 rows" in capsys.readouterr().out


def test_export_refuses_a_file_name_for_a_folder_format_and_a_folder_for_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--format hf`` writes a dataset folder: a file-like --out is refused, not made into a folder."""
    url = _url(tmp_path / "r.db")
    with Store(url) as s:
        _fill(s, n_items=2)
    assert rm.main(["export", "--db", url, "--out", str(tmp_path / "pairs.jsonl"), "--format", "hf"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "pairs.jsonl" in err and "folder" in err and "--format jsonl" in err, err
    assert not (tmp_path / "pairs.jsonl").exists()
    (tmp_path / "a_folder").mkdir()
    assert rm.main(["export", "--db", url, "--out", str(tmp_path / "a_folder"), "--format", "jsonl"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "a_folder is a folder" in err, err
    assert rm.main(["export", "--db", url, "--out", str(tmp_path / "pairs_hf"), "--format", "hf"]) == 0
    assert (tmp_path / "pairs_hf").is_dir()


def test_cli_train_consistency_reference_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = _url(tmp_path / "r.db")
    with Store(url) as s:
        _fill(s, n_items=8)
    args = [
        "train",
        "--db",
        url,
        "--epochs",
        "1",
        "--consistency-epochs",
        "1",
        "--batch-size",
        "8",
        "--quiet",
    ]
    assert rm.main([*args, "--out", str(tmp_path / "a"), "--consistency-reference"]) == 0
    assert rm.main([*args, "--out", str(tmp_path / "b"), "--consistency-reference", "--no-reference"]) == 0
    capsys.readouterr()
    a = json.loads((tmp_path / "a" / learned.META_FILE).read_text())
    b = json.loads((tmp_path / "b" / learned.META_FILE).read_text())
    assert (a["reference"], a["consistency_reference"]) == (True, True)
    assert (b["reference"], b["consistency_reference"]) == (False, False)  # no reference for either head
    assert LearnedJudge(str(tmp_path / "a")).consistency_reference
