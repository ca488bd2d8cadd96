"""GPU check: 3 GRPO steps of this project's trainer on the full-size 7B bases (random weights), one GPU.

    python benchmarks/gpu_check.py            # on a CUDA machine: both 7B bases (estimated 5-8 min, H200)
    python benchmarks/gpu_check.py --tiny     # the same code path at tiny size (CPU: ~20 s on 2 cores)

For each base (Qwen2-Audio-7B-Instruct and the Qwen2.5-Omni-7B thinker, shapes from ``memory_7b.py``) it

1. builds the architecture from its config with random bf16 weights directly on the device (no download),
   with the project's tokenizer (``auto_tokenizer(TINY_MODEL_DIR)`` / ``build_omni_tokenizer``) and processor
   (``build_processor`` / ``build_omni_processor``) for 30-s clips with the encoder's 128 mel bins; the
   config's audio / special token ids are the tokenizer's, and each 30-s clip must become 750 audio tokens;
2. saves model + processor with ``save_pretrained`` to a temp folder (``/dev/shm`` when it has room, else
   the temp dir; ``--workdir`` overrides) and runs ``audio_thinker.grpo.train(GRPOConfig(...))`` on it:
   3 steps, LoRA r8 all-linear, G = 8, 2 prompts a step (a pool of two synth-aqa clips padded with hiss to
   30 s, MMAU layout, so the oracle judge and ``reward_set="full"`` run), 1 prompt x 8 completions per
   micro-batch, 256 new tokens, gradient checkpointing, bf16 autocast, no checkpoints, no evaluation;
3. prints per base: the time of each step (the trainer's ``step_time``) and the mean of steps 2-3, the
   rollout time and tokens/s of each step, the peak GPU memory (``torch.cuda.max_memory_allocated``, reset
   before each base), and beside it the one-GPU prediction of the README memory table's model
   (``memory_7b.py``: LoRA r8, g = 8, 870-token prompt + 256 completion tokens), plus that model adjusted to
   how the trainer actually runs (see below); also the time spent building, saving, in ``load_policy`` and
   in the rest of ``train`` (``prepare``, the merged ``final`` save).

The last line of output is a JSON summary (also written to ``$OUT/gpu_check.json`` when ``$OUT`` is set,
after each base, so a run cut short keeps what it finished). Exit status: 0 if every base ran, 1 if one
failed or was skipped (the error or the reason is in the summary), 2 without a CUDA device (and no
``--tiny``).

What is measured from outside the trainer (the trainer is not modified): the trainer logs only the whole
``step_time`` per step, so the rollout (``inference.sample``: prompt prefill + decoding, not the audio
encoder pass) is timed by wrapping ``policy.sample`` while ``train`` runs; ``policy.load_policy`` is wrapped to
time the load (and to delete the saved bf16 copy once it is loaded, halving the disk needed).

The "as run" prediction adds what the README model leaves out for this trainer on one GPU (LoRA under bf16
loads the frozen base in bf16, as the README model assumes): under gradient checkpointing ``completion_logprobs`` does not share the prompt prefix (each of the g completions
carries its own copy of the prompt); the rollout's KV cache holds all local prompts x G rows at once.

Flags: ``--tiny``, ``--models qwen2_audio,omni_thinker``, ``--steps 3``, ``--workdir DIR``,
``--budget-s 590`` (the second base is skipped, with a message, if the first one's time says it would not
finish within this many seconds of the start).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(ROOT), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

# nothing can be downloaded on the GPU box: never try the hub
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402

GB = 1e9
LORA_R = 8
GROUP = 8  # G
PROMPTS_PER_STEP = 2
README_PROMPT_TOKENS = 870  # the README memory table's prompt: 750 audio tokens (30-s clip) + 120 text


@dataclass(frozen=True)
class Sizes:
    """What differs between the full run and ``--tiny``."""

    clip_seconds: int
    max_new_tokens: int
    tiny: bool


FULL = Sizes(clip_seconds=30, max_new_tokens=256, tiny=False)
TINY = Sizes(clip_seconds=3, max_new_tokens=16, tiny=True)


@dataclass(frozen=True)
class Base:
    key: str
    name: str
    omni: bool


BASES = {
    "qwen2_audio": Base("qwen2_audio", "Qwen2-Audio-7B-Instruct", omni=False),
    "omni_thinker": Base("omni_thinker", "Qwen2.5-Omni-7B thinker", omni=True),
}


# --------------------------------------------------------------------------------------------------
# Model, tokenizer, processor


def tokenizer_and_processor(base: Base, sizes: Sizes, num_mel_bins: int) -> tuple[Any, Any]:
    """The project's tokenizer and processor for ``base``, for ``sizes.clip_seconds``-s clips and the encoder's
    mel bins (``build_processor`` / ``build_omni_processor`` fix the tiny model's 80; the 7B encoders take 128)."""
    from transformers import WhisperFeatureExtractor

    from audio_thinker.models import (
        TINY_MODEL_DIR,
        auto_tokenizer,
        build_omni_processor,
        build_omni_tokenizer,
        build_processor,
    )

    if base.omni:
        tok = build_omni_tokenizer()
        processor = build_omni_processor(tok, clip_seconds=sizes.clip_seconds)
    else:
        tok = auto_tokenizer(TINY_MODEL_DIR)
        processor = build_processor(tok, clip_seconds=sizes.clip_seconds)
    if processor.feature_extractor.feature_size != num_mel_bins:
        processor.feature_extractor = WhisperFeatureExtractor(
            feature_size=num_mel_bins, chunk_length=sizes.clip_seconds
        )
    return tok, processor


def model_config(base: Base, tok: Any, sizes: Sizes) -> Any:
    """The hub config of ``base`` (``memory_7b``'s shapes) with the tokenizer's token ids; at ``--tiny``, the
    same classes with the shipped tiny model's sizes (``TINY_TEXT_CONFIG``, ``TINY_AUDIO_CONFIG``)."""
    from memory_7b import OMNI_THINKER, QWEN2_AUDIO

    from audio_thinker.models import OMNI_VISION_TOKENS, TINY_AUDIO_CONFIG, TINY_TEXT_CONFIG, TINY_VOCAB_SIZE

    hub = OMNI_THINKER if base.omni else QWEN2_AUDIO
    d = hub.to_dict()
    text, audio = d["text_config"], d["audio_config"]
    text.pop("layer_types", None)  # derived from num_hidden_layers
    ids = tok.convert_tokens_to_ids
    pad, eos = tok.pad_token_id, ids("<|im_end|>")
    text.update(pad_token_id=pad, eos_token_id=eos, bos_token_id=None)
    if sizes.tiny:
        text.update(
            {k: v for k, v in TINY_TEXT_CONFIG.items() if k not in ("rope_theta", "tie_word_embeddings")},
            vocab_size=TINY_VOCAB_SIZE,
        )
        audio.update({k: v for k, v in TINY_AUDIO_CONFIG.items() if k != "num_mel_bins"})
        if base.omni:
            audio["output_dim"] = text["hidden_size"]
            head_dim = text["hidden_size"] // text["num_attention_heads"]
            text["rope_parameters"] = {**text["rope_parameters"], "mrope_section": _mrope(head_dim)}
            d["vision_config"] = {
                "depth": 1,
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_heads": 2,
                "out_hidden_size": text["hidden_size"],
                "fullatt_block_indexes": [0],
            }
    if base.omni:
        d.update(
            audio_token_index=ids("<|AUDIO|>"),
            image_token_index=ids(OMNI_VISION_TOKENS["image_token"]),
            video_token_index=ids(OMNI_VISION_TOKENS["video_token"]),
            audio_start_token_id=ids("<|audio_bos|>"),
            audio_end_token_id=ids("<|audio_eos|>"),
            vision_start_token_id=ids(OMNI_VISION_TOKENS["vision_bos_token"]),
            vision_end_token_id=ids(OMNI_VISION_TOKENS["vision_eos_token"]),
        )
    else:
        audio["max_source_positions"] = 50 * sizes.clip_seconds  # 100 mel frames a second, stride 2
        d["audio_token_index"] = ids("<|AUDIO|>")
    config = type(hub)(**d)
    if len(tok) > config.get_text_config().vocab_size:
        raise ValueError(
            f"tokenizer has {len(tok)} ids, the model's vocabulary {config.get_text_config().vocab_size}"
        )
    return config


def _mrope(head_dim: int) -> list[int]:
    """M-RoPE sections over head_dim / 2 frequencies in the 7B's proportions 16:24:24 (of 64)."""
    half = head_dim // 2
    t = half // 4
    return [t, (half - t) // 2, half - t - (half - t) // 2]


def model_class(base: Base) -> type:
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration, Qwen2AudioForConditionalGeneration

    return Qwen2_5OmniThinkerForConditionalGeneration if base.omni else Qwen2AudioForConditionalGeneration


def build_model(base: Base, config: Any, tok: Any, device: str) -> Any:
    """Random bf16 weights, initialised on ``device`` (no CPU pass over 8B parameters)."""
    from transformers import GenerationConfig

    with torch.device(device):
        model = model_class(base)._from_config(config, dtype=torch.bfloat16)
    pad, eos = tok.pad_token_id, tok.convert_tokens_to_ids("<|im_end|>")
    model.generation_config = GenerationConfig(
        eos_token_id=[eos, pad], pad_token_id=pad, do_sample=True, temperature=1.0, top_k=0, top_p=1.0
    )
    return model


# --------------------------------------------------------------------------------------------------
# Data: two synth-aqa clips, padded with hiss to the clip length, in the MMAU layout


def write_pool(folder: Path, clip_seconds: int) -> Path:
    from audio_thinker import synth
    from audio_thinker.audio import write_wav

    (folder / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    items = []
    for i, task in enumerate(("count", "pitch_pattern")):
        item, audio = synth.generate_item(task, 4242, i, "gpu-check")
        n = clip_seconds * synth.SAMPLE_RATE
        hiss = (rng.standard_normal(max(0, n - len(audio))) * 10 ** (-45 / 20)).astype(np.float32)
        write_wav(folder / item["audio_id"], np.concatenate([audio, hiss])[:n], synth.SAMPLE_RATE)
        items.append(item)
    path = folder / "pool.json"
    path.write_text(json.dumps(items, indent=1))
    return path


def check_prompts(processor: Any, config: Any, pool: Path, mode: str, sizes: Sizes) -> int:
    """The processor puts the config's audio token id in the prompt, as many times as the encoder yields
    for a clip (25 a second), with the encoder's mel bins. Returns the prompt length in tokens."""
    from audio_thinker.audio import load_audio
    from audio_thinker.evaluate import load_items
    from audio_thinker.prompts import chat_prompt

    items = load_items(pool)
    processor.tokenizer.padding_side = "left"
    enc = processor(
        text=[chat_prompt(processor, it["question"], it["choices"], mode) for it in items],
        audio=[load_audio(it["audio_path"]) for it in items],
        sampling_rate=processor.feature_extractor.sampling_rate,
        return_tensors="pt",
        padding=True,
    )
    audio_id = config.audio_token_index
    expected = 25 * sizes.clip_seconds
    per_row = (enc["input_ids"] == audio_id).sum(1).tolist()
    mel = enc["input_features"].shape[1]
    want_mel = config.audio_config.num_mel_bins
    if per_row != [expected] * len(items) or mel != want_mel:
        raise RuntimeError(
            f"processor/config mismatch: audio token id {audio_id} appears {per_row} times per prompt "
            f"(expected {expected} for {sizes.clip_seconds}-s clips); {mel} mel bins (encoder: {want_mel})"
        )
    return int(enc["input_ids"].shape[1])


# --------------------------------------------------------------------------------------------------
# Instrumentation from outside the trainer


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class Probe:
    """Wraps ``policy.sample`` (rollout time and tokens) and ``policy.load_policy`` (load time) during ``train``."""

    def __init__(self, delete_after_load: Path | None):
        self.rollouts: list[dict[str, float]] = []
        self.load_s = float("nan")
        self.delete_after_load = delete_after_load

    def _timed_sample(
        self, fn: Callable[..., Iterator[torch.Tensor]]
    ) -> Callable[..., Iterator[torch.Tensor]]:
        def timed(*args: Any, **kwargs: Any) -> Iterator[torch.Tensor]:
            eos = None
            tokens = None
            _sync()
            t0 = time.perf_counter()
            for col in fn(*args, **kwargs):
                if eos is None:
                    eos = torch.tensor(list(kwargs["eos_ids"]), device=col.device)
                    alive = torch.ones_like(col, dtype=torch.bool)
                    tokens = torch.zeros((), dtype=torch.long, device=col.device)
                tokens += alive.sum()  # tokens up to and including each row's eos (the completion mask)
                alive &= ~torch.isin(col, eos)
                yield col
            _sync()
            self.rollouts.append(
                {"seconds": time.perf_counter() - t0, "tokens": float(tokens) if tokens is not None else 0.0}
            )

        return timed

    def _timed_load(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            self.load_s = time.perf_counter() - t0
            if self.delete_after_load is not None:  # loaded (copies in memory): the bf16 files can go
                shutil.rmtree(self.delete_after_load, ignore_errors=True)
            return out

        return timed

    @contextmanager
    def installed(self) -> Iterator[Probe]:
        from audio_thinker import policy

        saved = policy.sample, policy.load_policy
        policy.sample, policy.load_policy = (
            self._timed_sample(policy.sample),
            self._timed_load(policy.load_policy),
        )
        try:
            yield self
        finally:
            policy.sample, policy.load_policy = saved


# --------------------------------------------------------------------------------------------------
# Memory prediction (memory_7b.py's accounting)


def predictions(
    c: dict[str, int], sizes: Sizes, prompt_tokens: int, g: int = GROUP, prompts: int = PROMPTS_PER_STEP
) -> dict[str, Any]:
    """GB on one GPU, LoRA r8, by ``memory_7b``'s accounting for the parameter counts ``c`` (its ``counts``)."""
    from memory_7b import activations, breakdown, kv_cache

    readme_prompt = prompt_tokens if sizes.tiny else README_PROMPT_TOKENS
    act = activations(c, g, readme_prompt, sizes.max_new_tokens) + kv_cache(
        c, g, readme_prompt, sizes.max_new_tokens
    )
    readme = breakdown(c, "LoRA r8, DDP", act, gpus=1)
    # as the trainer runs it: the prompt repeated per completion under gradient checkpointing, the rollout
    # KV cache of all local prompts x G
    as_run_act = activations(c, g, g * prompt_tokens, sizes.max_new_tokens) + kv_cache(
        c, prompts * g, prompt_tokens, sizes.max_new_tokens
    )
    as_run = readme["total"] - act + as_run_act
    return {
        "params_b": c["total"] / 1e9,
        "trained_lora_m": c["lora"] / 1e6,
        "predicted_mem_gb": readme["total"],
        "predicted_terms_gb": {k: round(v, 3) for k, v in readme.items() if k not in ("params", "trained")},
        "predicted_prompt_tokens": readme_prompt,
        "predicted_mem_as_run_gb": as_run,
    }


# --------------------------------------------------------------------------------------------------
# One base


def step_metrics(history_file: Path, probe: Probe, train_s: float) -> dict[str, Any]:
    """Per-step numbers from the trainer's ``history.jsonl`` and the probe's rollout timings."""
    if not history_file.exists():
        return {}
    history = [json.loads(line) for line in history_file.read_text().splitlines() if line.strip()]
    if not history:
        return {}
    nan = float("nan")
    m: dict[str, Any] = {
        "step_time_s": [h.get("step_time", nan) for h in history],
        "mean_completion_tokens": [h.get("completions/mean_length", nan) for h in history],
        "loss": [h.get("loss", nan) for h in history],
        "load_s": probe.load_s,
        "rollout_s": [r["seconds"] for r in probe.rollouts],
        "rollout_tokens": [r["tokens"] for r in probe.rollouts],
        "rollout_tokens_per_s": [r["tokens"] / r["seconds"] for r in probe.rollouts],
    }
    m["rest_of_train_s"] = train_s - probe.load_s - sum(m["step_time_s"])
    later = slice(1, None) if len(history) > 1 else slice(None)  # steps 2.. (step 1 warms up)
    m["mean_step_time_s"] = float(np.mean(m["step_time_s"][later]))
    m["mean_rollout_tokens_per_s"] = (
        float(np.mean(m["rollout_tokens_per_s"][later])) if probe.rollouts else nan
    )
    return m


def pick_workdir(need_bytes: float, override: str | None) -> Path:
    """``--workdir``, else the first of /dev/shm and the temp dir with ``need_bytes`` free, else the roomiest."""
    candidates = [override] if override else ["/dev/shm", tempfile.gettempdir()]
    usable = [Path(c) for c in candidates if os.path.isdir(c) and os.access(c, os.W_OK)]
    if not usable:
        raise RuntimeError(f"no writable work folder among {candidates}")
    for c in usable:
        if shutil.disk_usage(c).free >= need_bytes:
            return c
    best = max(usable, key=lambda c: shutil.disk_usage(c).free)
    print(
        f"warning: no work folder has {need_bytes / GB:.1f} GB free; using {best} "
        f"({shutil.disk_usage(best).free / GB:.1f} GB free)",
        flush=True,
    )
    return best


def run_base(base: Base, sizes: Sizes, steps: int, device: str, workdir: str | None) -> dict[str, Any]:
    from memory_7b import counts

    from audio_thinker import grpo

    cuda = device == "cuda"
    t_start = time.perf_counter()
    tok, processor = tokenizer_and_processor(base, sizes, num_mel_bins=128)
    config = model_config(base, tok, sizes)
    c = counts(config, model_class(base), lora_r=LORA_R)  # exact, on the meta device
    # the most on disk at once: train's merged `final` (the bf16 save is deleted once it is loaded)
    need = 4 * c["total"] + 2 * GB
    root = Path(tempfile.mkdtemp(prefix=f"gpu_check_{base.key}_", dir=pick_workdir(need, workdir)))
    print(f"work folder {root} ({shutil.disk_usage(root).free / GB:.1f} GB free)", flush=True)
    result: dict[str, Any] = {"name": base.name, "work_folder": str(root)}
    try:
        pool = write_pool(root / "data", sizes.clip_seconds)
        cfg = grpo.GRPOConfig(
            out=str(root / "run"),
            model=str(root / "model"),
            data=str(pool),
            reward_set="full",  # the items carry their events: the oracle judge scores R_c and R_t
            judge="oracle",
            max_steps=steps,
            prompts_per_step=PROMPTS_PER_STEP,
            num_generations=GROUP,
            micro_batch_prompts=1,  # the README model's micro-batch: 1 prompt x g completions
            max_new_tokens=sizes.max_new_tokens,
            learning_rate=1e-6,
            lora=True,
            lora_r=LORA_R,
            lora_target_modules="all-linear",
            bf16=True,
            gradient_checkpointing=True,
            save_every=0,
            eval_per_task=0,
            log_with="",
        )
        prompt_tokens = check_prompts(processor, config, pool, cfg.prompt_mode, sizes)
        pred = predictions(c, sizes, prompt_tokens)
        result.update(pred, prompt_tokens=prompt_tokens, audio_tokens_per_clip=25 * sizes.clip_seconds)

        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        model = build_model(base, config, tok, device)
        _sync()
        result["build_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        model.save_pretrained(root / "model")
        processor.save_pretrained(root / "model")
        result["save_s"] = time.perf_counter() - t0
        result["saved_gb"] = sum(f.stat().st_size for f in (root / "model").iterdir()) / GB
        del model
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
            result["mem_before_train_gb"] = torch.cuda.memory_allocated() / GB
            torch.cuda.reset_peak_memory_stats()
        print(
            f"built {base.name} ({_params(pred['params_b'])} params) in {result['build_s']:.1f} s; saved "
            f"{result['saved_gb']:.1f} GB in {result['save_s']:.1f} s",
            flush=True,
        )

        probe = Probe(delete_after_load=root / "model")
        t0 = time.perf_counter()
        try:
            with probe.installed():
                grpo.train(cfg)
        except Exception as err:  # e.g. no room for `final`: the steps logged so far are still reported
            traceback.print_exc()
            result["error"] = f"in grpo.train: {type(err).__name__}: {err}"
        result["train_s"] = time.perf_counter() - t0
        if cuda:
            result["peak_mem_gb"] = torch.cuda.max_memory_allocated() / GB
            result["peak_reserved_gb"] = torch.cuda.max_memory_reserved() / GB
            result["peak_mem_kind"] = "torch.cuda.max_memory_allocated"
        else:
            import resource

            result["peak_mem_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB
            result["peak_mem_kind"] = "host max RSS of the process (CPU run; not reset between bases)"
        result.update(step_metrics(Path(cfg.out) / "history.jsonl", probe, result["train_s"]))
    except Exception as err:  # report it, keep going with the next base
        traceback.print_exc()
        result["error"] = f"{type(err).__name__}: {err}"
    finally:
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
        shutil.rmtree(root, ignore_errors=True)
    result["total_s"] = time.perf_counter() - t_start
    return result


def _params(billions: float) -> str:
    return f"{billions:.2f} B" if billions >= 0.1 else f"{billions * 1e3:.2f} M"


def report(base: Base, r: dict[str, Any], sizes: Sizes) -> None:
    print(f"\n== {base.name} ({_params(r.get('params_b', float('nan')))} params) ==")
    if "step_time_s" not in r:
        print(f"FAILED: {r.get('error', 'no step was logged')}")
        return
    print(
        f"LoRA r{LORA_R} all-linear ({r['trained_lora_m']:.1f} M trained), {PROMPTS_PER_STEP} prompts x G={GROUP}, "
        f"prompt {r['prompt_tokens']} tokens ({r['audio_tokens_per_clip']} audio), max_new_tokens "
        f"{sizes.max_new_tokens}, gradient checkpointing, bf16 autocast"
    )
    print(
        f"time: build {r['build_s']:.1f} s, save bf16 ({r['saved_gb']:.1f} GB) {r['save_s']:.1f} s, "
        f"train() {r['train_s']:.1f} s = load_policy {r['load_s']:.1f} s + steps "
        f"{sum(r['step_time_s']):.1f} s + rest (prepare, merged `final` save) {r['rest_of_train_s']:.1f} s; "
        f"base total {r['total_s']:.1f} s"
    )
    for i, step_s in enumerate(r["step_time_s"]):
        roll = (
            f"rollout {r['rollout_s'][i]:.2f} s, {r['rollout_tokens'][i]:.0f} tokens, "
            f"{r['rollout_tokens_per_s'][i]:.1f} tokens/s"
            if i < len(r["rollout_s"])
            else "rollout not timed (policy.sample was not called)"
        )
        print(
            f"step {i + 1}: {step_s:.2f} s | {roll} | mean completion {r['mean_completion_tokens'][i]:.1f} "
            f"tokens | loss {r['loss'][i]:.4f}"
        )
    print(
        f"mean of steps 2-{len(r['step_time_s'])}: step {r['mean_step_time_s']:.2f} s, rollout "
        f"{r['mean_rollout_tokens_per_s']:.1f} tokens/s (rollout = inference.sample, prefill + decode, timed by "
        "wrapping policy.sample; the trainer logs only step_time)"
    )
    print(
        f"peak memory ({r['peak_mem_kind']}): {r['peak_mem_gb']:.2f} GB"
        + (
            f" (reserved {r['peak_reserved_gb']:.2f} GB; allocated before train() "
            f"{r['mem_before_train_gb']:.2f} GB)"
            if "peak_reserved_gb" in r
            else ""
        )
    )
    terms = ", ".join(f"{k} {v:.2f}" for k, v in r["predicted_terms_gb"].items())
    print(
        f"predicted, README memory model (memory_7b.py, 1 GPU, LoRA r{LORA_R}, g={GROUP}, "
        f"{r['predicted_prompt_tokens']}-token prompt + {sizes.max_new_tokens}): {r['predicted_mem_gb']:.2f} GB "
        f"({terms})"
    )
    print(
        f"predicted, as the trainer runs it (prompt repeated per completion under gradient "
        f"checkpointing, rollout KV of {PROMPTS_PER_STEP * GROUP} rows): {r['predicted_mem_as_run_gb']:.2f} GB"
    )
    if "error" in r:
        print(f"FAILED after the steps above: {r['error']}")


def _finite(x: Any) -> Any:
    """JSON-safe: non-finite floats become None."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_finite(v) for v in x]
    return x


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (runs on CPU): the same code path")
    ap.add_argument("--models", default=",".join(BASES), help=f"comma-separated subset of {list(BASES)}")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument(
        "--workdir", default=None, help="folder for the saved model and the run (default: see doc)"
    )
    ap.add_argument("--budget-s", type=float, default=590.0, help="skip a base that would end past this")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    if bad := [k for k in keys if k not in BASES]:
        ap.error(f"unknown model(s) {bad}; choose from {list(BASES)}")
    if not args.tiny and not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device found; this check needs one GPU (use --tiny for the CPU smoke run)",
            flush=True,
        )
        return 2
    sizes = TINY if args.tiny else FULL
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    import transformers

    summary: dict[str, Any] = {
        "mode": "tiny" if sizes.tiny else "full",
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "steps": args.steps,
        "prompts_per_step": PROMPTS_PER_STEP,
        "num_generations": GROUP,
        "max_new_tokens": sizes.max_new_tokens,
        "clip_seconds": sizes.clip_seconds,
        "models": {},
    }
    print(f"gpu_check ({summary['mode']}) on {summary['device']}: {', '.join(keys)}", flush=True)
    out_dir = os.environ.get("OUT")
    keep = (
        "name",
        "params_b",
        "trained_lora_m",
        "prompt_tokens",
        "step_time_s",
        "mean_step_time_s",
        "rollout_s",
        "rollout_tokens_per_s",
        "mean_rollout_tokens_per_s",
        "mean_completion_tokens",
        "peak_mem_gb",
        "peak_mem_kind",
        "peak_reserved_gb",
        "mem_before_train_gb",
        "predicted_mem_gb",
        "predicted_mem_as_run_gb",
        "build_s",
        "save_s",
        "saved_gb",
        "train_s",
        "load_s",
        "rest_of_train_s",
        "total_s",
        "error",
        "skipped",
    )
    first_s = None
    for key in keys:
        elapsed = time.perf_counter() - t_start
        if first_s is not None and elapsed + first_s > args.budget_s:
            msg = (
                f"skipped: {elapsed:.0f} s elapsed + ~{first_s:.0f} s for this base > --budget-s "
                f"{args.budget_s:.0f}; run it alone with --models {key}"
            )
            print(f"\n== {BASES[key].name} ==\n{msg}", flush=True)
            summary["models"][key] = {"name": BASES[key].name, "skipped": msg}
            continue
        r = run_base(BASES[key], sizes, args.steps, device, args.workdir)
        first_s = first_s or r["total_s"]
        report(BASES[key], r, sizes)
        summary["models"][key] = {k: r[k] for k in keep if k in r}
        summary["wall_s"] = time.perf_counter() - t_start
        if out_dir:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            (Path(out_dir) / "gpu_check.json").write_text(json.dumps(_finite(summary), indent=1))
    summary["wall_s"] = time.perf_counter() - t_start
    if out_dir:
        (Path(out_dir) / "gpu_check.json").write_text(json.dumps(_finite(summary), indent=1))
    print(f"\ntotal wall time {summary['wall_s']:.1f} s", flush=True)
    print(json.dumps(_finite(summary)), flush=True)
    failed = [k for k, v in summary["models"].items() if "error" in v or "skipped" in v]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
