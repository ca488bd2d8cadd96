"""GRPO with the Audio-Thinker rewards, on accelerate. Reads top to bottom:

1. ``GRPOConfig``: every knob, with the paper's values where it gives them.
2. Rewards on the *global* batch (``score_completions``): format, ATAR or plain accuracy, the judge's
   consistency and think-quality, combined by Eq. 7; then ``group_advantages``.
3. ``completion_logprobs``: per-token log-probs of G completions per prompt. The clip is encoded once and
   the prompt prefilled once per group; the G completions run on the shared prompt KV cache, gradients
   flowing back through it. (TRL re-encodes audio and prompt for every completion.)
4. ``grpo_loss``: clipped ratio objective + β·KL(k3) with loss types grpo | dr_grpo | dapo.
5. ``train``: rollout → rewards → advantages → μ optimizer updates → logs, completions.jsonl, checkpoints.

Data and sampling are pure functions of ``(seed, step)``, so ``--resume`` from a checkpoint (model or
adapter, optimizer, scheduler, RNG) continues exactly. Each completion samples from its own generator, seeded
by ``(seed, step, its index in the global batch)``, so N processes draw the same rollouts as one: each takes
an equal slice of the B·G completions (whole groups, or equal parts of one group).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import synth
from .inference import completion_mask, decode_completion, sample
from .judges import JudgeRequest, make_judge
from .models import (
    default_model_path,
    embed_prompt,
    encode_audio,
    freeze_unused,
    language_model,
    load_policy,
    unwrap_peft,
)
from .prompts import chat_prompt
from .rewards import (
    atar,
    consistency_gate,
    fill_no_think_quality,
    format_reward,
    match_choice,
    parse_completion,
    shows_think,
    total_reward,
)

# reward set -> (prompt mode, uses ATAR, uses R_c, uses R_t); Table 1 of the paper
REWARD_SETS = {
    "grpo": ("think", False, False, False),  # R1-AQA: accuracy + format, think prompt
    "grpo-nothink": ("no-think", False, False, False),
    "atar": ("adaptive", True, False, False),
    "atar+rc": ("adaptive", True, True, False),
    "full": ("adaptive", True, True, True),  # Audio-Thinker
}
LOSS_TYPES = ("grpo", "dr_grpo", "dapo")
SCALE_REWARDS = ("group", "batch", "none")
ROLLOUTS = ("hf", "vllm")


@dataclass
class GRPOConfig:
    """GRPO and Audio-Thinker settings. Paper values: lr 1e-6, G 8, β 0.04, T 1.0, 1000 steps, LoRA r8 α32."""

    out: str = "runs/grpo"
    model: str | None = None  # default: $AUDIO_THINKER_MODEL or the shipped tiny model
    data: str = "synth"  # "synth" (fresh synth-aqa items) or an MMAU-layout JSON file
    data_seed: int = 7000  # synth-aqa seed for training items (evaluation uses other seeds)
    reward_set: str = "full"
    judge: str = "oracle"
    judge_model: str | None = None  # path for the llm / learned judges
    max_steps: int = 120
    prompts_per_step: int = 16  # per optimizer step, over all processes
    num_generations: int = 8  # G
    micro_batch_prompts: int = 4  # prompts (x G completions) per forward/backward
    max_new_tokens: int = 128
    temperature: float = 1.0
    learning_rate: float = 2e-5
    lr_scheduler: str = "constant_with_warmup"
    warmup_steps: int = 5
    weight_decay: float = 0.0
    adam_betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    max_grad_norm: float = 1.0
    beta: float = 0.04
    epsilon: float = 0.2
    epsilon_high: float | None = None  # DAPO clip-higher; None = epsilon
    loss_type: str = "grpo"
    scale_rewards: str = "group"
    num_iterations: int = 1  # μ
    w_consistency: float = 0.5
    w_format: float | None = None  # None: 0.5 with ATAR (Eq. 7), 1 in the R1-AQA sets (grpo, grpo-nothink)
    w_quality: float = 1.0
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str | list[str] = "all-linear"
    bf16: bool = False
    gradient_checkpointing: bool = False
    seed: int = 0
    save_every: int = 50
    log_with: str = "tensorboard"
    eval_per_task: int = 20
    eval_seed: int = 90210
    eval_modes: list[str] = field(default_factory=lambda: ["adaptive", "think"])
    resume: str | None = None  # a checkpoint folder, or "latest"
    rollout: str = "hf"  # hf (the KV-cached sampler here) | vllm (GPU only: pip install '.[vllm]')

    def validate(self) -> None:
        if self.reward_set not in REWARD_SETS:
            raise ValueError(f"reward_set {self.reward_set!r} unknown; choose from {list(REWARD_SETS)}")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type {self.loss_type!r} unknown; choose from {list(LOSS_TYPES)}")
        if self.scale_rewards not in SCALE_REWARDS:
            raise ValueError(
                f"scale_rewards {self.scale_rewards!r} unknown; choose from {list(SCALE_REWARDS)}"
            )
        if self.num_generations < 2:
            raise ValueError("num_generations must be at least 2 (advantages are relative within a group)")
        if self.judge == "oracle" and self.judge_model:
            raise ValueError(
                "the oracle judge takes no judge_model (it reads the items' ground-truth events)"
            )
        if self.num_iterations < 1 or self.max_steps < 1 or self.prompts_per_step < 1:
            raise ValueError("num_iterations, max_steps and prompts_per_step must be positive")
        if self.rollout not in ROLLOUTS:
            raise ValueError(f"rollout {self.rollout!r} unknown; choose from {list(ROLLOUTS)}")

    @property
    def prompt_mode(self) -> str:
        return REWARD_SETS[self.reward_set][0]


# --------------------------------------------------------------------------------------------------
# 2. Rewards and advantages


def _is_think(parsed, completion: str) -> bool:
    return parsed.mode == "think" or (parsed.mode == "invalid" and shows_think(completion))


def judge_completions(
    completions: Sequence[str], items: Sequence[dict], judge
) -> list[tuple[float, float, bool] | None]:
    """The judge's (consistent, quality, failed) for each think completion with think text, else None.

    Each process judges its own completions; the loop gathers the verdicts, so the judge's work is split
    over the processes while R_c / R_t stay computed on the global batch.
    """
    parsed = [parse_completion(c) for c in completions]
    judged = [
        i for i, (p, c) in enumerate(zip(parsed, completions, strict=True)) if _is_think(p, c) and p.think
    ]
    requests = [
        JudgeRequest(
            items[i]["question"], items[i]["choices"], parsed[i].think, parsed[i].answer or "", items[i]
        )
        for i in judged
    ]
    verdicts = judge.score_batch(requests) if requests else []
    out: list[tuple[float, float, bool] | None] = [None] * len(completions)
    for i, v in zip(judged, verdicts, strict=True):
        out[i] = (float(v.consistent), float(v.quality), bool(v.failed))
    return out


def score_completions(
    completions: Sequence[str],
    items: Sequence[dict],
    *,
    cfg: GRPOConfig,
    step: int,
    judge=None,
    verdicts: Sequence[tuple[float, float, bool] | None] | None = None,
) -> dict[str, list]:
    """All reward terms for the global batch (ATAR's λ and R_t's mean are batch statistics).

    ``verdicts`` are :func:`judge_completions`' for these completions (gathered from the processes);
    without them ``judge`` is asked here.
    """
    _, use_atar, use_rc, use_rt = REWARD_SETS[cfg.reward_set]
    parsed = [parse_completion(c) for c in completions]
    r_f = [format_reward(c) for c in completions]
    think = [_is_think(p, c) for p, c in zip(parsed, completions, strict=True)]
    correct = [
        p.mode != "invalid" and match_choice(p.answer, it["answer"], it["choices"])
        for p, it in zip(parsed, items, strict=True)
    ]
    if not (use_rc or use_rt):
        verdicts = [None] * len(completions)
    elif verdicts is None:
        verdicts = judge_completions(completions, items, judge)
    raw_c: list[float | None] = [None] * len(completions)
    raw_t: list[float | None] = [None] * len(completions)
    for i, v in enumerate(verdicts):
        if v is not None:
            raw_c[i], raw_t[i] = v[0], v[1]
    for i in range(len(completions)):  # think completions the judge did not see (no think text): 0
        if think[i] and raw_c[i] is None:
            raw_c[i], raw_t[i] = 0.0, 0.0
    r_c = consistency_gate(raw_c, correct, think)
    r_t = fill_no_think_quality(raw_t, think)
    r_a = atar(think, correct, step, cfg.max_steps) if use_atar else [float(c) for c in correct]
    w_c = cfg.w_consistency if use_rc else 0.0
    w_t = cfg.w_quality if use_rt else 0.0
    # unless set, the R1-AQA recipe (no ATAR) adds accuracy and format with weight 1, Eq. 7 weighs format 0.5
    w_f = cfg.w_format if cfg.w_format is not None else (0.5 if use_atar else 1.0)
    total = [
        total_reward(a, c, f, t, w_c=w_c, w_f=w_f, w_t=w_t)
        for a, c, f, t in zip(r_a, r_c, r_f, r_t, strict=True)
    ]
    return {
        "total": total,
        "accuracy_reward": r_a,
        "format": r_f,
        "consistency": r_c,
        "quality": r_t,
        "think": think,
        "correct": correct,
        "judge_consistent": raw_c,
        "judge_failures": sum(bool(v and v[2]) for v in verdicts),
    }


def group_advantages(
    rewards: torch.Tensor, group_size: int, scale: str = "group", eps: float = 1e-4
) -> torch.Tensor:
    """(r - mean of its group) / (std + eps); std of the group, of the whole batch, or none (Dr. GRPO)."""
    grouped = rewards.view(-1, group_size)
    centred = (grouped - grouped.mean(1, keepdim=True)).view(-1)
    if scale == "group":
        return centred / (grouped.std(1).repeat_interleave(group_size) + eps)
    if scale == "batch":
        return centred / (rewards.std() + eps)
    if scale == "none":
        return centred
    raise ValueError(f"scale_rewards {scale!r} unknown; choose from {list(SCALE_REWARDS)}")


# --------------------------------------------------------------------------------------------------
# 3. Log-probs of G completions per prompt: one encoder pass, one prompt prefill per group


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


# --------------------------------------------------------------------------------------------------
# 4. The loss


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    beta: float,
    epsilon: float,
    epsilon_high: float | None,
    loss_type: str,
    denom: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate + β·KL(k3), summed over this micro-batch and divided by ``denom``.

    ``denom`` makes micro-batches add up to the full-batch loss: the number of sequences (grpo: each
    sequence's token mean), sequences × max completion length (dr_grpo), or all completion tokens (dapo).
    """
    ratio = torch.exp(logp - old_logp)
    high = epsilon_high if epsilon_high is not None else epsilon
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + high)
    adv = advantages.unsqueeze(1)
    per_token = -torch.min(ratio * adv, clipped * adv)
    kl = None
    if ref_logp is not None and beta:
        kl = torch.exp(ref_logp - logp) - (ref_logp - logp) - 1
        per_token = per_token + beta * kl
    m = mask.to(per_token.dtype)
    if loss_type == "grpo":
        loss = ((per_token * m).sum(1) / m.sum(1).clamp(min=1)).sum() / denom
    elif loss_type in ("dr_grpo", "dapo"):
        loss = (per_token * m).sum() / denom
    else:
        raise ValueError(f"loss_type {loss_type!r} unknown; choose from {list(LOSS_TYPES)}")
    is_clipped = ((ratio < 1 - epsilon) & (adv < 0)) | ((ratio > 1 + high) & (adv > 0))
    stats = {
        "clip_ratio": (is_clipped.float() * m).sum(),
        "kl": (kl * m).sum() if kl is not None else m.new_zeros(()),
    }
    return loss, stats


def loss_denominator(loss_type: str, n_sequences: int, n_tokens: int, max_new_tokens: int) -> float:
    return {"grpo": n_sequences, "dr_grpo": n_sequences * max_new_tokens, "dapo": max(1, n_tokens)}[loss_type]


# --------------------------------------------------------------------------------------------------
# Data: a pure function of (seed, step)


def step_items(cfg: GRPOConfig, step: int, pool: list[dict] | None = None) -> list[dict]:
    """The prompts of training step ``step`` (each with its ``audio`` array)."""
    rng = np.random.default_rng([cfg.data_seed, step])
    if pool is None:
        tasks = rng.choice(list(synth.TASKS), size=cfg.prompts_per_step)
        out = []
        for i, task in enumerate(tasks):
            index = step * cfg.prompts_per_step + i
            item, audio = synth.generate_item(str(task), cfg.data_seed, index, "grpo")
            item["audio"], item["synth"] = (
                audio,
                {"task": str(task), "seed": cfg.data_seed, "index": index, "split": "grpo"},
            )
            out.append(item)
        return out
    from .audio import load_audio

    picks = rng.choice(len(pool), size=cfg.prompts_per_step, replace=len(pool) < cfg.prompts_per_step)
    return [{**pool[int(k)], "audio": load_audio(pool[int(k)]["audio_path"])} for k in picks]


# --------------------------------------------------------------------------------------------------
# 5. The loop


def train(cfg: GRPOConfig) -> dict:
    """Run GRPO; returns a summary. Writes ``out/final``, ``out/completions.jsonl``, logs and checkpoints."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import get_scheduler

    cfg.validate()
    out = Path(cfg.out)
    ckpt, start_step = resume_point(cfg)
    # one scheduler step per optimizer step: accelerate would otherwise step it once per process
    accelerator = Accelerator(
        log_with=cfg.log_with or None,
        project_dir=str(out),
        mixed_precision="bf16" if cfg.bf16 else "no",
        step_scheduler_with_optimizer=False,
    )
    set_seed(cfg.seed)
    world, rank = accelerator.num_processes, accelerator.process_index
    G, B = cfg.num_generations, cfg.prompts_per_step
    # this process: its rows of the B·G completions, its prompts, and G_local completions of each
    rows, local, G_local = process_share(B, G, world, rank)
    sharded = _is_sharded(accelerator)
    if cfg.rollout == "vllm" and sharded:
        raise ValueError(
            "--rollout vllm needs the full weights on every process; ZeRO-3 and FSDP shard them "
            "(use configs/accelerate/ddp.yaml or zero2.yaml)"
        )
    _, _, use_rc, use_rt = REWARD_SETS[cfg.reward_set]

    # model, reference, optimizer, schedule
    model_path = cfg.model or default_model_path()
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
    # the parameters the prepared module owns (FSDP2 replaces them with DTensors): what gets clipped
    params = [p for p in module.parameters() if p.requires_grad]
    unwrapped = accelerator.unwrap_model(module).policy
    if ref_model is not None:
        ref_model = ref_model.to(accelerator.device)
    judge = make_judge(cfg.judge, **({"path": cfg.judge_model} if cfg.judge_model else {}))
    pool = None if cfg.data == "synth" else _load_pool(cfg.data)
    eos = unwrap_peft(policy).generation_config.eos_token_id or tok.eos_token_id
    eos_ids = eos if isinstance(eos, list) else [eos]
    all_done = all_processes_done(accelerator.device) if sharded and world > 1 else None
    vllm = None
    if cfg.rollout == "vllm":
        from .vllm_backend import VLLMRollout, build_requests

        vllm = VLLMRollout(model_path, seed=cfg.seed, max_model_len=4096 + cfg.max_new_tokens)

    # resume: model or adapter, optimizer, scheduler, RNG; the logs are cut back to the checkpoint's step
    if ckpt is not None:
        accelerator.load_state(str(ckpt))
        accelerator.print(f"resumed from {ckpt} at step {start_step}")
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
        for name in ("history.jsonl", "completions.jsonl"):
            _truncate_log(out / name, start_step)
    accelerator.init_trackers("grpo", config={k: str(v) for k, v in asdict(cfg).items()})
    completions_file = (out / "completions.jsonl").open("a") if accelerator.is_main_process else None
    history_file = (out / "history.jsonl").open("a") if accelerator.is_main_process else None
    if vllm is not None and start_step:
        vllm.load_weights(unwrapped)  # the resumed policy, not the base the engine loaded
    history = []
    bar = tqdm(
        range(start_step, cfg.max_steps),
        initial=start_step,
        total=cfg.max_steps,
        disable=not accelerator.is_main_process,
        desc="grpo",
    )
    for step in bar:
        clock = _PhaseClock(accelerator.device)
        items = step_items(cfg, step, pool)  # the B prompts of the global batch
        my_items = items[local]
        enc = _prompt_batch(processor, my_items, cfg.prompt_mode, is_audio).to(accelerator.device)
        input_features, feature_mask = enc.get("input_features"), enc.get("feature_attention_mask")
        clock.lap("data")

        # 1. rollout: G_local completions per local prompt, audio encoded and prompt prefilled once; completion r
        #    of the global batch samples from its own generator, seeded by (seed, step, r)
        seeds = [_rollout_seed(cfg.seed, step, r) for r in range(rows.start, rows.stop)]
        if vllm is not None:
            comp_ids = vllm.generate(
                build_requests(processor, my_items, cfg.prompt_mode),
                n=G_local,
                seeds=seeds[::G_local],
                max_new_tokens=cfg.max_new_tokens,
                temperature=cfg.temperature,
                pad_id=tok.pad_token_id,
            ).to(accelerator.device)
        else:
            unwrapped.eval()
            with torch.no_grad(), accelerator.autocast():
                comp_ids = module(  # (b·G_local, T)
                    rollout,
                    enc["input_ids"],
                    enc["attention_mask"],
                    input_features,
                    feature_mask,
                    group=G_local,
                    generators=[torch.Generator(device=accelerator.device).manual_seed(s) for s in seeds],
                    eos_ids=eos_ids,
                    pad_id=tok.pad_token_id,
                    max_new_tokens=cfg.max_new_tokens,
                    temperature=cfg.temperature,
                    all_done=all_done,
                )
            unwrapped.train()
        clock.lap("rollout")
        comp_mask = completion_mask(comp_ids, eos_ids)  # (b·G_local, T)
        my_texts = [decode_completion(tok, ids[m.bool()]) for ids, m in zip(comp_ids, comp_mask, strict=True)]

        # 2. rewards on the global batch (each process judges its own completions), then group advantages
        my_rows_items = [items[r // G] for r in range(rows.start, rows.stop)]
        verdicts = (
            _gather_list(accelerator, judge_completions(my_texts, my_rows_items, judge))
            if (use_rc or use_rt)
            else None
        )
        all_texts = _gather_list(accelerator, my_texts)
        all_items = [it for it in items for _ in range(G)]
        scores = score_completions(all_texts, all_items, cfg=cfg, step=step, verdicts=verdicts)
        rewards = torch.tensor(scores["total"], dtype=torch.float32)  # (B·G,)
        advantages = group_advantages(rewards, G, cfg.scale_rewards)  # (B·G,)
        my_adv = advantages[rows].to(accelerator.device)  # (b·G_local,)
        n_tokens_global = int(accelerator.gather(comp_mask.sum().reshape(1)).sum())
        # each process's loss is its share of the global-batch loss
        denom = loss_denominator(cfg.loss_type, B * G, n_tokens_global, cfg.max_new_tokens)
        clock.lap("rewards")

        # micro-batches of prompts (x G_local completions each): completion rows and completion_logprobs' inputs
        micro = []
        for i in range(0, len(my_items), cfg.micro_batch_prompts):
            c = slice(i, min(i + cfg.micro_batch_prompts, len(my_items)))
            mrows = slice(c.start * G_local, c.stop * G_local)
            inputs = {
                "prompt_ids": enc["input_ids"][c],
                "prompt_mask": enc["attention_mask"][c],
                "input_features": input_features[c] if is_audio else None,
                "feature_attention_mask": feature_mask[c] if is_audio else None,
                "completion_ids": comp_ids[mrows],
                "group": G_local,
                "temperature": cfg.temperature,
                "shared_prefix": not cfg.gradient_checkpointing,
            }
            micro.append((mrows, inputs))

        # 3. old (μ > 1) and reference log-probs, no gradient
        old_logps, ref_logps = [], []
        with torch.no_grad(), accelerator.autocast():
            for _, inputs in micro:
                old_logps.append(module(completion_logprobs, **inputs)[0] if cfg.num_iterations > 1 else None)
                if not cfg.beta:
                    ref_logps.append(None)
                elif cfg.lora:
                    with unwrapped.disable_adapter():
                        ref_logps.append(module(completion_logprobs, **inputs)[0])
                else:
                    ref_logps.append(completion_logprobs(ref_model, **inputs)[0])
        clock.lap("old_ref_logprobs")

        # 4. μ optimizer updates over the same rollouts
        stats = {"loss": 0.0, "clip_ratio": 0.0, "kl": 0.0, "entropy": 0.0}
        for _ in range(cfg.num_iterations):
            for k, (mrows, inputs) in enumerate(micro):
                last = k == len(micro) - 1
                accelerator.sync_gradients = last  # DeepSpeed steps (and DDP syncs) at the last micro-batch
                sync = nullcontext() if last else accelerator.no_sync(module)
                with sync, accelerator.autocast():
                    logp, ent = module(completion_logprobs, **inputs)  # (m·G_local, T) each
                    old = old_logps[k] if old_logps[k] is not None else logp.detach()
                    loss, s = grpo_loss(
                        logp,
                        old,
                        ref_logps[k],
                        my_adv[mrows],
                        comp_mask[mrows],
                        beta=cfg.beta,
                        epsilon=cfg.epsilon,
                        epsilon_high=cfg.epsilon_high,
                        loss_type=cfg.loss_type,
                        denom=denom,
                    )
                    # DDP, FSDP and DeepSpeed average gradients over processes; the global loss is their sum
                    accelerator.backward(loss * world)
                m = comp_mask[mrows].float()
                stats["loss"] += loss.item() / cfg.num_iterations
                stats["clip_ratio"] += s["clip_ratio"].item() / cfg.num_iterations
                stats["kl"] += s["kl"].item() / cfg.num_iterations
                stats["entropy"] += (ent.detach() * m).sum().item() / cfg.num_iterations
            clock.lap("policy_forward_backward")
            grad_norm = accelerator.clip_grad_norm_(params, cfg.max_grad_norm)  # DeepSpeed: clips inside
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            clock.lap("optimizer")
        if vllm is not None:
            vllm.load_weights(unwrapped)
            clock.lap("vllm_weight_sync")

        # 5. logs: sums over the processes, then per token or per completion
        truncated = ~torch.isin(comp_ids, torch.tensor(eos_ids, device=comp_ids.device)).any(1)
        local_sums = {**stats, "tokens": float(comp_mask.sum()), "truncated": float(truncated.sum())}
        sums = dict(
            zip(
                local_sums,
                accelerator.gather(torch.tensor([list(local_sums.values())], device=accelerator.device))
                .sum(0)
                .tolist(),
                strict=True,
            )
        )
        n_tok = max(1.0, sums["tokens"])
        metrics = _reward_metrics(scores, all_items, rewards, G)
        metrics.update(
            {
                "loss": sums["loss"],
                "clip_ratio/region_mean": sums["clip_ratio"] / n_tok,
                "kl": sums["kl"] / n_tok,
                "entropy": sums["entropy"] / n_tok,
                "completions/mean_length": sums["tokens"] / (B * G),
                "completions/clipped_ratio": sums["truncated"] / (B * G),
                "grad_norm": float("nan") if grad_norm is None else float(grad_norm),
                "learning_rate": scheduler.get_last_lr()[0],
                "num_processes": world,
                **{f"time/{phase}": seconds for phase, seconds in clock.laps.items()},
                "step_time": clock.total(),
            }
        )
        accelerator.log(metrics, step=step + 1)
        history.append({"step": step + 1, **metrics})
        if accelerator.is_main_process:
            history_file.write(json.dumps(history[-1]) + "\n")
            history_file.flush()
            _write_completions(
                completions_file, step + 1, all_items, all_texts, scores, advantages, cfg.prompt_mode
            )
            bar.set_postfix(
                reward=f"{metrics['reward']:.2f}",
                acc=f"{metrics['accuracy']:.2f}",
                think=f"{metrics['think_rate']:.2f}",
            )
        if cfg.save_every and ((step + 1) % cfg.save_every == 0 or step + 1 == cfg.max_steps):
            _save_checkpoint(accelerator, out, step + 1)  # and always the last step
    bar.close()
    if accelerator.is_main_process:
        completions_file.close()
        history_file.close()
    accelerator.wait_for_everyone()
    final = out / "final"
    state = accelerator.get_state_dict(module)  # on every process: gathers ZeRO-3 / FSDP shards
    if accelerator.is_main_process:
        policy_to_save = accelerator.unwrap_model(module).policy
        state = {k.removeprefix("policy."): v for k, v in state.items()}
        if cfg.lora and not sharded:
            policy_to_save, state = policy_to_save.merge_and_unload(), None
        policy_to_save.save_pretrained(final, state_dict=state)  # sharded LoRA: the adapter (loads merged)
        processor.save_pretrained(final)
    accelerator.end_training()
    return {"final": str(final), "steps": cfg.max_steps, "history": history}


# --------------------------------------------------------------------------------------------------
# Helpers of the loop


class _PhaseClock:
    """Seconds spent in each phase of a step (summed over the μ iterations); waits for the GPU at each lap."""

    def __init__(self, device: torch.device):
        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        self.sync()
        now = time.perf_counter()
        self.laps[phase] = self.laps.get(phase, 0.0) + now - self.last
        self.last = now

    def total(self) -> float:
        return time.perf_counter() - self.start


def _prompt_batch(processor, items: Sequence[dict], mode: str, is_audio: bool):
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


def _is_sharded(accelerator) -> bool:
    """Whether parameters are sharded over processes (ZeRO-3 or FSDP): no in-place LoRA merge then."""
    plugin = accelerator.state.deepspeed_plugin
    return accelerator.distributed_type.name == "FSDP" or (plugin is not None and plugin.zero_stage == 3)


def _rollout_seed(seed: int, step: int, row: int) -> int:
    """The sampling seed of completion ``row`` of the global batch at ``step`` (independent of the split)."""
    return int(np.random.SeedSequence([seed, step, row]).generate_state(1)[0])


def _gather_list(accelerator, values: list) -> list:
    if accelerator.num_processes == 1:
        return list(values)
    from accelerate.utils import gather_object

    return gather_object(list(values))


def _reward_metrics(scores: dict, items: Sequence[dict], rewards: torch.Tensor, G: int) -> dict[str, float]:
    grouped = rewards.view(-1, G)
    m = {
        "reward": float(rewards.mean()),
        "reward_std": float(grouped.std(1).mean()),
        "frac_reward_zero_std": float((grouped.std(1) < 1e-6).float().mean()),
        "accuracy": float(np.mean(scores["correct"])),
        "think_rate": float(np.mean(scores["think"])),
        "no_think_rate": 1 - float(np.mean(scores["think"])),
        "judge_failures": float(scores["judge_failures"]),
    }
    for term in ("accuracy_reward", "format", "consistency", "quality"):
        m[f"rewards/{term}/mean"] = float(np.mean(scores[term]))
    consistent = [
        c for c, t in zip(scores["judge_consistent"], scores["think"], strict=True) if t and c is not None
    ]
    m["consistency_rate"] = float(np.mean(consistent)) if consistent else float("nan")
    for d in synth.DIFFICULTIES:
        idx = [i for i, it in enumerate(items) if it.get("difficulty") == d]
        if idx:
            m[f"accuracy/{d}"] = float(np.mean([scores["correct"][i] for i in idx]))
            m[f"no_think_rate/{d}"] = 1 - float(np.mean([scores["think"][i] for i in idx]))
    return m


def _write_completions(f, step: int, items, texts, scores, advantages, prompt_mode: str) -> None:
    keep = (
        "id",
        "question",
        "choices",
        "answer",
        "difficulty",
        "sub-category",
        "events",
        "synth",
        "audio_path",
    )
    for i, (it, text) in enumerate(zip(items, texts, strict=True)):
        rec = {
            "step": step,
            "prompt_mode": prompt_mode,
            "completion": text,
            "advantage": float(advantages[i]),
            **{k: it[k] for k in keep if k in it},
            **{
                k: scores[k][i]
                for k in ("total", "accuracy_reward", "format", "consistency", "quality", "think", "correct")
            },
        }
        f.write(json.dumps(rec) + "\n")
    f.flush()


def _save_checkpoint(accelerator, out: Path, step: int) -> None:
    ckpt = out / "checkpoints" / f"step-{step:06d}"
    accelerator.save_state(str(ckpt))
    if accelerator.is_main_process:
        (ckpt / "trainer_state.json").write_text(json.dumps({"step": step}))


def resume_point(cfg: GRPOConfig) -> tuple[Path | None, int]:
    """The checkpoint ``cfg.resume`` names and its step ((None, 0) without ``--resume``).

    Raises ValueError, naming the reason, when there is nothing to resume: no checkpoint, or a run that
    already finished its ``max_steps`` and wrote ``final``.
    """
    if not cfg.resume:
        return None, 0
    out = Path(cfg.out)
    if cfg.resume == "latest":
        ckpts = sorted((out / "checkpoints").glob("step-*"))
        if not ckpts:
            raise ValueError(f"nothing to resume: no checkpoint in {out / 'checkpoints'}")
        ckpt = ckpts[-1]
    else:
        ckpt = Path(cfg.resume)
    state = ckpt / "trainer_state.json"
    if not state.is_file():
        raise ValueError(f"cannot resume from {ckpt}: it is not a checkpoint (no trainer_state.json)")
    step = int(json.loads(state.read_text())["step"])
    if step >= cfg.max_steps and (out / "final").exists():
        raise ValueError(
            f"nothing to resume: {out} finished at step {step} (max_steps {cfg.max_steps}); "
            "pass a larger --max-steps to train on from that checkpoint"
        )
    return ckpt, step


def _truncate_log(path: Path, step: int) -> None:
    """Keep the records of steps 1..``step`` (a resumed run rewrites the steps after its checkpoint)."""
    if path.exists():
        keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in keep))


def _load_pool(path: str) -> list[dict]:
    from .evaluate import load_items

    return load_items(path)
