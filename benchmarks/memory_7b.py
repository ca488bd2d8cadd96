"""GPU memory per device for GRPO on the 7B bases under ZeRO-3 on 8 GPUs (and LoRA under DDP), from exact
parameter counts: the real architectures are built on the meta device (no weights, no download) from the
hub configs' shapes, and LoRA r=8 on every linear layer (PEFT's "all-linear": all but the LM head) is counted
layer by layer. Prints a markdown table.

    python benchmarks/memory_7b.py

Bytes per parameter (mixed precision, AdamW, ZeRO paper's accounting): trained parameters 2 (bf16) + 2
(bf16 gradients) + 4 (fp32 master) + 8 (Adam m, v) = 16; frozen parameters 2. ZeRO-3 divides all of it by
the number of GPUs; DDP keeps a full copy on each. The reference for the KL term is the base with the
adapter disabled under LoRA (no copy) and a frozen bf16 copy, replicated on each process, under full
fine-tuning. Activations: one micro-batch (1 prompt x g completions) with gradient checkpointing.
"""

from __future__ import annotations

import torch
from transformers import (
    Qwen2_5OmniThinkerConfig,
    Qwen2_5OmniThinkerForConditionalGeneration,
    Qwen2AudioConfig,
    Qwen2AudioForConditionalGeneration,
)

GPUS = 8
GB = 1e9
LORA_R = 8
# the paper's recipe (configs/qwen2-audio-7b.yaml): 2 prompts x G=8 per step over 8 GPUs -> g=2 per GPU
G_PER_GPU, PROMPT_TOKENS, COMPLETION_TOKENS = 2, 750 + 120, 512  # 30-s clip = 750 audio tokens, + text

# shapes from the hub configs (Qwen/Qwen2-Audio-7B-Instruct, Qwen/Qwen2.5-Omni-7B thinker)
QWEN2_AUDIO = Qwen2AudioConfig(
    audio_config=dict(
        model_type="qwen2_audio_encoder",
        num_mel_bins=128,
        encoder_layers=32,
        encoder_attention_heads=20,
        encoder_ffn_dim=5120,
        d_model=1280,
        max_source_positions=1500,
    ),
    text_config=dict(
        model_type="qwen2",
        vocab_size=156032,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=32,
        max_position_embeddings=8192,
        tie_word_embeddings=False,
    ),
    audio_token_index=151646,
)
OMNI_THINKER = Qwen2_5OmniThinkerConfig(
    audio_config=dict(
        num_mel_bins=128,
        encoder_layers=32,
        encoder_attention_heads=20,
        encoder_ffn_dim=5120,
        d_model=1280,
        output_dim=3584,
    ),
    vision_config=dict(
        depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584
    ),
    text_config=dict(
        vocab_size=152064,
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
    ),
    tie_word_embeddings=False,
)


def counts(config, cls, lora_r: int = LORA_R) -> dict[str, int]:
    """Exact parameter counts on the meta device: all, the audio-path ones (no vision tower), LoRA r."""
    with torch.device("meta"):
        model = cls(config)
    total = sum(p.numel() for p in model.parameters())
    vision = sum(p.numel() for n, p in model.named_parameters() if ".visual." in f".{n}")
    lora = sum(
        lora_r * (m.in_features + m.out_features)
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and n != "lm_head" and ".visual." not in f".{n}"
    )
    lora_lm = sum(
        lora_r * (m.in_features + m.out_features)
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and ".language_model." in f".{n}."
    )
    text = config.get_text_config()
    return {
        "total": total,
        "vision": vision,
        "lora": lora,
        "lora_lm": lora_lm,
        "layers": text.num_hidden_layers,
        "hidden": text.hidden_size,
        "intermediate": text.intermediate_size,
        "vocab": text.vocab_size,
        "kv": text.num_key_value_heads * (text.hidden_size // text.num_attention_heads),
    }


def activations(
    c: dict,
    g: int = G_PER_GPU,
    prompt_tokens: int = PROMPT_TOKENS,
    completion_tokens: int = COMPLETION_TOKENS,
) -> float:
    """One micro-batch, gradient checkpointing: stored layer inputs, one layer's recompute, fp32 logits."""
    tokens = prompt_tokens + g * completion_tokens  # the prompt once (shared prefix) + completions
    stored = c["layers"] * tokens * c["hidden"] * 2
    one_layer = (
        tokens * (4 * c["hidden"] + 3 * c["intermediate"]) * 2 * 2
    )  # fwd + bwd of the recomputed layer
    logits = g * completion_tokens * c["vocab"] * 4 * 3 * 2  # logits, log-softmax, probs; + grads
    return (stored + one_layer + logits) / GB


def kv_cache(
    c: dict,
    g: int = G_PER_GPU,
    prompt_tokens: int = PROMPT_TOKENS,
    completion_tokens: int = COMPLETION_TOKENS,
) -> float:
    """Rollout KV cache (bf16) of g completions of one prompt."""
    return c["layers"] * 2 * c["kv"] * 2 * g * (prompt_tokens + completion_tokens) / GB


def breakdown(c: dict, setup: str, act: float, gpus: int = GPUS) -> dict[str, float]:
    """GB per GPU by term for ``setup`` ("full FT, ZeRO-3" | "LoRA r8, ZeRO-3" | "LoRA r8, DDP") on ``gpus``
    GPUs, given ``act`` = activations + KV in GB; the table's columns. DDP on 1 GPU is a single-GPU run."""
    psi, trained_full = c["total"], c["total"] - c["vision"]
    div, frozen, trained, ref = {
        # (divisor for everything, frozen params, trained params, reference bytes)
        "full FT, ZeRO-3": (gpus, c["vision"], trained_full, 2 * psi),
        "LoRA r8, ZeRO-3": (gpus, psi, c["lora"], 0),
        "LoRA r8, DDP": (1, psi, c["lora"], 0),
    }[setup]
    out = {
        "params": psi,
        "trained": trained,
        "weights": (2 * (frozen + trained)) / div / GB,
        "grads": 2 * trained / div / GB,
        "master": 4 * trained / div / GB,
        "adam": 8 * trained / div / GB,
        "reference": ref / GB,
        "activations_kv": act,
    }
    out["total"] = sum(v for k, v in out.items() if k not in ("params", "trained"))
    return out


def table() -> str:
    rows = [
        "| base | setup | params (all / trained) | weights | grads | fp32 master | Adam m, v | reference | "
        "activations + KV | total per GPU |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, config, cls in (
        ("Qwen2-Audio-7B-Instruct", QWEN2_AUDIO, Qwen2AudioForConditionalGeneration),
        ("Qwen2.5-Omni-7B thinker", OMNI_THINKER, Qwen2_5OmniThinkerForConditionalGeneration),
    ):
        c = counts(config, cls)
        act = activations(c) + kv_cache(c)
        for setup in ("full FT, ZeRO-3", "LoRA r8, ZeRO-3", "LoRA r8, DDP"):
            b = breakdown(c, setup, act)
            rows.append(
                f"| {name} | {setup} x{GPUS} | {b['params'] / 1e9:.2f} B / {b['trained'] / 1e6:,.1f} M | "
                f"{b['weights']:.2f} | {b['grads']:.2f} | {b['master']:.2f} | {b['adam']:.2f} | "
                f"{b['reference']:.2f} | {act:.2f} | **{b['total']:.1f} GB** |"
            )
        rows.append(
            f"| {name} | LoRA r8 count | LM only {c['lora_lm']:,}; + audio encoder and projector "
            f"{c['lora'] - c['lora_lm']:,} = {c['lora']:,} | | | | | | | |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
    print(
        f"\nGB = 1e9 bytes. Activations: 1 prompt ({PROMPT_TOKENS} tokens) + {G_PER_GPU} x {COMPLETION_TOKENS} "
        "completion tokens per GPU, gradient checkpointing; ZeRO-3 also holds gathered layers in flight "
        "(stage3_max_live_parameters, default 1e9 params = 2 GB bf16) and allocator slack."
    )
