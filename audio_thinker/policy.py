"""GRPO's passes through the policy, and how a step's batch is split over processes.

* ``process_share``: each process's rows of the global B·G completions (whole groups, or an equal part of
  one group), and ``rollout_seed``: completion r of step s samples from its own generator, seeded by
  ``(seed, s, r)``, so N processes draw the same rollouts as one.
* ``rollout``: G completions per prompt, each clip encoded once and each prompt prefilled once.
* ``completion_logprobs``: per-token log-probs of G completions per prompt. The clip is encoded once and
  the prompt prefilled once per group; the G completions run on the shared prompt KV cache, gradients
  flowing back through it. (TRL re-encodes audio and prompt for every completion.)
* ``PolicyModule``: the module accelerate wraps; every pass above goes through its forward.
* ``setup_models``: the policy (full or LoRA), its reference, optimizer and schedule, prepared by accelerate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .inference import sample
from .models import embed_prompt, encode_audio, freeze_unused, language_model, load_policy, unwrap_peft
from .prompts import chat_prompt

if TYPE_CHECKING:
    from .grpo_config import GRPOConfig


def process_share(B: int, G: int, world: int, rank: int) -> tuple[slice, slice, int]:
    """This process's completions (rows of the global B·G batch), their prompts, and completions per prompt.

    Each process takes an equal slice: whole groups, or an equal part of one group (2 prompts x G=8 on 8 GPUs).
    """
    per_proc = B * G // world
    if (B * G) % world or (per_proc % G and G % per_proc):
        raise ValueError(
            f"{B} prompts x {G} completions cannot be split evenly over {world} processes "
            "(each needs whole groups or an equal part of one group)"
        )
    rows = slice(rank * per_proc, (rank + 1) * per_proc)
    return rows, slice(rows.start // G, (rows.stop - 1) // G + 1), min(G, per_proc)


def rollout_seed(seed: int, step: int, row: int) -> int:
    """The sampling seed of completion ``row`` of the global batch at ``step`` (independent of the split)."""
    return int(np.random.SeedSequence([seed, step, row]).generate_state(1)[0])


def prompt_batch(processor, items: Sequence[dict], mode: str, is_audio: bool):
    """Left-padded model inputs for the step's prompts (with audio features for an audio LM)."""
    texts = [chat_prompt(processor, it["question"], it["choices"], mode) for it in items]
    if not is_audio:
        return processor(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    return processor(
        text=texts,
        audio=[it["audio"] for it in items],
        sampling_rate=processor.feature_extractor.sampling_rate,
        return_tensors="pt",
        padding=True,
    )


def rollout(
    policy,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    input_features: torch.Tensor | None,
    feature_attention_mask: torch.Tensor | None,
    *,
    group: int,
    generators: Sequence[torch.Generator],
    eos_ids: Sequence[int],
    pad_id: int,
    max_new_tokens: int,
    temperature: float,
    all_done: Callable[[bool], bool] | None = None,
) -> torch.Tensor:
    """Sample ``group`` completions per prompt: (B·group, T) token ids, pad after each row's eos.

    Each clip is encoded once and each prompt prefilled once (:func:`~audio_thinker.inference.sample`).
    ``all_done`` (see :func:`all_processes_done`) keeps every process stepping until all are done.
    """
    feats = encode_audio(policy, input_features, feature_attention_mask) if input_features is not None else []
    cols = sample(
        policy,
        input_ids,
        attention_mask,
        feats,
        eos_ids=eos_ids,
        pad_id=pad_id,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        group=group,
        generator=generators,
        all_done=all_done,
    )
    return torch.stack(list(cols), 1)


def all_processes_done(device: torch.device) -> Callable[[bool], bool]:
    """An all-reduce of "this process's rows are done" over the processes (True when all are).

    With sharded parameters (ZeRO-3, FSDP) every forward all-gathers them, so a process whose completions
    ended early must keep stepping (feeding pad) until every process is done, or the collectives go out of
    step and the run hangs; transformers' ``generate(synced_gpus=True)`` does the same.
    """
    import torch.distributed as dist

    def done(local: bool) -> bool:
        flag = torch.tensor([int(local)], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    return done


class PolicyModule(torch.nn.Module):
    """The module accelerate wraps (DDP, FSDP, DeepSpeed): ``module(fn, *args)`` runs ``fn(policy, *args)``.

    Every use of the policy in the loop (rollout, old/reference and policy log-probs) goes through this
    forward, so a wrapper that gathers sharded parameters in its forward hooks (FSDP2's root, ZeRO-3)
    sees one call per use, the same number on every process.
    """

    def __init__(self, policy):
        super().__init__()
        self.policy = policy
        # FSDP's transformer-based wrapping reads the layer classes to shard from here
        self._no_split_modules = getattr(unwrap_peft(policy), "_no_split_modules", None)

    def forward(self, fn: Callable, *args, **kwargs):
        return fn(self.policy, *args, **kwargs)


def completion_logprobs(
    model,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    input_features: torch.Tensor | None,
    feature_attention_mask: torch.Tensor | None,
    completion_ids: torch.Tensor,
    group: int,
    temperature: float = 1.0,
    *,
    shared_prefix: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs and entropies (B·G, T) of ``completion_ids`` (B·G, T) after B left-padded prompts.

    ``shared_prefix`` prefills each prompt once and expands its KV cache to the G completions (the
    gradient flows back through the cache); without it, each completion is run with a copy of its
    prompt (the textbook way, and the fallback under gradient checkpointing). Both give the same numbers.
    """
    model = unwrap_peft(model)
    if input_features is None:  # a text-only causal LM
        prompt_embeds = model.get_input_embeddings()(prompt_ids)
    else:
        feats = encode_audio(model, input_features, feature_attention_mask)  # once per clip
        prompt_embeds = embed_prompt(model, prompt_ids, feats)
    positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
    lm = language_model(model)
    comp_embeds = model.get_input_embeddings()(completion_ids)
    full_mask = torch.cat([prompt_mask.repeat_interleave(group, 0), torch.ones_like(completion_ids)], 1)
    comp_pos = (
        positions[:, -1:].repeat_interleave(group, 0)
        + 1
        + torch.arange(completion_ids.shape[1], device=completion_ids.device)
    )
    if shared_prefix:
        out = lm(
            inputs_embeds=prompt_embeds, attention_mask=prompt_mask, position_ids=positions, use_cache=True
        )
        cache = out.past_key_values
        cache.batch_repeat_interleave(group)
        last = out.last_hidden_state[:, -1:].repeat_interleave(group, 0)
        hidden = lm(
            inputs_embeds=comp_embeds,
            attention_mask=full_mask,
            position_ids=comp_pos,
            past_key_values=cache,
            use_cache=True,
        ).last_hidden_state
        hidden = torch.cat([last, hidden[:, :-1]], 1)
    else:
        embeds = torch.cat([prompt_embeds.repeat_interleave(group, 0), comp_embeds], 1)
        pos = torch.cat([positions.repeat_interleave(group, 0), comp_pos], 1)
        h = lm(
            inputs_embeds=embeds, attention_mask=full_mask, position_ids=pos, use_cache=False
        ).last_hidden_state
        hidden = h[:, prompt_ids.shape[1] - 1 : -1]
    logits = model.lm_head(hidden).float() / temperature
    logp_all = torch.log_softmax(logits, -1)
    logp = logp_all.gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
    with torch.no_grad():  # logged only: no second vocab-sized tensor kept for backward
        entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


@dataclass
class Models:
    """What setup builds: the wrapped policy, its optimizer and schedule, the reference, the tokenizer."""

    module: Any  # PolicyModule, as accelerate prepared it
    unwrapped: Any  # the policy inside (PEFT model with LoRA)
    params: list[torch.nn.Parameter]  # what gets clipped (FSDP2: DTensors)
    optimizer: Any
    scheduler: Any
    ref_model: Any  # full fine-tuning with β > 0; LoRA uses the base with the adapter off
    processor: Any
    tok: Any
    is_audio: bool
    eos_ids: list[int]


def setup_models(cfg: GRPOConfig, accelerator, model_path: str) -> Models:
    """Policy (LoRA or full), reference, optimizer and schedule, prepared by accelerate."""
    from transformers import get_scheduler

    # LoRA under bf16: the frozen base in bf16 (PEFT keeps the adapters in fp32); full fine-tuning keeps
    # fp32 master weights and runs under autocast
    base_dtype = torch.bfloat16 if cfg.bf16 and cfg.lora else torch.float32
    policy, processor = load_policy(model_path, dtype=base_dtype, allow_text=True)
    is_audio = hasattr(processor, "feature_extractor")  # else a text-only causal LM and its tokenizer
    tok = processor.tokenizer if is_audio else processor
    tok.padding_side = "left"
    if cfg.gradient_checkpointing:
        policy.gradient_checkpointing_enable()
    ref_model = None
    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        policy = get_peft_model(
            policy,
            LoraConfig(
                r=cfg.lora_r,
                lora_alpha=cfg.lora_alpha,
                lora_dropout=cfg.lora_dropout,
                target_modules=cfg.lora_target_modules,
                task_type="CAUSAL_LM",
            ),
        )
    elif cfg.beta:
        ref_model, _ = load_policy(  # full fine-tuning: a frozen copy is the reference
            model_path, dtype=torch.bfloat16 if cfg.bf16 else torch.float32, allow_text=True
        )
        ref_model.requires_grad_(False)
    freeze_unused(policy)  # Qwen2.5-Omni's vision encoder: never run on audio
    policy.train()
    optimizer = torch.optim.AdamW(
        [p for p in policy.parameters() if p.requires_grad],
        lr=cfg.learning_rate,
        betas=tuple(cfg.adam_betas),
        weight_decay=cfg.weight_decay,
    )
    scheduler = get_scheduler(
        cfg.lr_scheduler,
        optimizer,
        num_warmup_steps=cfg.warmup_steps * cfg.num_iterations,
        num_training_steps=cfg.max_steps * cfg.num_iterations,
    )
    module = PolicyModule(policy)
    if accelerator.state.deepspeed_plugin is not None:  # no dataloader to size DeepSpeed's micro-batch from
        accelerator.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = 1
    module, optimizer, scheduler = accelerator.prepare(module, optimizer, scheduler)
    if ref_model is not None:
        ref_model = ref_model.to(accelerator.device)
    eos = unwrap_peft(policy).generation_config.eos_token_id or tok.eos_token_id
    return Models(
        module=module,
        unwrapped=accelerator.unwrap_model(module).policy,
        # the parameters the prepared module owns (FSDP2 replaces them with DTensors): what gets clipped
        params=[p for p in module.parameters() if p.requires_grad],
        optimizer=optimizer,
        scheduler=scheduler,
        ref_model=ref_model,
        processor=processor,
        tok=tok,
        is_audio=is_audio,
        eos_ids=eos if isinstance(eos, list) else [eos],
    )
