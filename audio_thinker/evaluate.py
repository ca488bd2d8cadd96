"""Evaluation in the MMAU layout: accuracy, no-think rate and completion length by difficulty and task.

    python -m audio_thinker.evaluate --data data/test/test.json --mode think --out runs/eval-think

Reads MMAU-layout JSON (MMAU, MMAR-style or synth-aqa; each item's ``audio_id`` is resolved relative to
the JSON file), answers every item with batched greedy generation, scores the parsed answer with the
MMAU matching rule, and writes ``OUT/predictions.json`` (the input items plus ``model_prediction``, the
mode, the think text and completion tokens) and ``OUT/metrics.json``.

``--audio-ablation hiss`` replaces every clip with background hiss of the same length (does the model
listen?). ``--judge oracle`` (or ``llm`` / ``learned`` with ``--judge-model``) also judges every think
trace: each prediction gets ``consistent`` (does the reasoning support the answer) and ``think_quality``,
and the metrics gain ``consistency_rate`` and ``mean_think_quality`` over the think completions.

``--samples K --temperature T`` (K > 1, T > 0) draws K completions per item (one prefill, K continuations):
each prediction keeps its K draws under ``samples`` (prediction, output mode, think, correct; with a judge
also ``consistent`` / ``think_quality``), the top-level fields are the first draw, and every metrics group
gains ``pass_at_k`` (share of items with at least one correct draw), ``sample_accuracy`` (share of correct
draws, an estimate of pass@1 at that temperature), ``k`` and, with a judge, ``sample_consistency_rate`` /
``sample_mean_think_quality`` over all think draws. Greedy decoding (T = 0) with K > 1 is refused: its K draws
would be one.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .audio import DEFAULT_SAMPLING_RATE, AudioError, load_audio
from .data import load_items as load_items  # re-exported: it lived here
from .prompts import ADAPTIVE, INVALID_OUTPUT, MODES, NO_THINK_OUTPUT
from .rewards import match_choice
from .synth import DIFFICULTIES

ABLATIONS = ("none", "hiss", "silence")


def check_clips(items: Sequence[dict]) -> list[dict]:
    """The items, each with its clip decoded at 16 kHz under ``audio`` (as :func:`evaluate` would decode
    it, so that it decodes none again; items with an ``audio`` array are kept). Raises ValueError, naming
    how many and the first bad file, when a clip is missing, unreadable or over-long. The decoded clips
    stay in memory: about 230 MB an hour of audio."""
    bad, decoded = [], []
    for item in items:
        try:
            decoded.append(item if "audio" in item else {**item, "audio": load_audio(item["audio_path"])})
        except AudioError as err:
            bad.append(str(err))
    if bad:
        raise ValueError(
            f"{len(bad)} of {len(items)} items have a clip that cannot be used; the first: {bad[0]}"
        )
    return decoded


def ablate(audio: np.ndarray, kind: str, seed: int) -> np.ndarray:
    """Replace a clip: ``hiss`` (white noise at -42 dBFS RMS, the middle of synth-aqa's range) or ``silence``."""
    if kind == "none":
        return audio
    if kind == "silence":
        return np.zeros_like(audio)
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(len(audio)) * 10 ** (-42 / 20)).astype(np.float32)


def _mean(values: Sequence[float]) -> float | None:
    return round(float(np.mean(values)), 4) if values else None


def _sample_metrics(rows: Sequence[dict]) -> dict:
    """pass@k and the per-draw metrics of rows that carry ``samples`` (empty when none do)."""
    sampled = [r for r in rows if r.get("samples")]
    if not sampled:
        return {}
    draws = [d for r in sampled for d in r["samples"]]
    out = {
        "pass_at_k": _mean([any(d["correct"] for d in r["samples"]) for r in sampled]),
        "sample_accuracy": _mean([d["correct"] for d in draws]),
        "sample_no_think_rate": _mean([d["output_mode"] == NO_THINK_OUTPUT for d in draws]),
        "k": max(len(r["samples"]) for r in sampled),
    }
    judged = [d for d in draws if d.get("consistent") is not None]
    if any("consistent" in d for d in draws):
        out |= _judged_metrics(judged, "sample_")
    return out


def _judged_metrics(judged: Sequence[dict], prefix: str = "") -> dict:
    """The judge's numbers over judged think traces (predictions or draws): consistency rate and mean
    quality, and among the *right* ones the share that is inconsistent and the share below quality 1.0
    (issue #23: reasoning that does not support a right answer, and flawed reasoning behind one)."""
    right = [r for r in judged if r["correct"]]
    return {
        f"{prefix}consistency_rate": _mean([r["consistent"] for r in judged]),
        f"{prefix}mean_think_quality": _mean([r["think_quality"] for r in judged]),
        f"{prefix}right_inconsistent_rate": _mean([not r["consistent"] for r in right]),
        f"{prefix}right_flawed_rate": _mean([r["think_quality"] < 1.0 for r in right]),
        f"{prefix}n_judged": len(judged),
        f"{prefix}n_right_judged": len(right),
    }


def _group_metrics(rows: Sequence[dict]) -> dict:
    judged = [r for r in rows if r.get("consistent") is not None]
    extra = _sample_metrics(rows) | (_judged_metrics(judged) if any("consistent" in r for r in rows) else {})
    return extra | {
        "accuracy": round(float(np.mean([r["correct"] for r in rows])), 4) if rows else 0.0,
        "no_think_rate": round(float(np.mean([r["output_mode"] == NO_THINK_OUTPUT for r in rows])), 4)
        if rows
        else 0.0,
        "mean_completion_tokens": round(float(np.mean([r["completion_tokens"] for r in rows])), 2)
        if rows
        else 0.0,
        "n": len(rows),
    }


def compute_metrics(predictions: Sequence[dict]) -> dict:
    """The metrics dict of ``metrics.json`` from scored predictions."""
    metrics = _group_metrics(predictions)
    metrics["no_prediction"] = sum(1 for r in predictions if not r["model_prediction"])
    for key, field in (
        ("by_difficulty", "difficulty"),
        ("by_task", "task"),
        ("by_sub_category", "sub-category"),
    ):
        groups: dict[str, list[dict]] = {}
        for r in predictions:
            groups.setdefault(str(r.get(field, "unknown")), []).append(r)
        metrics[key] = {k: _group_metrics(v) for k, v in sorted(groups.items())}
    return metrics


def judge_predictions(predictions: list[dict], judge) -> None:
    """Add ``consistent`` / ``think_quality`` to every prediction with a think trace (None elsewhere)."""
    from .judges import JudgeRequest

    judged = [r for r in predictions if r.get("think")]
    verdicts = judge.score_batch(
        [JudgeRequest(r["question"], r["choices"], r["think"], r["model_prediction"], r) for r in judged]
    )
    for r in predictions:
        r["consistent"] = r["think_quality"] = None
    for r, v in zip(judged, verdicts, strict=True):
        r["consistent"], r["think_quality"] = v.consistent, v.quality
    # the draws of --samples K: each think draw judged against its item
    draws = [(r, d) for r in predictions for d in r.get("samples") or () if d.get("think")]
    verdicts = judge.score_batch(
        [JudgeRequest(r["question"], r["choices"], d["think"], d["model_prediction"], r) for r, d in draws]
    )
    for r in predictions:
        for d in r.get("samples") or ():
            d["consistent"] = d["think_quality"] = None
    for (_, d), v in zip(draws, verdicts, strict=True):
        d["consistent"], d["think_quality"] = v.consistent, v.quality


def evaluate(
    lm,
    items: Sequence[dict],
    *,
    mode: str = ADAPTIVE,
    batch_size: int = 32,
    audio_ablation: str = "none",
    temperature: float = 0.0,
    seed: int = 0,
    progress: bool = True,
    desc: str | None = None,
    judge=None,
    samples: int = 1,
) -> tuple[list[dict], dict]:
    """Answer and score ``items`` (each with ``audio_path`` or an ``audio`` array); returns (predictions, metrics).

    With a ``judge`` (see :mod:`audio_thinker.judges`) every think trace is judged too. With ``samples`` K > 1
    (and ``temperature`` > 0) every item gets K draws and the metrics gain pass@K (see the module docstring).
    ``progress`` shows a bar on stderr, labelled ``desc``.
    """
    from tqdm.auto import tqdm

    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    if samples > 1 and temperature <= 0:
        raise ValueError("samples > 1 needs a temperature > 0 (greedy draws are all the same)")

    predictions: list[dict] = []
    bar = tqdm(total=len(items), desc=desc or f"evaluate ({mode})", disable=not progress, unit="item")
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        audios, ok = [], []
        for k, item in enumerate(chunk):
            try:
                audio = (
                    item["audio"]
                    if "audio" in item
                    else load_audio(item["audio_path"], sampling_rate=lm.sampling_rate)
                )
                audios.append(ablate(audio, audio_ablation, seed + start + k))
                ok.append(item)
            except AudioError as err:
                predictions.append(_score(item, None, mode, error=str(err)))
        if ok and samples > 1:
            groups = _sample_group(lm, audios, ok, mode, samples, temperature, seed + start)
            for it, group in zip(ok, groups, strict=True):
                row = _score(it, group[0], mode)
                row["samples"] = [_draw(_score(it, a, mode)) for a in group]
                predictions.append(row)
        elif ok:
            answers = lm.answer_batch(
                audios,
                [it["question"] for it in ok],
                [it["choices"] for it in ok],
                mode,
                temperature=temperature,
                seed=seed + start,
            )
            predictions += [_score(it, ans, mode) for it, ans in zip(ok, answers, strict=True)]
        bar.update(len(chunk))
    bar.close()
    if judge is not None:
        judge_predictions(predictions, judge)
    return predictions, compute_metrics(predictions)


def _sample_group(lm, audios, items, mode: str, k: int, temperature: float, seed: int) -> list[list]:
    """K completions per item from one prefill (``AudioLM.iter_tokens`` with ``group=k``)."""
    import time

    import torch

    from .inference import completion_mask

    t0 = time.perf_counter()
    texts = [lm.prompt_text(it["question"], it["choices"], mode) for it in items]
    batch = lm.prepare(audios, texts)
    with torch.inference_mode():
        cols = list(lm.iter_tokens(batch, temperature=temperature, group=k, seed=seed))
    tokens = torch.stack(cols, 1)
    mask = completion_mask(tokens, lm.eos_ids)
    latency = time.perf_counter() - t0
    prompt_lens = batch.attention_mask.sum(1).tolist()
    out = []
    for i in range(len(items)):
        group = []
        for j in range(i * k, (i + 1) * k):
            ids = tokens[j][mask[j].bool()].tolist()
            n = sum(1 for t in ids if t not in lm.eos_ids)
            group.append(lm._answer(lm.decode(ids), mode, prompt_lens[i], n, latency))
        out.append(group)
    return out


_DRAW_KEYS = ("model_prediction", "model_output", "output_mode", "think", "completion_tokens", "correct")


def _draw(row: dict) -> dict:
    return {k: row[k] for k in _DRAW_KEYS}


def _score(item: dict, ans, mode: str, error: str | None = None) -> dict:
    row = {k: v for k, v in item.items() if k not in ("audio", "audio_path")}
    prediction = (ans.answer or "") if ans else ""
    row.update(
        model_prediction=prediction,
        model_output=ans.text if ans else "",
        mode=mode,
        output_mode=ans.output_mode if ans else INVALID_OUTPUT,
        think=ans.think if ans else None,
        completion_tokens=ans.completion_tokens if ans else 0,
        correct=bool(ans) and match_choice(prediction, item["answer"], item["choices"]),
    )
    if error:
        row["error"] = error
    return row


def format_summary(metrics: dict, mode: str, out: str | Path | None = None) -> str:
    """What ``evaluate`` prints at the end: a table of accuracy, no-think rate, mean tokens and n, overall
    and by difficulty, then the judge's and the sampling's numbers when there are any, then the files."""
    by = metrics.get("by_difficulty", {})
    order = [d for d in DIFFICULTIES if d in by] + sorted(d for d in by if d not in DIFFICULTIES)
    width = max([len("difficulty"), *(len(d) for d in order)])
    lines = [
        f"evaluated {metrics['n']} items, {mode} prompt",
        f"{'difficulty':<{width}}  accuracy  no-think  mean tokens      n",
    ]
    for name, m in [("all", metrics), *((d, by[d]) for d in order)]:
        lines.append(
            f"{name:<{width}}  {m['accuracy']:>8.3f}  {m['no_think_rate']:>8.3f}  "
            f"{m['mean_completion_tokens']:>11.1f}  {m['n']:>5}"
        )
    if metrics.get("n_judged") is not None:
        lines.append(
            f"judged think traces: {metrics['n_judged']}, consistency rate {metrics['consistency_rate']}, "
            f"mean think quality {metrics['mean_think_quality']}"
        )
        if metrics.get("n_right_judged"):
            lines.append(
                f"of the {metrics['n_right_judged']} right ones: inconsistent "
                f"{metrics['right_inconsistent_rate']}, below quality 1.0 {metrics['right_flawed_rate']}"
            )
    if "pass_at_k" in metrics:
        lines.append(
            f"pass@{metrics['k']} {metrics['pass_at_k']:.3f}, sample accuracy {metrics['sample_accuracy']:.3f}"
        )
    if metrics.get("no_prediction"):
        lines.append(f"no answer parsed: {metrics['no_prediction']} of {metrics['n']}")
    if out is not None:
        lines.append(f"wrote {Path(out) / 'metrics.json'} and {Path(out) / 'predictions.json'}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m audio_thinker.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="MMAU-layout JSON file")
    p.add_argument(
        "--model",
        default=None,
        help="model folder or hub id (default: $AUDIO_THINKER_MODEL or the shipped tiny model)",
    )
    p.add_argument("--mode", default=ADAPTIVE, choices=MODES)
    p.add_argument("--out", default=None, help="output folder (default: runs/eval-<mode>)")
    p.add_argument("--limit", type=int, default=None, help="evaluate only the first N items")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--audio-ablation", default="none", choices=ABLATIONS)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--samples",
        type=int,
        default=1,
        help="draws per item (needs --temperature > 0); metrics gain pass_at_k and sample_accuracy",
    )
    p.add_argument(
        "--judge", default=None, help="judge every think trace: oracle (synth-aqa), llm or learned"
    )
    p.add_argument("--judge-model", default=None, help="model path for the llm / learned judge")
    args = p.parse_args(argv)

    if args.samples > 1 and args.temperature <= 0:
        p.error("--samples > 1 needs --temperature > 0")
    for flag, value in (
        ("--limit", args.limit),
        ("--batch-size", args.batch_size),
        ("--samples", args.samples),
    ):
        if value is not None and value < 1:
            p.exit(2, f"error: {flag} must be at least 1, got {value}\n")
    out = Path(args.out or f"runs/eval-{args.mode}")
    if out.exists() and not out.is_dir():
        p.exit(
            2, f"error: --out {out} is a file; give a folder (it gets predictions.json and metrics.json)\n"
        )
    try:
        items = load_items(args.data)[: args.limit]
        decoded = check_clips(items)  # before the model loads: a bad clip would be scored as a wrong answer
    except ValueError as err:
        p.exit(2, f"error: {err}\n")
    from .inference import AudioLM

    try:
        lm = AudioLM.from_pretrained(args.model)
        judge = None
        if args.judge:
            from .judges import make_judge

            judge = make_judge(args.judge, **({"path": args.judge_model} if args.judge_model else {}))
    except ValueError as err:
        p.exit(2, f"error: {err}\n")
    predictions, metrics = evaluate(
        lm,
        decoded if lm.sampling_rate == DEFAULT_SAMPLING_RATE else items,  # else decoded at its rate
        mode=args.mode,
        batch_size=args.batch_size,
        audio_ablation=args.audio_ablation,
        temperature=args.temperature,
        seed=args.seed,
        judge=judge,
        samples=args.samples,
    )
    out.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(args).items()}
    config["model"] = args.model or "default"
    (out / "predictions.json").write_text(json.dumps(predictions, indent=1))
    (out / "metrics.json").write_text(json.dumps({**metrics, "config": config}, indent=1))
    print(format_summary(metrics, args.mode, out))


if __name__ == "__main__":
    main()
