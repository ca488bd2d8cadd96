"""GRPO: rewards on hand-built batches, advantages and loss by hand, the shared-prefix log-probs, encoder
calls per step, and exact resume."""

from __future__ import annotations

import json
import math

import pytest
import torch

from audio_thinker import grpo, policy, synth
from audio_thinker.grpo import GRPOConfig, group_advantages, grpo_loss, score_completions
from audio_thinker.judges import make_judge
from audio_thinker.policy import completion_logprobs


def _item(task="high_low_difference", i=0):
    item, _ = synth.generate_item(task, 11, i)
    return item


# -- rewards -------------------------------------------------------------------------------------------


def test_score_completions_full_reward_by_hand():
    it = _item()
    gold, ans = it["reasoning"], it["answer"]
    wrong = next(c for c in it["choices"] if c != ans)
    completions = [
        f"<think>{gold}</think><answer>{ans}</answer>",  # think, correct, consistent, perfect trace
        f"<answer>{ans}</answer>",  # no-think, correct
        f"<answer>{wrong}</answer>",  # no-think, wrong
        f"<think>{gold}</think><answer>{ans}</answer> trailing",  # invalid, shows think -> think & wrong
    ]
    cfg = GRPOConfig(reward_set="full", max_steps=10)
    s = score_completions(completions, [it] * 4, cfg=cfg, step=5, judge=make_judge("oracle"))
    lam, p = 0.5, 1 - 5 / 10  # two of four completions show think
    g_t, g_n = math.exp(-lam * p), math.exp(-(1 - lam) * p)
    assert s["think"] == [True, False, False, True]
    assert s["correct"] == [True, True, False, False]
    assert s["format"] == [1.0, 1.0, 1.0, 0.0]
    assert s["accuracy_reward"] == pytest.approx([g_t, 2 * g_n, -g_n - 2 * (1 - g_n), -(1 - g_t)])
    assert s["consistency"] == [1.0, 1.0, 0.0, 0.0]  # no-think -> 1, gated to 0 when wrong
    # R_t: think completions get the judge's quality; no-think ones the batch mean of think R_t
    assert s["quality"][0] == 1.0 and s["quality"][1] == s["quality"][2] == pytest.approx(
        (1.0 + s["quality"][3]) / 2
    )
    expected = [
        a * (1 + 0.5 * c) + 0.5 * f + t
        for a, c, f, t in zip(s["accuracy_reward"], s["consistency"], s["format"], s["quality"], strict=True)
    ]
    assert s["total"] == pytest.approx(expected)


def test_no_think_consistency_option_reaches_the_reward():
    """--no-think-consistency think-mean: a right direct answer's R_c is the batch mean of the think
    completions' judged R_c, in the logged term and in Eq. 7's total; the paper's rule gives it 1."""
    it = _item()
    gold, ans = it["reasoning"], it["answer"]
    wrong = next(c for c in it["choices"] if c != ans)
    contradicted = gold.replace(f"So the answer is {ans}.", f"So the answer is {wrong}.")
    completions = [
        f"<think>{gold}</think><answer>{ans}</answer>",  # judged consistent
        f"<think>{contradicted}</think><answer>{ans}</answer>",  # judged inconsistent, right
        f"<answer>{ans}</answer>",  # no-think, right
    ]
    by_rule = {}
    for rule in ("one", "think-mean"):
        cfg = GRPOConfig(reward_set="full", max_steps=10, no_think_consistency=rule)
        cfg.validate()
        by_rule[rule] = score_completions(completions, [it] * 3, cfg=cfg, step=0, judge=make_judge("oracle"))
    assert by_rule["one"]["consistency"] == [1.0, 0.0, 1.0]
    assert by_rule["think-mean"]["consistency"] == [1.0, 0.0, 0.5]
    a = by_rule["one"]["accuracy_reward"][2]
    assert by_rule["one"]["total"][2] - by_rule["think-mean"]["total"][2] == pytest.approx(0.5 * a * 0.5)
    with pytest.raises(ValueError, match="no_think_consistency"):
        GRPOConfig(no_think_consistency="zero").validate()


def test_grpo_reward_set_is_accuracy_plus_format():
    it = _item("count")
    cfg = GRPOConfig(reward_set="grpo")
    s = score_completions(
        [f"<think>x</think><answer>{it['answer']}</answer>", "<answer></answer>"],
        [it] * 2,
        cfg=cfg,
        step=0,
        judge=make_judge("oracle"),
    )
    assert s["total"] == [2.0, 0.0]
    # an explicit --w-format is used, not silently replaced by the recipe's 1
    s = score_completions(
        [f"<think>x</think><answer>{it['answer']}</answer>"],
        [it],
        cfg=GRPOConfig(reward_set="grpo", w_format=0.25),
        step=0,
    )
    assert s["total"] == [1.25]


def test_atar_reward_set_ignores_judge_terms():
    it = _item("count")
    cfg = GRPOConfig(reward_set="atar", max_steps=4)
    s = score_completions(
        [f"<think>nonsense</think><answer>{it['answer']}</answer>"] * 2,
        [it] * 2,
        cfg=cfg,
        step=4,
        judge=make_judge("oracle"),
    )
    assert s["total"] == pytest.approx([1.0 + 0.5, 1.0 + 0.5])  # gamma = 1 at step == T


# -- advantages and loss -------------------------------------------------------------------------------


def test_group_advantages_by_hand():
    r = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 5.0])
    adv = group_advantages(r, 4, "group", eps=0.0)
    std = torch.tensor([1.0, 2.0, 3.0, 4.0]).std()
    assert torch.allclose(adv[:4], (torch.tensor([1.0, 2, 3, 4]) - 2.5) / std)
    assert torch.equal(group_advantages(r, 4, "group")[4:], torch.zeros(4))  # zero-std group -> 0
    assert torch.allclose(group_advantages(r, 4, "none"), torch.tensor([-1.5, -0.5, 0.5, 1.5, 0, 0, 0, 0]))
    assert torch.allclose(
        group_advantages(r, 4, "batch", eps=0.0), torch.tensor([-1.5, -0.5, 0.5, 1.5, 0, 0, 0, 0]) / r.std()
    )
    with pytest.raises(ValueError):
        group_advantages(r, 4, "nope")


def test_grpo_loss_by_hand():
    logp = torch.log(torch.tensor([[0.5, 0.5, 0.5], [0.2, 0.2, 0.2]]))
    old = torch.log(torch.tensor([[0.25, 0.5, 0.5], [0.2, 0.4, 0.2]]))  # ratios [2,1,1] and [1,0.5,1]
    ref = torch.log(torch.tensor([[0.5, 0.25, 0.5], [0.2, 0.2, 0.2]]))
    adv = torch.tensor([1.0, -1.0])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    beta, eps = 0.1, 0.2
    loss, stats = grpo_loss(
        logp, old, ref, adv, mask, beta=beta, epsilon=eps, epsilon_high=None, loss_type="grpo", denom=2
    )
    # seq 1: ratio 2 clipped to 1.2 (A>0): -1.2; ratio 1: -1. KL token 2: r=0.5 -> 0.5 - ln 0.5 - 1
    kl = 0.5 - math.log(0.5) - 1
    seq1 = ((-1.2) + (-1.0 + beta * kl)) / 2
    # seq 2 (A=-1): -min(r*-1, clip(r)*-1) = max(r, clip(r)): [1, 0.8, 1]
    seq2 = (1 + 0.8 + 1) / 3
    assert loss.item() == pytest.approx((seq1 + seq2) / 2, rel=1e-5)
    assert stats["clip_ratio"].item() == 2  # ratio 2 with A>0, ratio 0.5 with A<0
    dapo, _ = grpo_loss(
        logp, old, ref, adv, mask, beta=beta, epsilon=eps, epsilon_high=None, loss_type="dapo", denom=5
    )
    assert dapo.item() == pytest.approx(((-1.2) + (-1.0 + beta * kl) + 1 + 0.8 + 1) / 5, rel=1e-5)
    high, _ = grpo_loss(
        logp, old, None, adv, mask, beta=0.0, epsilon=eps, epsilon_high=0.28, loss_type="grpo", denom=2
    )
    assert high.item() == pytest.approx(((-1.28 - 1.0) / 2 + seq2) / 2, rel=1e-5)


def test_micro_batches_add_up_to_the_full_batch_loss():
    torch.manual_seed(0)
    logp, old, ref = (torch.randn(8, 5) * 0.1 - 1 for _ in range(3))
    adv, mask = torch.randn(8), (torch.rand(8, 5) > 0.3).long()
    for lt in grpo.LOSS_TYPES:
        denom = grpo.loss_denominator(lt, 8, int(mask.sum()), 5)
        full, _ = grpo_loss(
            logp, old, ref, adv, mask, beta=0.04, epsilon=0.2, epsilon_high=None, loss_type=lt, denom=denom
        )
        parts = sum(
            grpo_loss(
                logp[s],
                old[s],
                ref[s],
                adv[s],
                mask[s],
                beta=0.04,
                epsilon=0.2,
                epsilon_high=None,
                loss_type=lt,
                denom=denom,
            )[0]
            for s in (slice(0, 3), slice(3, 8))
        )
        assert parts.item() == pytest.approx(full.item(), rel=1e-5), lt


# -- log-probs -----------------------------------------------------------------------------------------


def test_shared_prefix_logprobs_equal_the_full_forward(random_lm):
    items = [synth.generate_item(t, 2, 0) for t in ("count", "pitch_pattern")]
    batch = random_lm.prepare(
        [a for _, a in items],
        [random_lm.prompt_text(it["question"], it["choices"], "adaptive") for it, _ in items],
    )
    comp = torch.randint(5, 300, (6, 7))
    args = (
        random_lm.model,
        batch.input_ids,
        batch.attention_mask,
        batch.input_features,
        batch.feature_attention_mask,
        comp,
        3,
    )
    with torch.no_grad():
        a, ea = completion_logprobs(*args, shared_prefix=True)
        b, eb = completion_logprobs(*args, shared_prefix=False)
        # and against the model's own forward over prompt + completion, row 4 (prompt 1, sample 1)
        ids = torch.cat([batch.input_ids[1], comp[4]])[None]
        m = torch.cat([batch.attention_mask[1], torch.ones(7, dtype=torch.long)])[None]
        logits = random_lm.model(
            input_ids=ids,
            attention_mask=m,
            input_features=batch.input_features[1:2],
            feature_attention_mask=batch.feature_attention_mask[1:2],
            position_ids=(m.cumsum(-1) - 1).clamp(min=0),
        ).logits
        ref = (
            torch.log_softmax(logits[0, batch.input_ids.shape[1] - 1 : -1], -1)
            .gather(-1, comp[4][:, None])
            .squeeze(-1)
        )
    assert torch.allclose(a, b, atol=1e-4) and torch.allclose(ea, eb, atol=1e-4)
    assert torch.allclose(a[4], ref, atol=1e-4)


def test_shared_prefix_gradients_equal_the_models_own_forward_per_completion(random_lm):
    """The loss through the shared prompt KV cache has exactly the gradient, for every parameter, of the
    same loss computed with the HF model's own forward, one completion at a time, each with its own
    unpadded prompt. Two prompts of different lengths (left padding) x G = 2, completions that end early
    (eos, then pad). A cache detached from the graph would leave the prompt side (audio tower, projector,
    the prompt's keys and values) without gradient: log-prob checks cannot see that; this test can."""
    model = random_lm.model
    eos, pad = random_lm.eos_ids[0], random_lm.pad_id
    items = [synth.generate_item(t, 4, 0) for t in ("count", "odd_one_out")]
    texts = [
        random_lm.prompt_text(it["question"], it["choices"], m)
        for (it, _), m in zip(items, ("think", "no-think"), strict=True)
    ]
    batch = random_lm.prepare([a for _, a in items], texts)
    assert (batch.attention_mask == 0).any()  # the shorter prompt is left-padded
    G, T = 2, 7
    gen = torch.Generator().manual_seed(0)
    comp = torch.randint(5, 300, (4, T), generator=gen)
    comp[1, 3], comp[1, 4:] = eos, pad  # early eos: tokens after it are pad, outside the loss
    comp[2, 5], comp[2, 6:] = eos, pad
    mask = grpo.completion_mask(comp, [eos])
    weights = torch.randn(4, T, generator=gen)

    model.zero_grad()
    logp, _ = completion_logprobs(
        model,
        batch.input_ids,
        batch.attention_mask,
        batch.input_features,
        batch.feature_attention_mask,
        comp,
        G,
    )
    (logp * weights * mask).sum().backward()
    shared = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    model.zero_grad()
    for r in range(4):
        i = r // G
        keep = batch.attention_mask[i].bool()
        n = int(mask[r].sum())
        ids = torch.cat([batch.input_ids[i][keep], comp[r, :n]])[None]
        logits = model(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            input_features=batch.input_features[i : i + 1],
            feature_attention_mask=batch.feature_attention_mask[i : i + 1],
        ).logits[0, int(keep.sum()) - 1 : -1]
        ref = torch.log_softmax(logits.float(), -1).gather(-1, comp[r, :n, None]).squeeze(-1)
        (ref * weights[r, :n]).sum().backward()
    own = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(shared) == set(own) == trained  # every parameter gets a gradient, the audio tower's too
    for name, g in own.items():
        assert g.abs().sum() > 0, name
        assert torch.allclose(shared[name], g, rtol=1e-4, atol=1e-6), name


# -- the loop ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def random_model_dir(random_lm, tmp_path_factory):
    d = tmp_path_factory.mktemp("random-model")
    random_lm.model.save_pretrained(d)
    random_lm.processor.save_pretrained(d)
    return str(d)


def _cfg(tmp, model, **kw):
    base = dict(
        out=str(tmp),
        model=model,
        max_steps=3,
        prompts_per_step=2,
        num_generations=3,
        micro_batch_prompts=1,
        max_new_tokens=6,
        learning_rate=1e-3,
        warmup_steps=0,
        save_every=2,
        log_with="",
        eval_per_task=0,
    )
    return GRPOConfig(**{**base, **kw})


@pytest.mark.slow
def test_audio_is_encoded_once_per_prompt_in_every_pass(random_model_dir, tmp_path, monkeypatch):
    calls = []
    real = policy.encode_audio

    def counting(model, feats, mask):
        calls.append(feats.shape[0])
        return real(model, feats, mask)

    monkeypatch.setattr(policy, "encode_audio", counting)
    grpo.train(_cfg(tmp_path, random_model_dir, max_steps=1, num_iterations=2, save_every=0))
    # rollout: 2 clips at once; reference and old log-probs (mu=2): 1 clip per micro-batch each;
    # policy: 1 clip per micro-batch per iteration. Never once per completion (G=3).
    assert calls[0] == 2 and all(c == 1 for c in calls[1:])
    assert sum(calls) == 2 * (1 + 1 + 1 + 2)


@pytest.mark.slow
@pytest.mark.parametrize("lora", [False, True], ids=["full-fine-tune", "lora"])
def test_resume_after_a_crash_equals_an_uninterrupted_run(random_model_dir, tmp_path, monkeypatch, lora):
    """A run that dies after logging step 3 (its last checkpoint is step 2) and is resumed ends exactly
    where an uninterrupted run ends: final weights, optimizer state, history and completions."""
    from safetensors.torch import load_file

    kw = dict(max_steps=4, save_every=2, lora=lora, lora_dropout=0.0)
    grpo.train(_cfg(tmp_path / "full", random_model_dir, **kw))

    class Crash(Exception):
        pass

    real = grpo._write_completions

    def write_then_crash(f, step, *args):
        real(f, step, *args)
        if step == 3:
            raise Crash  # step 3 is logged, its checkpoint (step 4) never written

    monkeypatch.setattr(grpo, "_write_completions", write_then_crash)
    with pytest.raises(Crash):
        grpo.train(_cfg(tmp_path / "cut", random_model_dir, **kw))
    monkeypatch.setattr(grpo, "_write_completions", real)
    cut = tmp_path / "cut"
    assert [json.loads(x)["step"] for x in (cut / "history.jsonl").read_text().splitlines()] == [1, 2, 3]
    resumed = grpo.train(_cfg(cut, random_model_dir, resume="latest", **kw))
    assert [h["step"] for h in resumed["history"]] == [3, 4]

    def lines(run, name):
        return [json.loads(x) for x in (tmp_path / run / name).read_text().splitlines()]

    def untimed(run):  # every logged number but the wall-clock timings
        return [
            {k: v for k, v in h.items() if k != "step_time" and not k.startswith("time/")}
            for h in lines(run, "history.jsonl")
        ]

    assert untimed("cut") == untimed("full")
    assert lines("cut", "completions.jsonl") == lines("full", "completions.jsonl")
    assert len(lines("full", "completions.jsonl")) == 4 * 2 * 3
    wa, wb = (load_file(tmp_path / r / "final" / "model.safetensors") for r in ("full", "cut"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    # both runs checkpointed their last step: the optimizer states agree too
    oa, ob = (
        torch.load(tmp_path / r / "checkpoints/step-000004/optimizer.bin", weights_only=True)
        for r in ("full", "cut")
    )
    assert oa["param_groups"] == ob["param_groups"] and oa["state"].keys() == ob["state"].keys()
    for k in oa["state"]:
        for name, value in oa["state"][k].items():
            assert torch.equal(value, ob["state"][k][name]), (k, name)


@pytest.mark.slow
def test_resume_latest_says_why_not_or_continues(random_model_dir, tmp_path, capsys, monkeypatch):
    from audio_thinker.train import main

    out = tmp_path / "run"
    args = [
        "--out",
        str(out),
        "--model",
        random_model_dir,
        "--prompts-per-step",
        "2",
        "--num-generations",
        "2",
    ]
    args += ["--max-new-tokens", "4", "--eval-per-task", "0", "--log-with", "", "--save-every", "50"]
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--max-steps", "3", "--resume", "latest"])  # nothing there yet
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: nothing to resume: no checkpoint in {out / 'checkpoints'}"
    main([*args, "--max-steps", "3"])  # finishes; step 3 is checkpointed although 3 % 50 != 0
    assert (out / "checkpoints" / "step-000003").is_dir()
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--max-steps", "3", "--resume", "latest"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "finished at step 3" in err and "--max-steps" in err
    from audio_thinker import report

    plotted = []
    monkeypatch.setattr(report, "_curves", lambda history, *a: plotted.append([h["step"] for h in history]))
    # a larger --max-steps continues the run; its report plots every step, not only the resumed one
    main([*args, "--max-steps", "4", "--resume", "latest", "--eval-per-task", "1"])
    steps = [json.loads(x)["step"] for x in (out / "history.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    assert plotted and all(p == [1, 2, 3, 4] for p in plotted)


@pytest.mark.slow
def test_lora_run_saves_a_loadable_merged_model(tmp_path):
    """A LoRA run's ``final`` is the base with the trained adapter merged in: the linear layers LoRA
    targets moved, nothing else did, and it loads and answers like any model folder. (The shipped model,
    whose completions differ in reward, so the advantages and the adapter's update are not zero.)"""
    from pathlib import Path

    from safetensors.torch import load_file

    from audio_thinker.inference import AudioLM
    from audio_thinker.models import TINY_MODEL_DIR

    cfg = _cfg(tmp_path, str(TINY_MODEL_DIR), max_steps=2, lora=True, save_every=0, max_new_tokens=24)
    res = grpo.train(cfg)
    assert any(h["grad_norm"] > 0 for h in res["history"])
    base = load_file(TINY_MODEL_DIR / "model.safetensors")
    final = load_file(Path(res["final"]) / "model.safetensors")
    assert final.keys() == base.keys() and not any("lora" in k for k in final)  # merged, no adapter left
    moved = {k for k in base if not torch.equal(base[k], final[k])}
    # linear weights only (all-linear: attention, MLP, projector; not the LM head), never biases, norms, embeddings
    assert moved and all(k.endswith(".weight") and "norm" not in k and "embed" not in k for k in moved)
    assert not any(k.startswith("lm_head") for k in moved)
    assert any("language_model" in k for k in moved) and any("audio_tower" in k for k in moved)
    lm = AudioLM.from_pretrained(res["final"])
    item, audio = synth.generate_item("count", 1, 0)
    assert lm.answer(audio, item["question"], item["choices"], "think").completion_tokens > 0


def test_config_validation_names_the_problem():
    with pytest.raises(ValueError, match="reward_set"):
        GRPOConfig(reward_set="nope").validate()
    with pytest.raises(ValueError, match="num_generations"):
        GRPOConfig(num_generations=1).validate()


@pytest.mark.slow
def test_train_cli_writes_final_and_report(random_model_dir, tmp_path):
    from audio_thinker.train import main

    out = tmp_path / "run"
    main(
        [
            "--out",
            str(out),
            "--model",
            random_model_dir,
            "--max-steps",
            "1",
            "--prompts-per-step",
            "2",
            "--num-generations",
            "2",
            "--max-new-tokens",
            "4",
            "--eval-per-task",
            "1",
            "--log-with",
            "tensorboard",
        ]
    )
    for name in (
        "final/model.safetensors",
        "config.json",
        "history.jsonl",
        "completions.jsonl",
        "report.md",
        "accuracy_by_difficulty.png",
        "no_think_rate_by_difficulty.png",
        "reward_terms.png",
    ):
        assert (out / name).exists(), name
    assert list(out.rglob("events.out.tfevents.*")), "no TensorBoard log"
    summary = json.loads((out / "eval" / "summary.json").read_text())
    assert set(summary) == {"start", "final"} and set(summary["final"]) == {"adaptive", "think"}
    report = (out / "report.md").read_text()
    assert "| final · adaptive |" in report and "error rate" in report
    with pytest.raises(SystemExit):  # refuses to overwrite a finished run
        main(["--out", str(out), "--model", random_model_dir, "--max-steps", "1"])


@pytest.mark.slow
def test_ablation_trains_each_run_once_resumes_refuses_other_configs_and_writes_the_table(
    random_model_dir, tmp_path, monkeypatch, capsys
):
    import shutil

    import yaml

    from audio_thinker import ablate

    config = tmp_path / "tiny.yaml"
    config.write_text(
        yaml.safe_dump(
            dict(
                model=random_model_dir,
                prompts_per_step=2,
                num_generations=2,
                micro_batch_prompts=2,
                max_new_tokens=4,
                log_with="",
                save_every=1,
            )
        )
    )
    out = tmp_path / "ablation"
    args = [
        "--out",
        str(out),
        "--sets",
        "grpo,full",
        "--seeds",
        "0,1",
        "--config",
        str(config),
        "--max-steps",
        "1",
    ]
    ablate.main([*args, "--eval-per-task", "1"])
    result = json.loads((out / "ablation.json").read_text())
    assert list(result["rows"]) == ["base", "grpo", "full"] and result["seeds"] == [0, 1]
    assert [result["rows"][k]["mode"] for k in ("base", "grpo", "full")] == ["think", "think", "adaptive"]
    for name in ("grpo", "full"):
        for seed in (0, 1):
            saved = json.loads((out / name / f"seed-{seed}" / "config.json").read_text())
            assert (saved["reward_set"], saved["seed"]) == (name, seed)
        assert set(result["rows"][name]["seeds"]) == {"0", "1"}
        assert set(result["rows"][name]["seeds"]["0"]) == {"standard", "shift", "hiss"}
    table = (out / "ablation.md").read_text()
    assert "**standard**" in table and "**shift**" in table and "**hiss**" in table
    assert "| full · adaptive |" in table and "+13.1" in table  # the paper's full-vs-base delta (Qwen2-Audio)
    assert " ± " in table  # two seeds: mean ± spread

    # a repeated command evaluates only what has no saved metrics for the same weights, mode and data
    from audio_thinker import evaluate as evaluate_module

    real_evaluate, evaluated = evaluate_module.evaluate, []

    def counting_evaluate(lm, items, **kw):
        evaluated.append(kw["mode"])
        return real_evaluate(lm, items, **kw)

    monkeypatch.setattr(evaluate_module, "evaluate", counting_evaluate)
    (out / "eval" / "grpo" / "seed-0" / "shift" / "metrics.json").unlink()
    ablate.main([*args, "--eval-per-task", "1"])
    assert evaluated == ["think"]  # grpo seed 0 on the shift set, nothing else
    assert (out / "ablation.md").read_text() == table
    ablate.main([*args, "--eval-per-task", "2"])  # other evaluation data: everything again
    assert len(evaluated) == 1 + 5 * 3
    monkeypatch.setattr(evaluate_module, "evaluate", real_evaluate)

    # a second call reuses the finished runs; a run cut before its final is resumed from its checkpoint
    shutil.rmtree(out / "full" / "seed-1" / "final")
    trained = []

    class Stop(Exception):
        pass

    def stand_in(cfg):
        trained.append((cfg.out, cfg.resume))
        raise Stop

    monkeypatch.setattr(ablate, "train", stand_in)
    with pytest.raises(Stop):
        ablate.main([*args, "--eval-per-task", "1"])
    assert trained == [(str(out / "full" / "seed-1"), "latest")]  # the three finished runs were reused

    # a run of another length is never reused: the command stops and names what differs
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        ablate.main([*args[:-1], "2", "--eval-per-task", "1"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and "\n" not in err and "max_steps: 1 != 2" in err
    with pytest.raises(SystemExit):
        ablate.main(["--out", str(out), "--sets", "grpo,nope"])


def test_variance_shares_by_hand():
    """Each term's share of the within-group variance of the total: Σ Cov(term, total) / Σ Var(total)."""
    from audio_thinker.grpo_metrics import variance_shares

    # group 1: the terms cancel (the total is constant: no share for anyone); group 2: only b varies
    shares = variance_shares({"a": [1, 0, 2, 2], "b": [0, 1, 1, 0]}, group_size=2)
    assert shares == pytest.approx({"a": 0.0, "b": 1.0})
    shares = variance_shares({"a": [1, 0], "b": [3, 0]}, group_size=2)
    assert shares == pytest.approx({"a": 0.25, "b": 0.75})
    assert variance_shares({"a": [1, 1]}, group_size=2) == {"a": 0.0}


def test_completion_variance_shares_reads_a_runs_records():
    from audio_thinker.grpo_metrics import completion_variance_shares

    it = _item()
    ans, wrong = it["answer"], next(c for c in it["choices"] if c != it["answer"])
    gold = it["reasoning"]
    texts = [
        f"<think>{gold}</think><answer>{ans}</answer>",
        f"<think>{gold} Let me listen again.</think><answer>{ans}</answer>",
        f"<answer>{wrong}</answer>",
        f"<answer>{ans}</answer>",
    ]
    cfg = GRPOConfig(reward_set="full", max_steps=10)
    s = score_completions(texts, [it] * 4, cfg=cfg, step=0, judge=make_judge("oracle"))
    records = [
        {k: s[k][i] for k in ("accuracy_reward", "format", "consistency", "quality")} for i in range(4)
    ]
    shares = completion_variance_shares(records, 2, cfg)
    assert set(shares) == {"accuracy_reward", "consistency_bonus", "format", "quality"}
    assert sum(shares.values()) == pytest.approx(1.0)
    # the same numbers as the trainer logs from the reward functions' own outputs (history.jsonl)
    from audio_thinker.grpo_metrics import variance_shares

    logged = variance_shares({f.name: [f.weight * x for x in s[f.name]] for f in cfg.reward_funcs}, 2)
    assert shares == pytest.approx(logged)
    # group 1 differs only in R_t (the filler costs 0.1): R_t's share is positive
    assert shares["quality"] > 0
    grpo = completion_variance_shares(records, 2, GRPOConfig(reward_set="grpo"))
    assert set(grpo) == {"accuracy_reward", "format"}
