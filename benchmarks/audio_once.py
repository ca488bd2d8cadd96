"""GRPO log-prob step on 30-s audio: encode each clip once per group against once per completion.

    python benchmarks/audio_once.py [--prompts 2] [--group 8] [--length 16] [--reps 3] [--threads N]

A tiny ``Qwen2AudioForConditionalGeneration`` (the shipped tiny recipe, but with a Whisper window of 30 s:
3000 mel frames -> 1500 encoder positions -> 750 audio tokens per clip) scores P prompts x G completions of
L tokens, forward + GRPO loss + backward, two ways:

(a) once per group: ``policy.completion_logprobs(model, P prompt rows, P clips, P*G completions, group=G)``, which
    runs the audio encoder on each clip once and prefills each prompt once, then runs the G completions on the
    shared prompt KV cache (the project's trainer);
(b) per completion: the same completions with the prompt rows and clips repeated G times and ``group=1``, so
    every clip is encoded and every prompt prefilled G times (what a trainer without an audio-aware path does).

Both must give the same log-probs (checked first). The last line is ``speedup_audio_once: X`` = median (b) /
median (a), warm-up excluded.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from audio_thinker import grpo, policy, synth  # noqa: E402
from audio_thinker.models import (  # noqa: E402
    SPECIAL_TOKENS,
    build_processor,
    build_tiny_model,
    build_tokenizer,
)
from audio_thinker.prompts import chat_prompt  # noqa: E402
from audio_thinker.warmstart import tokenizer_corpus  # noqa: E402

CLIP_SECONDS = 30


def build_30s_model(seed: int):
    """The tiny audio LM recipe with a 30-s encoder window (1500 positions, 750 audio tokens)."""
    tok = build_tokenizer(tokenizer_corpus(seed=1, n_per_task=50))
    return build_tiny_model(tok, seed=seed, clip_seconds=CLIP_SECONDS), build_processor(tok, CLIP_SECONDS)


def make_batch(processor, n_prompts: int, group: int, length: int, seed: int):
    """P synth-aqa think prompts with their clips looped to 30 s, and P*G random completions of L tokens."""
    tok = processor.tokenizer
    sr = processor.feature_extractor.sampling_rate
    tasks = list(synth.TASKS)
    texts, audios = [], []
    for i in range(n_prompts):
        item, audio = synth.generate_item(tasks[i % len(tasks)], seed, i, "bench")
        audios.append(np.resize(audio, CLIP_SECONDS * sr).astype(np.float32))
        texts.append(chat_prompt(processor, item["question"], item["choices"], "think"))
    tok.padding_side = "left"
    enc = processor(text=texts, audio=audios, sampling_rate=sr, return_tensors="pt", padding=True)
    special = {tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    allowed = torch.tensor([t for t in range(len(tok)) if t not in special])
    gen = torch.Generator().manual_seed(seed)
    completions = allowed[torch.randint(len(allowed), (n_prompts * group, length), generator=gen)]
    advantages = torch.randn(n_prompts * group, generator=gen)
    return enc, completions, advantages


class EncoderCounter:
    """Counts audio-tower calls and the clips they encode (a forward hook)."""

    def __init__(self, tower):
        self.calls = self.clips = 0
        self.handle = tower.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output):
        feats = args[0] if args else kwargs["input_features"]
        self.calls += 1
        self.clips += int(feats.shape[0])

    def reset(self) -> None:
        self.calls = self.clips = 0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=2, help="P: prompts (clips)")
    ap.add_argument("--group", type=int, default=8, help="G: completions per prompt")
    ap.add_argument("--length", type=int, default=16, help="L: completion length (tokens)")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions of each (after --warmup)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed repetitions of each first")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    P, G, L = args.prompts, args.group, args.length
    dev = torch.device(args.device)

    model, processor = build_30s_model(args.seed)
    model.to(dev)
    enc, comp, adv = make_batch(processor, P, G, L, args.seed)
    ids, mask = enc["input_ids"].to(dev), enc["attention_mask"].to(dev)
    feats, fmask = enc["input_features"].to(dev), enc["feature_attention_mask"].to(dev)
    comp, adv = comp.to(dev), adv.to(dev)
    comp_mask = torch.ones_like(comp)
    n_audio = int((ids[0] == model.config.audio_token_id).sum())
    n_params = sum(p.numel() for p in model.parameters())
    print(
        f"audio_once: P={P} prompts x G={G} completions of L={L} tokens, {CLIP_SECONDS}-s clips "
        f"({feats.shape[-1]} mel frames -> {n_audio} audio tokens), prompt length {ids.shape[1]} tokens, "
        f"threads={torch.get_num_threads()}, device={dev.type}, torch {torch.__version__}"
    )
    print(f"model: tiny Qwen2AudioForConditionalGeneration, {n_params / 1e6:.2f}M parameters (random init)")

    rep = lambda x: x.repeat_interleave(G, 0)  # noqa: E731
    variants = {
        "once per group": (ids, mask, feats, fmask, comp, G),
        "per completion": (rep(ids), rep(mask), rep(feats), rep(fmask), comp, 1),
    }
    counter = EncoderCounter(model.model.audio_tower)

    # 1. same numbers
    model.eval()
    logps, counts = {}, {}
    with torch.no_grad():
        for name, inputs in variants.items():
            counter.reset()
            logps[name] = policy.completion_logprobs(model, *inputs)[0]
            counts[name] = (counter.calls, counter.clips)
    a, b = logps.values()
    diff = float((a - b).abs().max())
    if not torch.allclose(a, b, atol=1e-4, rtol=1e-4):
        raise SystemExit(f"log-probs differ between the two ways (max abs diff {diff:.2e})")
    print(f"check: log-probs of (a) and (b) allclose (max abs diff {diff:.1e})")
    for name, (calls, clips) in counts.items():
        print(f"  {name}: {calls} audio-encoder call(s), {clips} clip(s) encoded per step")

    # 2. timing: forward + GRPO loss + backward, the two ways interleaved
    model.train()
    times: dict[str, list[float]] = {name: [] for name in variants}

    def step(inputs) -> float:
        model.zero_grad(set_to_none=True)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        logp, _ = policy.completion_logprobs(model, *inputs)
        loss, _ = grpo.grpo_loss(
            logp,
            logp.detach(),
            None,
            adv,
            comp_mask,
            beta=0.0,
            epsilon=0.2,
            epsilon_high=None,
            loss_type="grpo",
            denom=P * G,
        )
        loss.backward()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    for r in range(args.warmup + args.reps):
        for name, inputs in variants.items():
            t = step(inputs)
            if r >= args.warmup:
                times[name].append(t)
            tag = "warm-up" if r < args.warmup else f"rep {r - args.warmup + 1}"
            print(f"  {tag:>8} {name:>15}: {t:.3f} s", flush=True)
    counter.handle.remove()

    med = {name: statistics.median(ts) for name, ts in times.items()}
    print()
    for key, name in (("a", "once per group"), ("b", "per completion")):
        calls, clips = counts[name]
        print(
            f"({key}) {name:>15}: median {med[name]:.3f} s over {args.reps} reps "
            f"[{', '.join(f'{t:.3f}' for t in times[name])}], {clips} clips encoded"
        )
    print(f"speedup_audio_once: {med['per completion'] / med['once per group']:.2f}")


if __name__ == "__main__":
    main()
