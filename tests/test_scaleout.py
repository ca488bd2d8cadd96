"""Scale-out, with processes really started: ``torchrun`` launches 2 CPU ranks (gloo) of
``python -m audio_thinker.train`` next to a 1-process run over the same global batch, and every test asserts
the world size it ran with. The runs must agree on completions, every reward term, advantages, loss,
grad_norm and learning rate at every step, and on the final weights; FSDP2-sharded ranks whose completions
end at very different lengths must not hang; the accelerate configs parse; the optional vLLM rollout."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.torch import load_file

from audio_thinker import synth

ROOT = Path(__file__).resolve().parents[1]
# warm-up + linear schedule and mu = 2: what a per-process scheduler step or a x world gradient would break
ARGS = [
    "--max-steps", "3",
    "--num-iterations", "2",
    "--micro-batch-prompts", "1",
    "--max-new-tokens", "24",
    "--learning-rate", "1e-4",
    "--warmup-steps", "1",
    "--lr-scheduler", "linear",
    "--save-every", "0",
    "--eval-per-task", "0",
    "--log-with", "",
    "--reward-set", "full",
    "--no-report",
]  # fmt: skip
REWARD_KEYS = ("total", "accuracy_reward", "format", "consistency", "quality", "think", "correct")
STEP_KEYS = ("reward", "loss", "grad_norm", "learning_rate")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "ACCELERATE_USE_CPU": "true",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }


def torchrun(nproc: int, *args: str) -> subprocess.Popen:
    """``torchrun --nproc_per_node nproc ARGS`` in the background (stdout and stderr together)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc)]
    cmd += ["--master_port", str(_free_port()), *args]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def step_table(one: list[dict], two: list[dict]) -> str:
    """The per-step comparison, 1 process against 2, as a markdown table."""
    lines = ["| step | " + " | ".join(f"{k} (1 / 2 ranks)" for k in STEP_KEYS) + " |"]
    lines.append("|---" * (len(STEP_KEYS) + 1) + "|")
    for a, b in zip(one, two, strict=True):
        cells = [f"{a.get(k, float('nan')):.6g} / {b.get(k, float('nan')):.6g}" for k in STEP_KEYS]
        lines.append(f"| {a['step']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@pytest.mark.slow
@pytest.mark.parametrize(
    "prompts,generations",
    [(4, 2), (1, 4)],
    ids=["whole-groups-per-rank", "one-group-split-over-ranks"],
)
def test_two_ranks_equal_one_over_the_global_batch(tmp_path, prompts, generations):
    from audio_thinker.inference import AudioLM
    from audio_thinker.train import main

    one, two = tmp_path / "one", tmp_path / "two"
    shape = ["--prompts-per-step", str(prompts), "--num-generations", str(generations)]
    proc = torchrun(2, "-m", "audio_thinker.train", "--out", str(two), *shape, *ARGS)
    main(["--out", str(one), *shape, *ARGS])  # 1 process, here, while the 2 ranks run
    log, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, log[-3000:]

    ha, hb = _jsonl(one / "history.jsonl"), _jsonl(two / "history.jsonl")
    print(f"\n{prompts} prompts x G={generations}\n" + step_table(ha, hb))
    assert {h["num_processes"] for h in ha} == {1} and {h["num_processes"] for h in hb} == {2}
    assert [h["step"] for h in ha] == [h["step"] for h in hb] == [1, 2, 3]
    for key in (
        "reward",
        "reward_std",
        "accuracy",
        "think_rate",
        "consistency_rate",
        "completions/mean_length",
    ):
        assert [h[key] for h in ha] == pytest.approx([h[key] for h in hb], abs=1e-6, nan_ok=True), key
    for key in ("rewards/accuracy_reward/mean", "rewards/format/mean", "rewards/consistency/mean"):
        assert [h[key] for h in ha] == pytest.approx([h[key] for h in hb], abs=1e-6), key
    assert [h["learning_rate"] for h in ha] == [h["learning_rate"] for h in hb]
    for key in ("loss", "grad_norm", "kl", "entropy", "clip_ratio/region_mean"):
        assert [h[key] for h in ha] == pytest.approx([h[key] for h in hb], rel=1e-4, abs=1e-7), key

    a, b = _jsonl(one / "completions.jsonl"), _jsonl(two / "completions.jsonl")
    assert len(a) == len(b) == 3 * prompts * generations
    for key in ("step", "id", "completion", *REWARD_KEYS):
        assert [r[key] for r in a] == [r[key] for r in b], key
    assert np.allclose([r["advantage"] for r in a], [r["advantage"] for r in b], atol=1e-6)
    assert any(r["think"] for r in a) and any(r["advantage"] for r in a)  # the updates were not no-ops

    wa, wb = load_file(one / "final" / "model.safetensors"), load_file(two / "final" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for name in wa:
        assert np.allclose(wa[name].float().numpy(), wb[name].float().numpy(), atol=1e-6), name
    item, audio = synth.generate_item("count", 1, 0)
    lm = AudioLM.from_pretrained(str(two / "final"), max_new_tokens=4)
    assert lm.answer(audio, item["question"], item["choices"], "think").completion_tokens > 0


@pytest.mark.slow
def test_fsdp2_ranks_that_finish_at_different_lengths_do_not_hang(tmp_path):
    """2 ranks on torch's FSDP2 (``fully_shard``, gloo): one rank's completions end 10+ tokens before the
    other's. The rollout's all-reduce keeps both stepping; the result equals one process. Without it, the
    ranks' all-gathers go out of step and the run dies."""
    worker = str(ROOT / "tests" / "_fsdp2_worker.py")
    runs = {
        "two": torchrun(2, worker, str(tmp_path / "two.json")),
        "one": torchrun(1, worker, str(tmp_path / "one.json")),
    }
    for name, proc in runs.items():
        log, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name}: {log[-3000:]}"
    (one,), two = (
        json.loads((tmp_path / "one.json").read_text()),
        json.loads((tmp_path / "two.json").read_text()),
    )
    assert one["world_size"] == 1 and [r["world_size"] for r in two] == [2, 2]
    assert all(r["sharded"] for r in two)  # every trained parameter is a DTensor shard
    # a parameter list taken before sharding holds no gradient: clipping it would clip nothing
    assert [r["stale_params_with_grad"] for r in two] == [0, 0]
    lengths = [r["max_length"] for r in two]
    assert max(lengths) - min(lengths) >= 10, lengths  # the situation under test
    assert two[0]["decode_steps"] == two[1]["decode_steps"] == one["decode_steps"]
    assert two[0]["completions"] + two[1]["completions"] == one["completions"]
    assert two[0]["grad_norm"] == two[1]["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-5)
    assert two[0]["loss"] + two[1]["loss"] == pytest.approx(one["loss"], abs=1e-6)

    broken = torchrun(2, worker, str(tmp_path / "unsynced.json"), "--no-sync")
    log, _ = broken.communicate(timeout=300)
    assert broken.returncode != 0 and not (tmp_path / "unsynced.json").exists(), log[-2000:]


def test_rollout_seeds_do_not_depend_on_the_split():
    from audio_thinker.policy import rollout_seed

    seeds = [rollout_seed(0, 3, r) for r in range(8)]
    assert len(set(seeds)) == 8 and seeds == [rollout_seed(0, 3, r) for r in range(8)]
    assert rollout_seed(0, 4, 0) != seeds[0] and rollout_seed(1, 3, 0) != seeds[0]


def test_each_process_takes_whole_groups_or_an_equal_part_of_one():
    from audio_thinker.policy import process_share

    # 4 prompts x G=2 on 2 processes: two whole groups each
    assert process_share(4, 2, 2, 1) == (slice(4, 8), slice(2, 4), 2)
    # the paper's 2 prompts x G=8 on 8 GPUs: 2 completions of one prompt per GPU
    shares = [process_share(2, 8, 8, r) for r in range(8)]
    assert [s[1] for s in shares] == [slice(0, 1)] * 4 + [slice(1, 2)] * 4 and {s[2] for s in shares} == {2}
    assert [s[0].start for s in shares] == list(range(0, 16, 2))
    with pytest.raises(ValueError, match="cannot be split evenly"):
        process_share(3, 2, 4, 0)  # 6 completions over 4 processes
    with pytest.raises(ValueError, match="cannot be split evenly"):
        process_share(3, 4, 2, 0)  # 6 each: neither whole groups of 4 nor an equal part of one


def test_accelerate_configs_parse():
    from accelerate.commands.config.config_args import load_config_from_file

    for name, kind in {
        "ddp": "MULTI_GPU",
        "zero2": "DEEPSPEED",
        "zero3": "DEEPSPEED",
        "fsdp2": "FSDP",
    }.items():
        path = ROOT / "configs" / "accelerate" / f"{name}.yaml"
        raw = yaml.safe_load(path.read_text())
        cfg = load_config_from_file(str(path))
        assert cfg.distributed_type.value == kind, name
        assert str(getattr(cfg.mixed_precision, "value", cfg.mixed_precision)) == "bf16", name
        assert cfg.num_processes == 8, name
        if name.startswith("zero"):
            assert raw["deepspeed_config"]["zero_stage"] == int(name[-1])
        if name == "fsdp2":
            assert raw["fsdp_config"]["fsdp_version"] == 2


# -- vLLM rollouts (GPU only; the request is built without importing vllm) ------------------------------


def test_vllm_requests_carry_the_audio():
    from audio_thinker.models import TINY_MODEL_DIR, load_policy
    from audio_thinker.vllm_backend import build_requests

    _, processor = load_policy(TINY_MODEL_DIR)
    item, audio = synth.generate_item("count", 2, 0)
    (req,) = build_requests(processor, [{**item, "audio": audio}], "think")
    assert req["prompt"].count("<|AUDIO|>") == 1 and item["question"] in req["prompt"]
    assert req["prompt"].endswith("<|im_start|>assistant\n")
    (clip, sr), *rest = req["multi_modal_data"]["audio"]
    assert not rest and sr == 16000 and clip.dtype == np.float32 and np.array_equal(clip, audio)


def test_vllm_missing_gives_the_install_hint(tmp_path, monkeypatch):
    from audio_thinker import grpo
    from audio_thinker.models import TINY_MODEL_DIR

    tiny_model_dir = str(TINY_MODEL_DIR)
    monkeypatch.setitem(sys.modules, "vllm", None)  # as if not installed
    cfg = grpo.GRPOConfig(out=str(tmp_path), model=tiny_model_dir, rollout="vllm", log_with="")
    with pytest.raises(ImportError, match=r"vLLM is not installed: pip install '\.\[vllm\]' \(GPU only\)"):
        grpo.train(cfg)
    with pytest.raises(ValueError, match="rollout"):
        grpo.GRPOConfig(rollout="sglang").validate()


def test_vllm_with_sharded_parameters_is_refused(tmp_path, monkeypatch):
    """ZeRO-3 / FSDP shard the weights, so the engine would load placeholders: refused, naming the fix."""
    from audio_thinker import grpo

    monkeypatch.setattr(grpo, "_is_sharded", lambda accelerator: True)
    cfg = grpo.GRPOConfig(out=str(tmp_path), rollout="vllm", log_with="")
    with pytest.raises(ValueError, match=r"--rollout vllm needs the full weights.*ddp\.yaml or zero2\.yaml"):
        grpo.train(cfg)
