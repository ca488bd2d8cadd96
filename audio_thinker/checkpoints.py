"""GRPO checkpoints: save every N steps, resume exactly, and the final model.

A checkpoint (``OUT/checkpoints/step-N``) is accelerate's state (model or adapter, optimizer, scheduler, RNG)
plus ``trainer_state.json`` with its step. Resuming cuts ``history.jsonl`` / ``completions.jsonl`` back to that
step, so a crash between checkpoints leaves no repeated steps.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .grpo_config import GRPOConfig


def save_checkpoint(accelerator, out: Path, step: int) -> None:
    """Write ``out/checkpoints/step-{step}`` (every process takes part; the main one writes the step)."""
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


def truncate_log(path: Path, step: int) -> None:
    """Keep the records of steps 1..``step`` (a resumed run rewrites the steps after its checkpoint)."""
    if path.exists():
        keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in keep))


def save_final(accelerator, module, processor, final: Path, *, merge_lora: bool) -> None:
    """Save the trained policy (and its processor) to ``final``; every process takes part.

    ``merge_lora``: merge the adapter into the base (not possible with sharded parameters: the adapter is
    saved then, and loads merged).
    """
    state = accelerator.get_state_dict(module)  # on every process: gathers ZeRO-3 / FSDP shards
    if accelerator.is_main_process:
        policy = accelerator.unwrap_model(module).policy
        state = {k.removeprefix("policy."): v for k, v in state.items()}
        if merge_lora:
            policy, state = policy.merge_and_unload(), None
        policy.save_pretrained(final, state_dict=state)
        processor.save_pretrained(final)
