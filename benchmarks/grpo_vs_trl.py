"""GRPO step time: this project's trainer against TRL's ``GRPOTrainer``, same model, same prompts, same process.

    python benchmarks/grpo_vs_trl.py [--prompts 4] [--length 32] [--steps 5] [--threads N] [--trl-first]

Both trainers fine-tune the same randomly initialised tiny text-only ``Qwen2ForCausalLM`` (the project's tokenizer
and ``TINY_TEXT_CONFIG``) on the same synth-aqa questions (think prompt, reward = accuracy + format, the
``reward_set="grpo"`` recipe) with the same GRPO settings: P prompts x G=8 completions per optimizer step, one
generation per step, one forward/backward over all P*G completions, max completion length L, beta 0.04 (a frozen
reference model), loss "grpo", rewards scaled per group, temperature 1.0, lr 1e-6, AdamW(0.9, 0.99), no weight
decay, grad-norm clip 1.0, no gradient checkpointing, fp32. Each optimizer step is timed (ours: the trainer's own
``step_time``; TRL: wall clock from ``on_step_begin`` to ``on_step_end``, both covering rollout, rewards,
reference and policy log-probs, backward and the optimizer step). The first step of each is a warm-up and is left
out of the median. The last line is ``speedup_vs_trl: X`` = median TRL step / median ours.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

import torch  # noqa: E402

from audio_thinker import grpo  # noqa: E402
from audio_thinker.models import CHAT_TEMPLATE, TINY_TEXT_CONFIG, auto_tokenizer, build_tokenizer  # noqa: E402
from audio_thinker.prompts import chat_prompt, user_text  # noqa: E402
from audio_thinker.rewards import reward_functions  # noqa: E402
from audio_thinker.warmstart import tokenizer_corpus  # noqa: E402

G = 8
BETA = 0.04
LR = 1e-6
TEMPERATURE = 1.0
WARMUP_LR_STEPS = 5  # the project's default lr warmup; TRL is given the same schedule


def build_text_model(out_dir: Path, seed: int) -> tuple[int, int]:
    """Save a tiny random Qwen2 causal LM and the project's tokenizer (chat template set) to ``out_dir``."""
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    tok = build_tokenizer(tokenizer_corpus(seed=1, n_per_task=50))
    tok.chat_template = CHAT_TEMPLATE
    eos, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.pad_token_id
    config = Qwen2Config(
        vocab_size=len(tok), pad_token_id=pad, eos_token_id=eos, bos_token_id=None, **TINY_TEXT_CONFIG
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[eos, pad], pad_token_id=pad, do_sample=True, temperature=1.0, top_k=0, top_p=1.0
    )
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return eos, pad


# --------------------------------------------------------------------------------------------------
# Ours


def ours_config(model_dir: Path, out: Path, args) -> grpo.GRPOConfig:
    return grpo.GRPOConfig(
        model=str(model_dir),
        out=str(out),
        data="synth",
        reward_set="grpo",
        max_steps=args.steps,
        prompts_per_step=args.prompts,
        num_generations=G,
        micro_batch_prompts=args.prompts,
        max_new_tokens=args.length,
        temperature=TEMPERATURE,
        learning_rate=LR,
        lr_scheduler="constant_with_warmup",
        warmup_steps=WARMUP_LR_STEPS,
        weight_decay=0.0,
        adam_betas=(0.9, 0.99),
        max_grad_norm=1.0,
        beta=BETA,
        loss_type="grpo",
        scale_rewards="group",
        num_iterations=1,
        lora=False,
        bf16=False,
        gradient_checkpointing=False,
        seed=args.seed,
        log_with="",
        save_every=0,
        eval_per_task=0,
    )


def run_ours(model_dir: Path, out: Path, args) -> dict:
    cfg = ours_config(model_dir, out, args)
    result = grpo.train(cfg)
    hist = result["history"]
    return {
        "times": [h["step_time"] for h in hist],
        "mean_length": [h["completions/mean_length"] for h in hist],
        "phases": [{k.removeprefix("time/"): v for k, v in h.items() if k.startswith("time/")} for h in hist],
        "completions": out / "completions.jsonl",
    }


# --------------------------------------------------------------------------------------------------
# TRL


def _texts(completions) -> list[str]:
    """TRL's completions as text (a conversational completion is a list of messages)."""
    return [c[0]["content"] if isinstance(c, list) else c for c in completions]


def trl_reward_funcs(reward_set: str = "grpo") -> tuple[list, list[float]]:
    """The project's reward functions of ``reward_set`` (:func:`audio_thinker.rewards.reward_functions`) in
    TRL's calling convention, and their weights (TRL's ``reward_weights``): the same code scores both runs, by
    construction (so the benchmark times the trainers on one objective; it checks nothing about the rewards)."""
    funcs = []
    for rf in reward_functions(reward_set):

        def call(prompts=None, completions=(), _fn=rf.fn, **columns) -> list[float]:
            return _fn(prompts, _texts(completions), **columns)

        call.__name__ = rf.name
        funcs.append(call)
    return funcs, [rf.weight for rf in reward_functions(reward_set)]


def trl_dataset(cfg: grpo.GRPOConfig):
    """The prompts our trainer sees, step by step, as a TRL conversational dataset (same order, no shuffle)."""
    from datasets import Dataset

    rows = []
    for step in range(cfg.max_steps):
        for it in grpo.step_items(cfg, step):
            rows.append(
                {
                    "prompt": [
                        {"role": "user", "content": user_text(it["question"], it["choices"], cfg.prompt_mode)}
                    ],
                    "question": it["question"],
                    "answer": it["answer"],
                    "choices": list(it["choices"]),
                }
            )
    return Dataset.from_list(rows)


def trl_args(out: Path, args):
    from trl import GRPOConfig as TRLConfig

    return TRLConfig(
        output_dir=str(out),
        # batch: P prompts x G completions = one generation batch = one forward/backward = one optimizer step
        per_device_train_batch_size=args.prompts * G,  # counted in completions in TRL
        gradient_accumulation_steps=1,
        steps_per_generation=1,  # => generation_batch_size = P*G
        num_generations=G,
        num_iterations=1,
        max_steps=args.steps,
        max_completion_length=args.length,
        # GRPO objective
        beta=BETA,
        epsilon=0.2,
        loss_type="grpo",
        scale_rewards="group",
        reward_weights=trl_reward_funcs()[1],  # accuracy + format, summed before the group normalisation
        use_bias_correction_kl=False,  # ours: plain k3 KL; TRL's default multiplies it by the (differentiable) ratio
        mask_truncated_completions=False,
        # sampling
        temperature=TEMPERATURE,
        top_p=1.0,
        top_k=0,
        use_vllm=False,
        # optimisation (ours: torch.optim.AdamW, constant lr after a 5-step warmup)
        learning_rate=LR,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=WARMUP_LR_STEPS,
        optim="adamw_torch",
        adam_beta1=0.9,
        adam_beta2=0.99,
        weight_decay=0.0,
        max_grad_norm=1.0,
        gradient_checkpointing=False,  # TRL's default is True; ours does not checkpoint
        bf16=False,
        fp16=False,
        use_cpu=not torch.cuda.is_available(),
        # data, logging, saving
        shuffle_dataset=False,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        logging_steps=1,
        log_completions=False,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        seed=args.seed,
    )


def run_trl(model_dir: Path, out: Path, args) -> dict:
    from transformers import (
        AutoModelForCausalLM,
        PrinterCallback,
        ProgressCallback,
        TrainerCallback,
    )
    from trl import GRPOTrainer

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self.logs, self._t0 = [], [], None

        def on_step_begin(self, args, state, control, **kwargs):
            self._t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter() - self._t0)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "completions/mean_length" in logs:
                self.logs.append(dict(logs))

    timer = StepTimer()
    dataset = trl_dataset(ours_config(model_dir, out, args))
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    tok = auto_tokenizer(model_dir, padding_side="left")  # the tokenizer our trainer loads, byte for byte
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=trl_reward_funcs()[0],
        args=trl_args(out, args),
        train_dataset=dataset,
        processing_class=tok,
        callbacks=[timer],
    )
    for cb in (PrinterCallback, ProgressCallback):
        trainer.remove_callback(cb)
    trainer.train()
    return {
        "times": timer.times,
        "mean_length": [lg["completions/mean_length"] for lg in timer.logs],
    }


# --------------------------------------------------------------------------------------------------


def check_prompt_tokens(model_dir: Path, cfg: grpo.GRPOConfig) -> tuple[bool, float]:
    """Our trainer renders the chat template to text and tokenizes it without special tokens; TRL tokenizes
    inside ``apply_chat_template``. Both must give the same ids (returns: identical?, mean prompt length)."""
    tok = auto_tokenizer(model_dir)
    same, lengths = True, []
    for it in grpo.step_items(cfg, 0):
        conv = [{"role": "user", "content": user_text(it["question"], it["choices"], cfg.prompt_mode)}]
        text = chat_prompt(tok, it["question"], it["choices"], cfg.prompt_mode)  # what the trainer renders
        ours = tok(text, add_special_tokens=False)["input_ids"]
        theirs = tok.apply_chat_template(conv, add_generation_prompt=True, tokenize=True, return_dict=True)
        same &= list(ours) == list(theirs["input_ids"])
        lengths.append(len(ours))
    return same, sum(lengths) / len(lengths)


def check_advantages(completions_file: Path, group_size: int = G) -> tuple[int, int]:
    """Our trainer's logged advantages against TRL's group normalisation of its logged rewards, computed apart
    from our code: ``(r - group mean) / (group std + 1e-4)`` with TRL's ``nanstd`` (the sample std), as
    ``GRPOTrainer`` does for ``scale_rewards="group"``. Returns (completions that agree, completions).

    The rewards are not checked: both trainers score with the same functions (:func:`trl_reward_funcs`)."""
    from trl.trainer.utils import nanstd

    recs = [json.loads(line) for line in completions_file.read_text().splitlines() if line.strip()]
    rewards = torch.tensor([r["total"] for r in recs], dtype=torch.float32)  # a group: G consecutive rows
    grouped = rewards.view(-1, group_size)
    mean = torch.nanmean(grouped, dim=1).repeat_interleave(group_size)
    std = nanstd(grouped, dim=1).repeat_interleave(group_size)
    theirs = (rewards - mean) / (std + 1e-4)
    ours = torch.tensor([r["advantage"] for r in recs], dtype=torch.float32)
    return int(torch.isclose(ours, theirs, rtol=1e-4, atol=1e-5).sum()), len(recs)


def median_after_warmup(times: list[float], warmup: int) -> float:
    kept = times[warmup:] or times
    return statistics.median(kept)


def quiet() -> None:
    warnings.filterwarnings("ignore")
    for name in ("transformers", "trl", "accelerate", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--prompts", type=int, default=4, help="P: prompts per optimizer step (x G=8 completions)"
    )
    ap.add_argument("--length", type=int, default=32, help="L: max completion length (tokens)")
    ap.add_argument(
        "--steps", type=int, default=5, help="N: optimizer steps per trainer (the first is warm-up)"
    )
    ap.add_argument("--warmup", type=int, default=1, help="leading steps left out of the median")
    ap.add_argument("--threads", type=int, default=0, help="torch threads for both (0: torch default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verbose", action="store_true", help="keep the trainers' progress bars and warnings")
    ap.add_argument("--trl-first", action="store_true", help="run TRL before ours (default: ours first)")
    args = ap.parse_args(argv)
    if args.steps <= args.warmup:
        ap.error("--steps must exceed --warmup")
    quiet()
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers
    import trl

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(
        f"grpo_vs_trl: P={args.prompts} prompts x G={G} completions, L={args.length} tokens, "
        f"N={args.steps} steps ({args.warmup} warm-up), threads={torch.get_num_threads()}, device={device}, "
        f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}"
    )
    with tempfile.TemporaryDirectory(prefix="grpo_vs_trl_") as tmp:
        tmp = Path(tmp)
        model_dir = tmp / "model"
        build_text_model(model_dir, args.seed)
        n_params = sum(
            p.numel() for p in transformers.AutoModelForCausalLM.from_pretrained(model_dir).parameters()
        )
        print(f"model: tiny Qwen2ForCausalLM, {n_params / 1e6:.2f}M parameters, saved to a temp dir")
        same, prompt_len = check_prompt_tokens(model_dir, ours_config(model_dir, tmp, args))
        print(
            f"prompts: synth-aqa think prompts, mean {prompt_len:.0f} tokens; "
            f"our and TRL's prompt tokenization {'identical' if same else 'DIFFER'}"
        )

        runs = {}
        order = ["trl", "ours"] if args.trl_first else ["ours", "trl"]
        for name in order:
            t = time.perf_counter()
            fn = run_ours if name == "ours" else run_trl
            with contextlib.redirect_stderr(sys.stderr if args.verbose else io.StringIO()):
                runs[name] = fn(model_dir, tmp / f"out_{name}", args)
            print(f"[{name}] {args.steps} steps done in {time.perf_counter() - t:.1f} s (incl. setup)")
        agree, total = check_advantages(runs["ours"]["completions"])

    med = {k: median_after_warmup(v["times"], args.warmup) for k, v in runs.items()}
    print()
    print(f"{'step':>4} | {'ours (s)':>9} {'len':>5} | {'trl (s)':>9} {'len':>5}")
    for i in range(args.steps):
        row = [f"{i + 1:>4}"]
        for k in ("ours", "trl"):
            t = runs[k]["times"][i] if i < len(runs[k]["times"]) else float("nan")
            n = runs[k]["mean_length"][i] if i < len(runs[k]["mean_length"]) else float("nan")
            row.append(f"{t:>9.3f} {n:>5.1f}")
        print(" | ".join(row) + ("   (warm-up, excluded)" if i < args.warmup else ""))
    for k in ("ours", "trl"):
        lens = runs[k]["mean_length"][args.warmup :]
        mean_len = sum(lens) / len(lens) if lens else float("nan")
        print(
            f"{k}: median step {med[k]:.3f} s over {len(runs[k]['times'][args.warmup :])} steps, "
            f"mean completion length {mean_len:.1f} / {args.length} tokens"
        )
    phases = runs["ours"]["phases"][args.warmup :]
    split = {k: statistics.mean(p[k] for p in phases) for k in phases[0]} if phases else {}
    total_s = sum(split.values()) or float("nan")
    print(
        "ours, mean step split after warm-up: "
        + ", ".join(f"{k} {v:.3f} s ({100 * v / total_s:.0f}%)" for k, v in split.items())
    )
    print(
        f"advantage check: TRL's group normalisation gives our trainer's advantage on {agree}/{total} completions"
    )
    print(f"speedup_vs_trl: {med['trl'] / med['ours']:.2f}")


if __name__ == "__main__":
    main()
