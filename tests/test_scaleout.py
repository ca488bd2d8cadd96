"""Scale-out: a 2-process CPU run (``accelerate launch``, gloo) equals a 1-process run over the same global
batch, because rewards (ATAR's λ, R_t's batch mean) and advantages are computed on the gathered batch and
every completion samples from its own seed; the accelerate configs parse; the optional vLLM rollout."""

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

from audio_thinker import synth

ROOT = Path(__file__).resolve().parents[1]
ARGS = [
    "--max-steps", "2",
    "--prompts-per-step", "4",
    "--num-generations", "2",
    "--micro-batch-prompts", "1",
    "--max-new-tokens", "4",
    "--learning-rate", "1e-3",
    "--warmup-steps", "0",
    "--save-every", "0",
    "--eval-per-task", "0",
    "--log-with", "",
    "--reward-set", "full",
]  # fmt: skip


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> str:
    """A random model of the tiny recipe with the shipped tokenizer (like test_grpo's ``random_model_dir``)."""
    from transformers import AutoTokenizer

    from audio_thinker.models import TINY_MODEL_DIR, build_processor, build_tiny_model

    d = tmp_path_factory.mktemp("tiny-random")
    tok = AutoTokenizer.from_pretrained(TINY_MODEL_DIR)
    build_tiny_model(tok, seed=0).save_pretrained(d)
    build_processor(tok).save_pretrained(d)
    return str(d)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_processes_equal_one_over_the_global_batch(tiny_model_dir, tmp_path):
    from audio_thinker.inference import AudioLM
    from audio_thinker.train import main

    one, two = tmp_path / "one", tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    launch = [sys.executable, "-m", "accelerate.commands.launch"]
    launch += [
        "--config_file",
        str(ROOT / "configs/accelerate/cpu2.yaml"),
        "--main_process_port",
        str(_free_port()),
    ]
    proc = subprocess.Popen(  # the 2-process run in the background while this process runs the 1-process one
        [
            *launch,
            "-m",
            "audio_thinker.train",
            "--model",
            tiny_model_dir,
            "--out",
            str(two),
            "--no-report",
            *ARGS,
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    main(["--model", tiny_model_dir, "--out", str(one), "--no-report", *ARGS])
    log, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, log[-3000:]

    a, b = _jsonl(one / "completions.jsonl"), _jsonl(two / "completions.jsonl")
    assert len(a) == len(b) == 2 * 4 * 2
    for key in ("step", "id", "completion", "total", "accuracy_reward", "format", "quality", "think"):
        assert [r[key] for r in a] == [r[key] for r in b], key
    assert np.allclose([r["advantage"] for r in a], [r["advantage"] for r in b], atol=1e-6)
    ha, hb = _jsonl(one / "history.jsonl"), _jsonl(two / "history.jsonl")
    for key in ("reward", "reward_std", "think_rate", "rewards/quality/mean", "completions/mean_length"):
        assert [h[key] for h in ha] == pytest.approx([h[key] for h in hb], abs=1e-6), key
    assert [h["loss"] for h in ha] == pytest.approx([h["loss"] for h in hb], abs=1e-4)
    # the 2-process run's final model loads and answers
    item, audio = synth.generate_item("count", 1, 0)
    lm = AudioLM.from_pretrained(str(two / "final"), max_new_tokens=4)
    assert lm.answer(audio, item["question"], item["choices"], "think").completion_tokens > 0


def test_rollout_seeds_do_not_depend_on_the_split():
    from audio_thinker.grpo import _rollout_seed

    seeds = [_rollout_seed(0, 3, r) for r in range(8)]
    assert len(set(seeds)) == 8 and seeds == [_rollout_seed(0, 3, r) for r in range(8)]
    assert _rollout_seed(0, 4, 0) != seeds[0] and _rollout_seed(1, 3, 0) != seeds[0]


def test_each_process_takes_whole_groups_or_an_equal_part_of_one():
    from audio_thinker.grpo import process_share

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
        "cpu2": "MULTI_CPU",
    }.items():
        path = ROOT / "configs" / "accelerate" / f"{name}.yaml"
        raw = yaml.safe_load(path.read_text())
        cfg = load_config_from_file(str(path))
        assert cfg.distributed_type.value == kind, name
        if kind != "MULTI_CPU":
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


def test_vllm_missing_gives_the_install_hint(tiny_model_dir, tmp_path, monkeypatch):
    from audio_thinker import grpo

    monkeypatch.setitem(sys.modules, "vllm", None)  # as if not installed
    cfg = grpo.GRPOConfig(out=str(tmp_path), model=tiny_model_dir, rollout="vllm", log_with="")
    with pytest.raises(ImportError, match=r"vLLM is not installed: pip install '\.\[vllm\]' \(GPU only\)"):
        grpo.train(cfg)
    with pytest.raises(ValueError, match="rollout"):
        grpo.GRPOConfig(rollout="sglang").validate()
