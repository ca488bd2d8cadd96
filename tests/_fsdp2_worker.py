"""One GRPO micro-step on FSDP2-sharded parameters, run by ``torchrun`` (gloo, CPU) from test_scaleout.py.

Every process shards the shipped tiny model with torch's ``fully_shard`` (each decoder and encoder layer,
then the root :class:`~audio_thinker.policy.PolicyModule`, as accelerate's FSDP2 plugin does), samples its
share of the completions through the root module with :func:`~audio_thinker.policy.rollout`, backpropagates
the GRPO loss of its rows and clips the gradients of the parameters the sharded module owns. Rank 0
writes what every process did to ``OUT`` as JSON. ``--no-sync`` drops the all-reduce that keeps the
processes stepping together (to show what it guards against).

    torchrun --nproc_per_node 2 tests/_fsdp2_worker.py OUT [--no-sync]
"""

from __future__ import annotations

import json
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

from audio_thinker import grpo, synth
from audio_thinker.inference import completion_mask
from audio_thinker.models import TINY_MODEL_DIR, load_policy, unwrap_peft
from audio_thinker.policy import (
    PolicyModule,
    all_processes_done,
    completion_logprobs,
    process_share,
    prompt_batch,
    rollout,
    rollout_seed,
)

# 2 easy prompts (the shipped model answers them directly: a few tokens) and 2 hard ones (it thinks: long)
TASKS = ("loudness", "sound_type", "pitch_pattern", "odd_one_out")
G, MAX_NEW_TOKENS, SEED = 2, 48, 11


def main(out: str, sync: bool) -> None:
    dist.init_process_group("gloo", timeout=timedelta(seconds=30))
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    policy, processor = load_policy(str(TINY_MODEL_DIR))
    tok = processor.tokenizer
    tok.padding_side = "left"
    module = PolicyModule(policy)
    before = [p for p in module.parameters() if p.requires_grad]  # captured before sharding (stale after it)
    layer_classes = set(module._no_split_modules or ())
    for sub in reversed(list(module.modules())):  # inner layers first, as accelerate wraps
        if type(sub).__name__ in layer_classes:
            fully_shard(sub)
    fully_shard(module)
    params = [p for p in module.parameters() if p.requires_grad]

    items = []
    for i, task in enumerate(TASKS):
        item, audio = synth.generate_item(task, 5, i)
        items.append({**item, "audio": audio})
    B = len(items)
    rows, local, g = process_share(B, G, world, rank)
    mine = items[local]
    enc = prompt_batch(processor, mine, "adaptive", True)
    eos = unwrap_peft(policy).generation_config.eos_token_id or tok.eos_token_id
    eos_ids = eos if isinstance(eos, list) else [eos]
    steps = []  # decoding forwards this process ran

    def counting_done(local_done: bool) -> bool:
        steps.append(local_done)
        return all_processes_done(torch.device("cpu"))(local_done) if sync else local_done

    policy.eval()
    with torch.no_grad():
        comp = module(
            rollout,
            enc["input_ids"],
            enc["attention_mask"],
            enc["input_features"],
            enc["feature_attention_mask"],
            group=g,
            generators=[
                torch.Generator().manual_seed(rollout_seed(SEED, 0, r)) for r in range(rows.start, rows.stop)
            ],
            eos_ids=eos_ids,
            pad_id=tok.pad_token_id,
            max_new_tokens=MAX_NEW_TOKENS,
            temperature=1.0,
            all_done=counting_done,
        )
    policy.train()
    mask = completion_mask(comp, eos_ids)
    lengths = mask.sum(1)
    adv = torch.linspace(-1, 1, B * G)[rows]  # fixed advantages: the test is about the mechanics
    logp, _ = module(
        completion_logprobs,
        enc["input_ids"],
        enc["attention_mask"],
        enc["input_features"],
        enc["feature_attention_mask"],
        comp,
        g,
    )
    loss, _ = grpo.grpo_loss(
        logp,
        logp.detach(),
        None,
        adv,
        mask,
        beta=0.0,
        epsilon=0.2,
        epsilon_high=None,
        loss_type="grpo",
        denom=B * G,
    )
    (loss * world).backward()  # FSDP averages gradients over processes
    grad_norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
    grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
    record = {
        "world_size": world,
        "rank": rank,
        "sharded": all(type(p).__name__ == "DTensor" for p in params) if world > 1 else False,
        "completions": [row[m.bool()].tolist() for row, m in zip(comp, mask, strict=True)],
        "max_length": int(lengths.max()),
        "decode_steps": len(steps),
        "grad_norm": float(grad_norm),
        "stale_params_with_grad": sum(p.grad is not None for p in before) if world > 1 else None,
        "loss": float(loss),
    }
    gathered = [None] * world
    dist.all_gather_object(gathered, record)
    if rank == 0:
        with open(out, "w") as f:
            json.dump(gathered, f)
    dist.barrier()  # both ranks done before teardown (a gloo teardown abort was seen once under load)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sync="--no-sync" not in sys.argv[2:])
