"""``GRPOConfig``: every knob of the GRPO trainer, with the paper's values where it gives them (its own
module, as TRL's ``grpo_config.py``: the trainer, its policy passes and its checkpoints all read it, and it
imports none of them)."""

from __future__ import annotations

from dataclasses import dataclass

from .config_args import config_field as _arg
from .prompts import ADAPTIVE, THINK
from .rewards import NO_THINK_CONSISTENCY, REWARD_SETS, RewardFunction, reward_functions

__all__ = ["LOSS_TYPES", "ROLLOUTS", "SCALE_REWARDS", "GRPOConfig"]

LOSS_TYPES = ("grpo", "dr_grpo", "dapo")
SCALE_REWARDS = ("group", "batch", "none")
ROLLOUTS = ("hf", "vllm")


@dataclass
class GRPOConfig:
    """GRPO and Audio-Thinker settings. Paper values: lr 1e-6, G 8, β 0.04, T 1.0, 1000 steps, LoRA r8 α32."""

    out: str = _arg("runs/grpo", "output folder (final model, logs, checkpoints, report)")
    model: str | None = _arg(
        None, "policy model folder or hub id; none: $AUDIO_THINKER_MODEL or the tiny model"
    )
    data: str = _arg("synth", "'synth' (fresh synth-aqa items every step) or an MMAU-layout JSON file")
    data_seed: int = _arg(7000, "synth-aqa seed of the training items (evaluation uses other seeds)")
    reward_set: str = _arg("full", f"the paper's Table 1 row: {', '.join(REWARD_SETS)}")
    judge: str = _arg("oracle", "judge of R_c and R_t: oracle (synth-aqa events), llm or learned")
    judge_model: str | None = _arg(None, "model path of the llm / learned judge")
    max_steps: int = _arg(120, "optimizer steps T (ATAR's schedule runs over them)")
    prompts_per_step: int = _arg(16, "prompts per optimizer step B, over all processes")
    num_generations: int = _arg(8, "completions per prompt G (the group of the advantages)")
    micro_batch_prompts: int = _arg(4, "prompts (x G completions) per forward/backward")
    max_new_tokens: int = _arg(128, "longest completion in tokens")
    temperature: float = _arg(1.0, "sampling temperature of the rollouts (and of the log-probs)")
    learning_rate: float = _arg(1e-4, "peak learning rate (the tiny model; the paper: 1e-6 on 7B)")
    lr_scheduler: str = _arg("constant_with_warmup", "transformers scheduler name")
    warmup_steps: int = _arg(5, "warm-up optimizer steps")
    weight_decay: float = _arg(0.0, "AdamW weight decay")
    adam_betas: list[float] = _arg([0.9, 0.99], "AdamW betas, two numbers: --adam-betas 0.9 0.99")
    max_grad_norm: float = _arg(1.0, "gradient clipping norm")
    beta: float = _arg(0.04, "KL (k3) coefficient β; 0 drops the reference model")
    epsilon: float = _arg(0.2, "clip range ε of the ratio")
    epsilon_high: float | None = _arg(None, "upper clip range (DAPO clip-higher); none = epsilon")
    loss_type: str = _arg("grpo", f"loss normalisation: {', '.join(LOSS_TYPES)}")
    scale_rewards: str = _arg("group", f"advantage std: {', '.join(SCALE_REWARDS)} (Dr. GRPO)")
    num_iterations: int = _arg(1, "optimizer updates μ per rollout batch")
    w_consistency: float = _arg(0.5, "weight w_c of R_c in Eq. 7: R_a (1 + w_c R_c)")
    no_think_consistency: str = _arg(
        "one",
        "R_c of a direct answer: one (the paper) or think-mean (the batch mean of the think answers' R_c)",
    )
    w_format: float | None = _arg(None, "weight of R_f; none: 0.5 with ATAR (Eq. 7), 1 in grpo, grpo-nothink")
    w_quality: float = _arg(1.0, "weight of R_t in Eq. 7")
    lora: bool = _arg(False, "train a LoRA adapter (merged into OUT/final) instead of all weights")
    lora_r: int = _arg(8, "LoRA rank")
    lora_alpha: int = _arg(32, "LoRA alpha")
    lora_dropout: float = _arg(0.05, "LoRA dropout")
    lora_target_modules: str | list[str] = _arg("all-linear", "LoRA targets: all-linear or module names")
    bf16: bool = _arg(False, "bf16 autocast (LoRA: the frozen base in bf16)")
    gradient_checkpointing: bool = _arg(False, "gradient checkpointing (no shared prompt prefix then)")
    seed: int = _arg(0, "training seed (initialisation, rollout sampling)")
    threads: int = _arg(
        0,
        "torch CPU threads per process; 0: $AUDIO_THINKER_TORCH_THREADS, else 1 on <= 4 cores (models.cpu_threads)",
    )
    save_every: int = _arg(50, "checkpoint every N steps and at the last; 0: none (no resume)")
    log_with: str = _arg("tensorboard", "accelerate tracker ('' for none)")
    eval_per_task: int = _arg(20, "items per synth-aqa task of the before/after report; 0: no report")
    eval_seed: int = _arg(90210, "synth-aqa seed of the report's evaluation set")
    eval_modes: list[str] = _arg([ADAPTIVE, THINK], "prompt modes the report evaluates OUT/final in")
    resume: str | None = _arg(None, "a checkpoint folder, or 'latest' in OUT/checkpoints")
    rollout: str = _arg(
        "hf", "rollout engine: hf (the KV-cached sampler) | vllm (GPU only: pip install '.[vllm]')"
    )

    def __post_init__(self) -> None:
        if self.lora_target_modules == ["all-linear"]:  # the command line gives lists; PEFT wants the string
            self.lora_target_modules = "all-linear"

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
        if self.no_think_consistency not in NO_THINK_CONSISTENCY:
            raise ValueError(
                f"no_think_consistency {self.no_think_consistency!r} unknown; "
                f"choose from {list(NO_THINK_CONSISTENCY)}"
            )
        if self.rollout not in ROLLOUTS:
            raise ValueError(f"rollout {self.rollout!r} unknown; choose from {list(ROLLOUTS)}")

    @property
    def prompt_mode(self) -> str:
        return REWARD_SETS[self.reward_set].prompt_mode

    @property
    def reward_funcs(self) -> list[RewardFunction]:
        """The reward set's weighted reward functions (their sum is the total reward)."""
        return reward_functions(
            self.reward_set,
            w_consistency=self.w_consistency,
            w_format=self.w_format,
            w_quality=self.w_quality,
        )
