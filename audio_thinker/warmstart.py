"""Build the shipped tiny audio LM from scratch: tokenizer, processor, and a supervised warm start.

The shipped weights are three runs (docs/models.md): a model trained on gold traces from random init,
continued on a flawed teacher's traces whose flaws change the answer (issue #16), then on the same teacher
with flaws that keep the answer right too (issue #23; the teacher, its flaw rates and direct-answer shares
are in :mod:`audio_thinker.teacher`):

    python -m audio_thinker.warmstart --out runs/tiny-gold
    python -m audio_thinker.warmstart --init runs/tiny-gold --teacher flawed --systematic wrong-answer \
        --right-slip-rate 0 --threads 1 --out runs/base-16
    python -m audio_thinker.warmstart --init runs/base-16 --teacher flawed --threads 1 --out audio_thinker/assets/tiny-qwen2-audio

``--init DIR`` (or ``--from-shipped``: the shipped checkpoint) loads the model, tokenizer and processor,
skips stage 1 and runs stage 2 with the fine-tuning defaults of ``FINETUNE_DEFAULTS`` (any flag given
explicitly wins).

Two stages, both on freshly generated synth-aqa items (never the same clip twice):

1. Encoder pretraining (a tiny stand-in for Whisper's pretraining): the audio tower and projector learn
   frame-level event tagging (what sounds in each 40 ms audio token: kind and pitch class, loudness,
   length, onsets) through small linear heads that are then discarded. From random init, the LM cannot
   find the few audio tokens that matter while the encoder's features are still weak, and training sits
   on a plateau where the model ignores the audio; pretrained features remove it.
2. Supervised fine-tuning of the whole model with both output modes for every task, selected by the prompt:
``think`` → ``<think>gold trace</think><answer>…</answer>``, ``no-think`` → ``<answer>…</answer>``, and
``adaptive`` → either, at random, so that GRPO later has both behaviours to choose from. The loss is the
cross-entropy on the completion tokens only. Deterministic for a given ``--seed`` and thread count.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import synth
from . import teacher as teaching
from .config_args import config_field as _arg
from .config_args import config_parser
from .models import (
    TINY_MODEL_DIR,
    build_processor,
    build_tiny_model,
    build_tokenizer,
    embed_prompt,
    encode_audio,
    language_model,
)
from .prompts import ADAPTIVE, INSTRUCTIONS, NO_THINK, THINK, chat_prompt, format_target, user_text
from .rewards import match_choice

TASK_WEIGHTS = {"easy": 0.7, "medium": 1.0, "hard": 1.4}
FRAME_KINDS = ["none", "low", "middle", "high", "noise", "chirp up", "chirp down"]
MODE_WEIGHTS = {THINK: 0.5, NO_THINK: 0.3, ADAPTIVE: 0.2}
# Share of the direct answers (no-think prompt, or adaptive without a trace) that hard items keep; the rest
# are shown with their trace instead. As in the data real audio LMs learn from, compositional questions
# mostly come with a rationale, while perception questions are answered directly.
DIRECT_SHARE = {"easy": 1.0, "medium": 1.0, "hard": 0.05}  # hard: WarmstartConfig.hard_direct_share


# Stage-2-only fine-tuning from an existing checkpoint (--from-shipped / --init): fewer steps, a lower peak.
# 450 steps: at 300 the middle_compare flaw was not yet the argmax on its items (docs/fidelity.md, it4 vs it5).
FINETUNE_DEFAULTS = {"steps": 450, "lr": 1e-3, "warmup_steps": 30, "eval_every": 0}


@dataclass
class WarmstartConfig:
    """The warm start's settings (``python -m audio_thinker.warmstart --help`` has a flag per field)."""

    out: str = _arg(str(TINY_MODEL_DIR), "output folder of the model, tokenizer, processor and logs")
    from_shipped: bool = _arg(
        False, "continue from the shipped checkpoint (stage 2 only, fine-tuning defaults)"
    )
    init: str = _arg("", "continue from this checkpoint folder (stage 2 only, fine-tuning defaults)")
    teacher: str = _arg(
        "gold", "traces to learn: gold, or flawed (audio_thinker.teacher's imperfect teacher)"
    )
    slip_rate: float = _arg(teaching.TeacherConfig.slip_rate, "flawed teacher: share of traces with a slip")
    inconsistent_rate: float = _arg(
        teaching.TeacherConfig.inconsistent_rate,
        "flawed teacher: share of traces whose answer contradicts them",
    )
    ramble_rate: float = _arg(teaching.TeacherConfig.ramble_rate, "flawed teacher: share of rambling traces")
    right_slip_rate: float = _arg(
        teaching.TeacherConfig.right_slip_rate,
        "flawed teacher: share of traces with a mis-heard onset that leaves the answer right",
    )
    systematic_rate: float = _arg(
        teaching.TeacherConfig.systematic_rate, "flawed teacher: rate of its systematic (keyed) flaws"
    )
    systematic: str = _arg(
        "all",
        "keyed flaws: comma-separated names of teacher.ALL_FLAWS; all; wrong-answer (the #16 base's "
        "teacher.SYSTEMATIC_FLAWS); none",
    )
    easy_direct_share: float = _arg(
        DIRECT_SHARE["easy"], "adaptive targets: share of direct answers, easy items"
    )
    medium_direct_share: float = _arg(
        DIRECT_SHARE["medium"], "adaptive targets: direct answers, medium items"
    )
    encoder_steps: int = _arg(300, "stage 1: encoder pretraining steps (event tagging)")
    encoder_batch_size: int = _arg(64, "stage 1: clips per step")
    steps: int = _arg(1250, "stage 2: fine-tuning steps (with --init / --from-shipped: 450)")
    batch_size: int = _arg(32, "stage 2: examples per step")
    lr: float = _arg(2e-3, "stage 2: peak learning rate (with --init / --from-shipped: 1e-3)")
    min_lr_ratio: float = _arg(0.05, "stage 2: the cosine schedule's floor, as a share of the peak")
    warmup_steps: int = _arg(150, "stage 2: warm-up steps (with --init / --from-shipped: 30)")
    hard_direct_share: float = _arg(DIRECT_SHARE["hard"], "adaptive targets: direct answers, hard items")
    weight_decay: float = _arg(0.01, "AdamW weight decay")
    grad_clip: float = _arg(1.0, "gradient clipping norm")
    seed: int = _arg(0, "seed of the items, initialisation and sampling")
    bf16: bool = _arg(True, "bf16 autocast on the CPU")
    eval_every: int = _arg(250, "quick evaluation every N steps; 0: only at the end (--init: 0)")
    eval_per_task: int = _arg(6, "items per task of each quick evaluation")
    max_minutes: float = _arg(0.0, "stop stage 2 after this many minutes; 0: no time limit")
    threads: int = _arg(0, "torch CPU threads; 0: torch's default")

    def teacher_config(self) -> teaching.TeacherConfig | None:
        """The flawed teacher's settings, or None for the gold teacher."""
        if self.teacher == "gold":
            return None
        if self.teacher != "flawed":
            raise ValueError(f"unknown teacher {self.teacher!r}; choose gold or flawed")
        names = {
            "all": teaching.ALL_FLAWS,
            "wrong-answer": teaching.SYSTEMATIC_FLAWS,
            "none": (),
            "": (),
        }.get(self.systematic, tuple(n for n in self.systematic.split(",") if n))
        return teaching.TeacherConfig(
            slip_rate=self.slip_rate,
            inconsistent_rate=self.inconsistent_rate,
            ramble_rate=self.ramble_rate,
            right_slip_rate=self.right_slip_rate,
            systematic_rate=self.systematic_rate,
            systematic=names,
            direct_share=self.direct_share(),
        )

    def direct_share(self) -> dict:
        return {
            "easy": self.easy_direct_share,
            "medium": self.medium_direct_share,
            "hard": self.hard_direct_share,
        }


def tokenizer_corpus(seed: int, n_per_task: int = 300) -> list[str]:
    """Texts the BPE is trained on: prompts, choices and gold traces of generated items."""
    corpus = list(INSTRUCTIONS.values())
    for task in synth.TASKS:
        for i in range(n_per_task):
            item, _ = synth.generate_item(task, seed, i, "tokenizer")
            corpus += [
                item["reasoning"],
                user_text(item["question"], item["choices"], THINK),
                *item["choices"],
            ]
    return corpus


class ItemStream(torch.utils.data.IterableDataset):
    """An endless stream of collated training batches of fresh synth-aqa items."""

    def __init__(
        self,
        processor,
        batch_size: int,
        seed: int,
        hard_direct_share: float = DIRECT_SHARE["hard"],
        teacher_cfg: teaching.TeacherConfig | None = None,
        direct_share: dict | None = None,
    ):
        self.processor, self.batch_size, self.seed = processor, batch_size, seed
        self.direct_share = DIRECT_SHARE | {"hard": hard_direct_share} | (direct_share or {})
        self.teacher_cfg = teacher_cfg  # None: the gold teacher (every trace is the item's gold reasoning)
        tasks = list(synth.TASKS)
        w = np.array([TASK_WEIGHTS[synth.TASKS[t].difficulty] for t in tasks])
        self.tasks, self.task_p = tasks, w / w.sum()

    def __iter__(self):
        torch.set_num_threads(1)
        rng = np.random.default_rng([self.seed, 7])
        teacher_rng = np.random.default_rng([self.seed, 11])  # its own stream: the gold recipe is unchanged
        index = 0
        while True:
            rows = []
            for _ in range(self.batch_size):
                task = str(rng.choice(self.tasks, p=self.task_p))
                item, audio = synth.generate_item(task, self.seed, index, "train")
                index += 1
                mode = str(rng.choice(list(MODE_WEIGHTS), p=list(MODE_WEIGHTS.values())))
                think = mode == THINK or (mode == ADAPTIVE and rng.random() < 0.5)
                if not think and rng.random() >= self.direct_share[item["difficulty"]]:
                    mode, think = (THINK if mode == NO_THINK else mode), True
                rows.append((item, audio, mode, self.target(item, think, teacher_rng)))
            yield self.collate(rows)

    def target(self, item: dict, think: bool, rng: np.random.Generator) -> str:
        """The completion taught for an item: the teacher's trace and answer, or the direct answer."""
        if not think:
            return format_target(item["answer"])
        if self.teacher_cfg is None:
            return format_target(item["answer"], item["reasoning"])
        t = teaching.think_target(item, rng, self.teacher_cfg)
        return format_target(t.answer, t.trace)

    def collate(self, rows):
        tok = self.processor.tokenizer
        prompts = [chat_prompt(self.processor, it["question"], it["choices"], m) for it, _, m, _ in rows]
        targets = [target + tok.eos_token for _, _, _, target in rows]
        enc = self.processor(
            text=prompts,
            audio=[a for _, a, _, _ in rows],
            sampling_rate=synth.SAMPLE_RATE,
            return_tensors="pt",
            padding=True,
        )
        ids, labels = [], []
        for p_ids, p_mask, tgt in zip(enc["input_ids"], enc["attention_mask"], targets, strict=True):
            p = p_ids[p_mask.bool()].tolist()
            t = tok(tgt, add_special_tokens=False)["input_ids"]
            ids.append(p + t)
            labels.append([-100] * len(p) + t)
        width = max(map(len, ids))
        pad = tok.pad_token_id
        input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
        label_t = torch.tensor([x + [-100] * (width - len(x)) for x in labels])
        attn = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
        return {
            "input_ids": input_ids,
            "attention_mask": attn,
            "labels": label_t,
            "input_features": enc["input_features"],
            "feature_attention_mask": enc["feature_attention_mask"],
        }


def frame_labels(events: list[synth.Event], n_frames: int) -> tuple[np.ndarray, ...]:
    """Per audio-token labels: kind/pitch class, loud, long (-100 where undefined) and onset flags."""
    frame = synth.CLIP_SECONDS / n_frames
    kind, loud, long_ = np.zeros(n_frames, np.int64), np.full(n_frames, -100), np.full(n_frames, -100)
    onset = np.zeros(n_frames, np.float32)
    for ev in events:
        label = (
            ev.pitch if ev.kind == "tone" else ("noise" if ev.kind == "noise" else f"chirp {ev.direction}")
        )
        for j in range(n_frames):
            if min(ev.onset + ev.duration, (j + 1) * frame) - max(ev.onset, j * frame) > frame / 2:
                kind[j], loud[j] = FRAME_KINDS.index(label), int(ev.level == "loud")
                if ev.kind == "tone":
                    long_[j] = int(ev.length == "long")
        onset[min(n_frames - 1, int(ev.onset / frame))] = 1.0
    return kind, loud, long_, onset


def pretrain_encoder(model, processor, cfg: WarmstartConfig) -> list[dict]:
    """Stage 1: frame-level event tagging on the audio tower + projector; the heads are discarded."""
    hidden = model.config.text_config.hidden_size
    heads = torch.nn.ModuleList([torch.nn.Linear(hidden, n) for n in (len(FRAME_KINDS), 2, 2, 1)])
    params = [*model.model.audio_tower.parameters(), *model.model.multi_modal_projector.parameters()]
    opt = torch.optim.AdamW([*params, *heads.parameters()], lr=cfg.lr)
    rng = np.random.default_rng([cfg.seed, 1])
    tasks, log = list(synth.TASKS), []
    for step in range(cfg.encoder_steps):
        items = [
            synth.generate_item(
                str(rng.choice(tasks)), cfg.seed, 10_000_000 + step * cfg.encoder_batch_size + i, "encoder"
            )
            for i in range(cfg.encoder_batch_size)
        ]
        enc = processor.feature_extractor(
            [a for _, a in items],
            sampling_rate=synth.SAMPLE_RATE,
            return_tensors="pt",
            padding="max_length",
            return_attention_mask=True,
        )
        x = torch.stack(encode_audio(model, enc["input_features"], enc["attention_mask"]))
        labels = [frame_labels(synth.events_from_item(it), x.shape[1]) for it, _ in items]
        kind, loud, long_, onset = (torch.tensor(np.stack([lab[k] for lab in labels])) for k in range(4))
        logits = [h(x) for h in heads]
        loss = (
            F.cross_entropy(logits[0].transpose(1, 2), kind)
            + F.cross_entropy(logits[1].transpose(1, 2), loud, ignore_index=-100)
            + F.cross_entropy(logits[2].transpose(1, 2), long_, ignore_index=-100)
            + F.binary_cross_entropy_with_logits(logits[3].squeeze(-1), onset)
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 50 == 0:
            events = kind > 0
            acc = float((logits[0].argmax(-1) == kind)[events].float().mean())
            log.append(
                {
                    "encoder_step": step + 1,
                    "loss": round(loss.item(), 4),
                    "event_frame_accuracy": round(acc, 3),
                }
            )
            print(json.dumps(log[-1]), flush=True)
    return log


def lm_loss(model, batch: dict) -> torch.Tensor:
    """Cross-entropy on completion tokens, through the split audio path (encoder once per clip)."""
    feats = encode_audio(model, batch["input_features"], batch["feature_attention_mask"])
    embeds = embed_prompt(model, batch["input_ids"], feats)
    mask = batch["attention_mask"]
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    hidden = language_model(model)(
        inputs_embeds=embeds, attention_mask=mask, position_ids=pos
    ).last_hidden_state
    labels = batch["labels"][:, 1:]
    sel = labels != -100
    logits = model.lm_head(hidden[:, :-1][sel])
    return F.cross_entropy(logits.float(), labels[sel])


def quick_eval(model, processor, per_task: int, seed: int = 4242) -> dict:
    """Greedy accuracy by difficulty in think and no-think mode on a small fixed set."""
    from .inference import AudioLM

    lm = AudioLM(model, processor, max_new_tokens=160)
    items = [synth.generate_item(t, seed, i, "val") for t in synth.TASKS for i in range(per_task)]
    out = {}
    for mode in (THINK, NO_THINK):
        answers = lm.answer_batch(
            [a for _, a in items],
            [it["question"] for it, _ in items],
            [it["choices"] for it, _ in items],
            mode,
        )
        by: dict[str, list[bool]] = {}
        for (it, _), ans in zip(items, answers, strict=True):
            by.setdefault(it["difficulty"], []).append(match_choice(ans.answer, it["answer"], it["choices"]))
        out[mode] = {d: round(float(np.mean(v)), 3) for d, v in sorted(by.items())}
    model.train()
    return out


def train(cfg: WarmstartConfig) -> dict:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    init = cfg.init or (str(TINY_MODEL_DIR) if cfg.from_shipped else "")
    if init:  # continue from a checkpoint: its tokenizer and processor, no encoder pretraining
        from .models import load_policy

        if Path(init).resolve() == out.resolve():
            raise ValueError(f"--out {out} is the checkpoint being continued from; write elsewhere")
        model, processor = load_policy(init)
        model, tokenizer = model.float().train(), processor.tokenizer
        encoder_log = []
    else:
        tokenizer = build_tokenizer(tokenizer_corpus(cfg.seed + 1))
        processor = build_processor(tokenizer)
        model = build_tiny_model(tokenizer, seed=cfg.seed).train()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"tiny Qwen2-Audio: {n_params / 1e6:.2f}M parameters, vocab {len(tokenizer)}", flush=True)
    if not init:
        encoder_log = pretrain_encoder(model, processor, cfg)
    teacher_cfg = cfg.teacher_config()

    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2 and "embed" not in n]
    no_decay = [
        p for n, p in model.named_parameters() if p.requires_grad and not (p.ndim >= 2 and "embed" not in n)
    ]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.98),
        eps=1e-8,
    )

    def lr_at(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    stream = ItemStream(
        processor, cfg.batch_size, cfg.seed, cfg.hard_direct_share, teacher_cfg, cfg.direct_share()
    )
    loader = torch.utils.data.DataLoader(
        stream, batch_size=None, num_workers=1, prefetch_factor=4, persistent_workers=True
    )
    log_path = out / "warmstart_log.jsonl"
    log = log_path.open("w")
    history, ema, step = [], None, 0
    for step, batch in enumerate(loader):
        if step >= cfg.steps or (cfg.max_minutes and time.time() - t_start > 60 * cfg.max_minutes):
            break
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            loss = lm_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        rec = {
            "step": step + 1,
            "loss": round(loss.item(), 4),
            "loss_ema": round(ema, 4),
            "grad_norm": round(float(gnorm), 3),
            "lr": sched.get_last_lr()[0],
            "elapsed_s": round(time.time() - t_start, 1),
        }
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0:
            rec["eval"] = quick_eval(model, processor, cfg.eval_per_task)
        if (step + 1) % 25 == 0 or "eval" in rec:
            print(json.dumps(rec), flush=True)
        log.write(json.dumps(rec) + "\n")
        history.append(rec)
    log.close()

    model.eval()
    final_eval = quick_eval(model, processor, cfg.eval_per_task)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    summary = {
        "config": asdict(cfg),
        "init": init or None,
        "teacher": asdict(teacher_cfg) if teacher_cfg else "gold",
        "steps_done": step,
        "minutes": round((time.time() - t_start) / 60, 1),
        "parameters": n_params,
        "encoder_pretraining": encoder_log,
        "final_quick_eval": final_eval,
        "torch_threads": torch.get_num_threads(),
    }
    (out / "warmstart.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary), flush=True)
    return summary


def _parser():
    """``HfArgumentParser`` over :class:`WarmstartConfig`: a flag and a help line per field; a flag not given
    stays out of the namespace (the fine-tuning defaults of ``--init`` may fill it in)."""
    return config_parser(
        WarmstartConfig,
        given_only=True,
        prog="python -m audio_thinker.warmstart",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
    )


def main(argv=None) -> None:
    parser = _parser()
    args = vars(parser.parse_args(argv))
    if args.get("init"):  # before --out is made: a checkpoint that is not there is one line, not a traceback
        from .errors import first_line
        from .models import model_config

        try:
            model_config(args["init"])
        except ValueError as err:
            parser.exit(2, f"error: --init: {first_line(err)}\n")
    if args.get("from_shipped") or args.get("init"):
        args = FINETUNE_DEFAULTS | args
    train(WarmstartConfig(**args))


if __name__ == "__main__":
    main()
