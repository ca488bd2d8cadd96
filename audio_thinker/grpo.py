"""GRPO on accelerate, with reward functions given as ``(name, fn, weight)``. Reads top to bottom:

1. ``GRPOConfig``: every knob, with the paper's values where it gives them (in :mod:`audio_thinker.grpo_config`,
   re-exported here).
2. Rewards and advantages: ``score_completions`` runs the reward set's TRL-style reward functions
   (:mod:`audio_thinker.rewards`: Eq. 7 as their weighted sum) on the *global* batch, each process having
   judged its own completions (``judge_completions``); then ``group_advantages``.
3. ``grpo_loss``: clipped ratio objective + β·KL(k3) with loss types grpo | dr_grpo | dapo.
4. ``step_items``: the data, a pure function of ``(seed, step)``.
5. ``train``: setup, then per step the phases data → rollout → rewards → old/ref log-probs → μ optimizer
   updates → logs and checkpoint; tensor shapes are in the comments (B prompts x G completions per step
   over all processes; this process has b prompts x G_local completions, T completion tokens).

The passes through the policy (rollout, ``completion_logprobs``) and the split over processes live in
:mod:`audio_thinker.policy`, checkpoints and resume in :mod:`audio_thinker.checkpoints`. Each completion
samples from its own generator, seeded by ``(seed, step, its index in the global batch)``, so N processes draw
the same rollouts as one, and ``--resume`` from a checkpoint continues exactly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

from . import synth
from .checkpoints import resume_point, save_checkpoint, save_final, truncate_log
from .data import load_items
from .grpo_config import LOSS_TYPES, SCALE_REWARDS, GRPOConfig
from .grpo_config import ROLLOUTS as ROLLOUTS  # re-exported with GRPOConfig (older imports)
from .grpo_metrics import PhaseClock, PolicyStats, reward_metrics, variance_shares
from .inference import completion_mask, decode_completion
from .judges import JudgeRequest, make_judge
from .models import cpu_threads, default_model_path
from .policy import (
    all_processes_done,
    completion_logprobs,
    process_share,
    prompt_batch,
    rollout,
    rollout_seed,
    setup_models,
)
from .rewards import (
    LOGGED_TERMS,
    REWARD_SETS,
    JudgeScores,
    completion_terms,
    is_think,
    parse_completion,
)

# --------------------------------------------------------------------------------------------------
# 2. Rewards and advantages


def judge_completions(completions: Sequence[str], items: Sequence[dict], judge) -> list[JudgeScores | None]:
    """The judge's (consistent, quality, failed) for each think completion with think text, else None.

    Each process judges its own completions; the loop gathers the verdicts, so the judge's work is split
    over the processes while R_c / R_t stay computed on the global batch.
    """
    parsed = [parse_completion(c) for c in completions]
    judged = [
        i for i, (p, c) in enumerate(zip(parsed, completions, strict=True)) if is_think(p, c) and p.think
    ]
    requests = [
        JudgeRequest(
            items[i]["question"], items[i]["choices"], parsed[i].think, parsed[i].answer or "", items[i]
        )
        for i in judged
    ]
    verdicts = judge.score_batch(requests) if requests else []
    out: list[JudgeScores | None] = [None] * len(completions)
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
    verdicts: Sequence[JudgeScores | None] | None = None,
) -> dict[str, list]:
    """Every reward function of ``cfg``'s set on the global batch (ATAR's λ and R_t's mean are batch
    statistics), their weighted sum ``total``, and what the run logs per completion.

    ``verdicts`` are :func:`judge_completions`' for these completions (gathered from the processes);
    without them ``judge`` is asked here when the set needs it.
    """
    n = len(completions)
    if not REWARD_SETS[cfg.reward_set].needs_judge:
        verdicts = [None] * n
    elif verdicts is None:
        verdicts = judge_completions(completions, items, judge)
    columns = {
        "answer": [it["answer"] for it in items],
        "choices": [it["choices"] for it in items],
        "verdicts": list(verdicts),
        "step": step,
        "max_steps": cfg.max_steps,
        "no_think_consistency": cfg.no_think_consistency,
    }
    prompts = [it["question"] for it in items]
    funcs = cfg.reward_funcs
    rewards = {f.name: f.fn(prompts, completions, **columns) for f in funcs}  # name -> (B·G,)
    total = [sum(f.weight * rewards[f.name][i] for f in funcs) for i in range(n)]  # in Eq. 7's order
    return {
        **completion_terms(completions, **columns),
        **rewards,
        "total": total,
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
# 3. The loss


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
# 4. Data: a pure function of (seed, step)


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


@dataclass
class MicroBatch:
    """One forward/backward: m prompts of this process and their m·G_local completions."""

    rows: slice  # its completions among this process's b·G_local rows
    prompt_ids: torch.Tensor  # (m, P) left-padded
    prompt_mask: torch.Tensor  # (m, P)
    input_features: torch.Tensor | None  # (m, mels, frames); None for a text-only LM
    feature_attention_mask: torch.Tensor | None  # (m, frames)
    completion_ids: torch.Tensor  # (m·G_local, T)
    old_logp: torch.Tensor | None = None  # (m·G_local, T), with μ > 1
    ref_logp: torch.Tensor | None = None  # (m·G_local, T), with β > 0

    def inputs(self) -> dict[str, torch.Tensor | None]:
        """``completion_logprobs``' tensors, by name."""
        names = ("prompt_ids", "prompt_mask", "input_features", "feature_attention_mask", "completion_ids")
        return {k: getattr(self, k) for k in names}


def train(cfg: GRPOConfig) -> dict:
    """Run GRPO; returns a summary. Writes ``out/final``, ``out/completions.jsonl``, logs and checkpoints."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    # ---- setup: processes and their shares, models, judge, data, logs; resume
    cfg.validate()
    torch.set_num_threads(cfg.threads or cpu_threads())
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
    world = accelerator.num_processes
    G, B = cfg.num_generations, cfg.prompts_per_step
    # this process: its rows of the B·G completions, its b prompts, and G_local completions of each
    rows, local, G_local = process_share(B, G, world, accelerator.process_index)
    sharded = _is_sharded(accelerator)
    if cfg.rollout == "vllm" and sharded:
        raise ValueError(
            "--rollout vllm needs the full weights on every process; ZeRO-3 and FSDP shard them "
            "(use configs/accelerate/ddp.yaml or zero2.yaml)"
        )
    model_path = cfg.model or default_model_path()
    m = setup_models(cfg, accelerator, model_path)
    judge = make_judge(cfg.judge, **({"path": cfg.judge_model} if cfg.judge_model else {}))
    needs_judge = REWARD_SETS[cfg.reward_set].needs_judge
    pool = None if cfg.data == "synth" else load_items(cfg.data)
    all_done = all_processes_done(accelerator.device) if sharded and world > 1 else None
    logprobs = partial(
        completion_logprobs,
        group=G_local,
        temperature=cfg.temperature,
        shared_prefix=not cfg.gradient_checkpointing,
    )
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
            truncate_log(out / name, start_step)
    accelerator.init_trackers("grpo", config={k: str(v) for k, v in asdict(cfg).items()})
    completions_file = (out / "completions.jsonl").open("a") if accelerator.is_main_process else None
    history_file = (out / "history.jsonl").open("a") if accelerator.is_main_process else None
    if vllm is not None and start_step:
        vllm.load_weights(m.unwrapped)  # the resumed policy, not the base the engine loaded
    history = []
    bar = tqdm(
        range(start_step, cfg.max_steps),
        initial=start_step,
        total=cfg.max_steps,
        disable=not accelerator.is_main_process,
        desc="grpo",
    )
    for step in bar:
        clock = PhaseClock(accelerator.device)

        # ---- 1. data: the B prompts of the global batch; this process's b prompts, encoded
        items = step_items(cfg, step, pool)
        my_items = items[local]
        enc = prompt_batch(m.processor, my_items, cfg.prompt_mode, m.is_audio).to(accelerator.device)
        prompt_ids, prompt_mask = enc["input_ids"], enc["attention_mask"]  # (b, P) each
        features = enc.get("input_features")  # (b, mels, frames) or None
        feature_mask = enc.get("feature_attention_mask")  # (b, frames) or None
        clock.lap("data")

        # ---- 2. rollout: G_local completions per local prompt, audio encoded and prompt prefilled once;
        #      completion r of the global batch samples from its own generator, seeded by (seed, step, r)
        seeds = [rollout_seed(cfg.seed, step, r) for r in range(rows.start, rows.stop)]
        if vllm is not None:
            comp_ids = vllm.generate(  # (b·G_local, T)
                build_requests(m.processor, my_items, cfg.prompt_mode),
                n=G_local,
                seeds=seeds[::G_local],
                max_new_tokens=cfg.max_new_tokens,
                temperature=cfg.temperature,
                pad_id=m.tok.pad_token_id,
            ).to(accelerator.device)
        else:
            m.unwrapped.eval()
            with torch.no_grad(), accelerator.autocast():
                comp_ids = m.module(  # (b·G_local, T)
                    rollout,
                    prompt_ids,
                    prompt_mask,
                    features,
                    feature_mask,
                    group=G_local,
                    generators=[torch.Generator(device=accelerator.device).manual_seed(s) for s in seeds],
                    eos_ids=m.eos_ids,
                    pad_id=m.tok.pad_token_id,
                    max_new_tokens=cfg.max_new_tokens,
                    temperature=cfg.temperature,
                    all_done=all_done,
                )
            m.unwrapped.train()
        clock.lap("rollout")
        comp_mask = completion_mask(comp_ids, m.eos_ids)  # (b·G_local, T)
        my_texts = [
            decode_completion(m.tok, ids[k.bool()]) for ids, k in zip(comp_ids, comp_mask, strict=True)
        ]

        # ---- 3. rewards on the global batch (each process judges its own completions), group advantages
        verdicts = None
        if needs_judge:
            my_rows_items = [items[r // G] for r in range(rows.start, rows.stop)]
            verdicts = _gather_list(accelerator, judge_completions(my_texts, my_rows_items, judge))
        all_texts = _gather_list(accelerator, my_texts)  # B·G
        all_items = [it for it in items for _ in range(G)]  # B·G
        scores = score_completions(all_texts, all_items, cfg=cfg, step=step, verdicts=verdicts)
        rewards = torch.tensor(scores["total"], dtype=torch.float32)  # (B·G,)
        advantages = group_advantages(rewards, G, cfg.scale_rewards)  # (B·G,)
        my_adv = advantages[rows].to(accelerator.device)  # (b·G_local,)
        n_tokens_global = int(accelerator.gather(comp_mask.sum().reshape(1)).sum())
        # each process's loss is its share of the global-batch loss
        denom = loss_denominator(cfg.loss_type, B * G, n_tokens_global, cfg.max_new_tokens)
        clock.lap("rewards")

        # ---- 4. micro-batches of m prompts (x G_local completions); their old (μ > 1) and reference
        #      (β > 0) log-probs, without gradient
        micro = []
        for i in range(0, len(my_items), cfg.micro_batch_prompts):
            c = slice(i, min(i + cfg.micro_batch_prompts, len(my_items)))
            mrows = slice(c.start * G_local, c.stop * G_local)
            micro.append(
                MicroBatch(
                    rows=mrows,
                    prompt_ids=prompt_ids[c],
                    prompt_mask=prompt_mask[c],
                    input_features=features[c] if m.is_audio else None,
                    feature_attention_mask=feature_mask[c] if m.is_audio else None,
                    completion_ids=comp_ids[mrows],
                )
            )
        with torch.no_grad(), accelerator.autocast():
            for mb in micro:
                if cfg.num_iterations > 1:
                    mb.old_logp = m.module(logprobs, **mb.inputs())[0]
                if not cfg.beta:
                    continue
                if cfg.lora:
                    with m.unwrapped.disable_adapter():
                        mb.ref_logp = m.module(logprobs, **mb.inputs())[0]
                else:
                    mb.ref_logp = logprobs(m.ref_model, **mb.inputs())[0]
        clock.lap("old_ref_logprobs")

        # ---- 5. μ optimizer updates over the same rollouts
        stats = PolicyStats()
        for _ in range(cfg.num_iterations):
            for k, mb in enumerate(micro):
                last = k == len(micro) - 1
                accelerator.sync_gradients = last  # DeepSpeed steps (and DDP syncs) at the last micro-batch
                sync = nullcontext() if last else accelerator.no_sync(m.module)
                with sync, accelerator.autocast():
                    logp, ent = m.module(logprobs, **mb.inputs())  # (m·G_local, T) each
                    loss, s = grpo_loss(
                        logp,
                        mb.old_logp if mb.old_logp is not None else logp.detach(),
                        mb.ref_logp,
                        my_adv[mb.rows],
                        comp_mask[mb.rows],
                        beta=cfg.beta,
                        epsilon=cfg.epsilon,
                        epsilon_high=cfg.epsilon_high,
                        loss_type=cfg.loss_type,
                        denom=denom,
                    )
                    # DDP, FSDP and DeepSpeed average gradients over processes; the global loss is their sum
                    accelerator.backward(loss * world)
                tok_mask = comp_mask[mb.rows].float()  # (m·G_local, T)
                stats.loss += loss.item() / cfg.num_iterations
                stats.clip_ratio += s["clip_ratio"].item() / cfg.num_iterations
                stats.kl += s["kl"].item() / cfg.num_iterations
                stats.entropy += (ent.detach() * tok_mask).sum().item() / cfg.num_iterations
            clock.lap("policy_forward_backward")
            grad_norm = accelerator.clip_grad_norm_(m.params, cfg.max_grad_norm)  # DeepSpeed: clips inside
            m.optimizer.step()
            m.scheduler.step()
            m.optimizer.zero_grad(set_to_none=True)
            clock.lap("optimizer")
        if vllm is not None:
            vllm.load_weights(m.unwrapped)
            clock.lap("vllm_weight_sync")

        # ---- 6. logs (sums over the processes, then per token or per completion), checkpoint
        truncated = ~torch.isin(comp_ids, torch.tensor(m.eos_ids, device=comp_ids.device)).any(
            1
        )  # (b·G_local,)
        stats.tokens, stats.truncated = float(comp_mask.sum()), float(truncated.sum())
        sums = stats.gathered(accelerator)
        n_tok = max(1.0, sums.tokens)
        metrics = reward_metrics(scores, all_items, rewards, G)
        shares = variance_shares(
            {f.name: [f.weight * x for x in scores[f.name]] for f in cfg.reward_funcs}, G
        )
        metrics.update({f"rewards/{name}/variance_share": share for name, share in shares.items()})
        metrics.update(
            {
                "loss": sums.loss,
                "clip_ratio/region_mean": sums.clip_ratio / n_tok,
                "kl": sums.kl / n_tok,
                "entropy": sums.entropy / n_tok,
                "completions/mean_length": sums.tokens / (B * G),
                "completions/clipped_ratio": sums.truncated / (B * G),
                "grad_norm": float("nan") if grad_norm is None else float(grad_norm),
                "learning_rate": m.scheduler.get_last_lr()[0],
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
            save_checkpoint(accelerator, out, step + 1)  # and always the last step

    # ---- the final model
    bar.close()
    if accelerator.is_main_process:
        completions_file.close()
        history_file.close()
    accelerator.wait_for_everyone()
    final = out / "final"
    # sharded LoRA: the adapter is saved (it loads merged)
    save_final(accelerator, m.module, m.processor, final, merge_lora=cfg.lora and not sharded)
    accelerator.end_training()
    return {"final": str(final), "steps": cfg.max_steps, "history": history}


# --------------------------------------------------------------------------------------------------
# Helpers of the loop


def _is_sharded(accelerator) -> bool:
    """Whether parameters are sharded over processes (ZeRO-3 or FSDP): no in-place LoRA merge then."""
    plugin = accelerator.state.deepspeed_plugin
    return accelerator.distributed_type.name == "FSDP" or (plugin is not None and plugin.zero_stage == 3)


def _gather_list(accelerator, values: list) -> list:
    if accelerator.num_processes == 1:
        return list(values)
    from accelerate.utils import gather_object

    return gather_object(list(values))


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
            **{k: scores[k][i] for k in ("total", *LOGGED_TERMS, "think", "correct")},
        }
        f.write(json.dumps(rec) + "\n")
    f.flush()
