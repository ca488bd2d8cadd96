"""Bootstrap: policy traces on synth-aqa items, rated by the oracle (and corrupted gold traces).

Synth-aqa items (clips, items with the ground truth in ``meta``) are answered by the policy in think mode
at a ladder of temperatures (one trace per item per temperature, run ``bootstrap``) and every think trace
is rated by the oracle (annotator and source ``oracle``). ``corrupt_share`` S adds a share S of corrupted
gold traces (one fact, count, onset or the answer changed; run ``bootstrap-corrupted``), rated by the
oracle like the others; the default is 0 (policy traces only). Items that already have bootstrap traces
are skipped, so an interrupted bootstrap resumes.
"""

from __future__ import annotations

import io
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config_args import config_field as _arg
from ..judges import JudgeRequest, make_judge
from ..judges.oracle_grammar import RE_TALLY, parse_trace
from ..rewards import sentences
from .data import BOOTSTRAP_RUN, CORRUPTED_RUN, RewardModelError

__all__ = ["CORRUPTIONS", "DEFAULT_TEMPERATURES", "ORACLE", "bootstrap", "corrupt_trace"]

DEFAULT_TEMPERATURES = (0.7, 1.0, 1.3, 1.6)


@dataclass
class BootstrapConfig:
    """Options of :func:`bootstrap` (the ``bootstrap`` subcommand: a flag and a help line per field)."""

    n: int = _arg(2000, "synth-aqa items (traces: n x temperatures)")
    model: str | None = _arg(None, "policy folder; none: $AUDIO_THINKER_MODEL or the shipped model")
    temperatures: tuple[float, ...] = _arg(DEFAULT_TEMPERATURES, "sampling temperatures, comma-separated")
    corrupt_share: float = _arg(0.0, "share of corrupted gold traces added, against the policy's traces")
    batch_size: int = _arg(32, "items answered per batch")
    max_new_tokens: int | None = _arg(None, "longest trace in tokens; none: the model's default")
    seed: int = _arg(0, "seed of the items and the sampling")
    split: str = _arg("rm", "synth split name in the item ids")
    progress: bool = _arg(True, "a progress bar (--no-progress or --quiet: none)")


ORACLE = "oracle"
_SWAPS = {
    "low": "high", "high": "low", "middle": "low", "short": "long", "long": "short",
    "loud": "quiet", "quiet": "loud", "up": "down", "down": "up",
}  # fmt: skip
CORRUPTIONS = {"fact": 3, "onset": 2, "drop": 2, "count": 1, "tally": 1, "conclusion": 1, "answer": 1}
"""Kinds of corruption and their odds (among the kinds that apply to a trace)."""


def corrupt_trace(item: Mapping[str, Any], rng: random.Random) -> tuple[str, str, str]:
    """A flawed variant of the item's gold trace (``reasoning``): ``(think, answer, kind)``.

    One edit, drawn among the kinds that apply (odds :data:`CORRUPTIONS`): ``fact`` (one attribute of one
    event flipped: high/low, short/long, loud/quiet, up/down), ``onset`` (one onset moved by 0.3-0.8 s),
    ``drop`` (one of several event sentences removed), ``count`` ("That is N beeps" off by one), ``tally``
    (one running tally off by one), ``conclusion`` (stated conclusion and answer both another choice),
    ``answer`` (only the answer changed). The oracle then rates the result like any trace: most kinds
    lower the quality, ``conclusion`` and ``answer`` break only the consistency. The event, count and
    concluding sentences are found with the oracle judge's parser (:mod:`..judges.oracle_grammar`).
    """
    think, answer = str(item["reasoning"]), str(item["answer"])
    others = [c for c in item["choices"] if c != answer] or [answer]
    parts = sentences(think)
    parsed = [parse_trace(s) for s in parts]  # each sentence as the oracle reads it
    events = [i for i, p in enumerate(parsed) if p.claims]
    attr_re = re.compile(r"\b(?:" + "|".join(_SWAPS) + r")\b(?! high| low)")
    spots = {
        "fact": [(i, m) for i in events for m in attr_re.finditer(parts[i].split("(")[0])],
        "onset": [(i, m) for i in events for m in re.finditer(r"\bat (\d+\.\d) s", parts[i])],
        "drop": [(i, None) for i in events] if len(events) >= 2 else [],
        "count": [
            (i, st.number)
            for i, p in enumerate(parsed)
            for st in p.statements
            if st.kind == "count" and st.tones_only
        ],
        "tally": [(i, m) for i in events for m in RE_TALLY.finditer(parts[i])],
        "conclusion": [(i, None) for i, p in enumerate(parsed) if p.conclusions]
        if others != [answer]
        else [],
        "answer": [(0, None)],
    }
    kinds = [k for k in CORRUPTIONS if spots[k]]
    kind = rng.choices(kinds, weights=[CORRUPTIONS[k] for k in kinds])[0]
    i, m = rng.choice(spots[kind])
    s = parts[i]
    if kind == "fact":
        parts[i] = s[: m.start()] + _SWAPS[m.group()] + s[m.end() :]
    elif kind == "onset":
        old, shift = float(m.group(1)), rng.uniform(0.3, 0.8)
        new = old + shift if old < 1.2 or rng.random() < 0.5 else max(0.0, old - shift)
        parts[i] = s[: m.start(1)] + f"{new:.1f}" + s[m.end(1) :]
    elif kind == "drop":
        del parts[i]
    elif kind == "count":
        n = m  # the count the oracle read
        n2 = n + 1 if n <= 1 or rng.random() < 0.5 else n - 1
        parts[i] = f"That is {n2} beep{'s' if n2 != 1 else ''}."
    elif kind == "tally":
        g = rng.choice((1, 3))  # the tally's two numbers
        value = int(m.group(g))
        value = value + 1 if value == 0 or rng.random() < 0.5 else value - 1
        parts[i] = s[: m.start(g)] + str(value) + s[m.end(g) :]
    elif kind == "conclusion":
        answer = rng.choice(others)
        parts[i] = f"So the answer is {answer}."
    else:
        return think, rng.choice(others), kind
    return " ".join(parts), answer, kind


def _wav_bytes(audio: np.ndarray, sampling_rate: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.asarray(audio, dtype=np.float32), sampling_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def _bootstrapped_items(store: Any) -> set[int]:
    return store.items_with_generations([BOOTSTRAP_RUN, CORRUPTED_RUN])


def bootstrap(
    store: Any,
    lm: Any,
    *,
    n: int,
    seed: int = 0,
    temperatures: Sequence[float] = DEFAULT_TEMPERATURES,
    batch_size: int = 32,
    corrupt_share: float = 0.0,
    max_new_tokens: int | None = None,
    model_name: str | None = None,
    split: str = "rm",
    progress: bool = True,
) -> dict[str, int]:
    """Answer ``n`` synth-aqa items with ``lm`` (think mode, one trace per temperature), rate every think
    trace with the oracle, store everything; returns what was added. Reproducible for a given seed."""
    from tqdm.auto import tqdm

    from .. import synth

    if n < 1:
        raise RewardModelError(f"--n must be at least 1, got {n}")
    if not 0.0 <= corrupt_share < 1.0:
        raise RewardModelError(f"--corrupt-share must be in [0, 1), got {corrupt_share}")
    if not temperatures or any(t < 0 for t in temperatures):
        raise RewardModelError(f"temperatures must be non-negative, got {list(temperatures)}")
    oracle = make_judge(ORACLE)
    model_name = model_name or str(getattr(lm.model, "name_or_path", "") or "policy")
    done = _bootstrapped_items(store)
    added = {"items": 0, "generations": 0, "ratings": 0, "corrupted": 0, "skipped_items": 0, "empty": 0}
    per_item_corrupt = corrupt_share / (1.0 - corrupt_share) * len(temperatures)
    tasks = synth.task_schedule(n)
    saved_max = lm.max_new_tokens
    if max_new_tokens:
        lm.max_new_tokens = max_new_tokens
    bar = tqdm(total=n, desc="bootstrap", disable=not progress, unit="item")
    try:
        for start in range(0, n, batch_size):
            batch = []
            for index in range(start, min(n, start + batch_size)):
                item, audio = synth.generate_item(tasks[index], seed, index, split)
                clip = store.add_clip(_wav_bytes(audio, synth.SAMPLE_RATE), original_name=f"{item['id']}.wav")
                meta = {
                    k: item[k] for k in ("id", "events", "reasoning", "sub-category", "split", "category")
                }
                row = store.add_item(
                    item["question"], item["choices"], answer=item["answer"], source="synth-aqa",
                    external_id=item["id"], clip=clip.hash, meta=meta | {"seed": seed, "index": index},
                    task=item["sub-category"], difficulty=item["difficulty"],
                )  # fmt: skip
                if row.id in done:
                    added["skipped_items"] += 1
                    continue
                added["items"] += 1
                batch.append((row.id, item, audio))
            if not batch:
                bar.update(min(n, start + batch_size) - start)
                continue
            outputs: list[tuple[int, dict, str, str | None, str | None, str, int | None, float | None]] = []
            for k, temp in enumerate(temperatures):
                answers = lm.answer_batch(
                    [a for _, _, a in batch], [it["question"] for _, it, _ in batch],
                    [it["choices"] for _, it, _ in batch], "think", temperature=temp,
                    seed=seed * 1_000_003 + start * 101 + k,
                )  # fmt: skip
                for (item_id, item, _), ans in zip(batch, answers, strict=True):
                    outputs.append(
                        (item_id, item, ans.text, ans.think, ans.answer, BOOTSTRAP_RUN, ans.completion_tokens,
                         ans.latency_s / len(batch))
                    )  # fmt: skip
            for item_id, item, _ in batch:
                rng = random.Random(f"{seed}-{item['id']}-corrupt")
                k = int(per_item_corrupt) + (rng.random() < per_item_corrupt - int(per_item_corrupt))
                for _ in range(k):
                    think, answer, _kind = corrupt_trace(item, rng)
                    raw = f"<think>{think}</think><answer>{answer}</answer>"
                    outputs.append((item_id, item, raw, think, answer, CORRUPTED_RUN, None, None))
            requests, gens = [], []
            for item_id, item, raw, think, answer, run, tokens, latency in outputs:
                if not raw.strip():
                    added["empty"] += 1
                    continue
                gen = store.add_generation(
                    item_id, model_name if run == BOOTSTRAP_RUN else "gold-corrupted", "think", raw,
                    think=think, answer=answer, completion_tokens=tokens, latency_s=latency, run=run,
                )  # fmt: skip
                added["generations"] += 1
                added["corrupted"] += run == CORRUPTED_RUN
                if (gen.think or "").strip():
                    requests.append(
                        JudgeRequest(item["question"], item["choices"], gen.think, gen.answer or "", item)
                    )
                    gens.append(gen.id)
            for gid, verdict in zip(gens, oracle.score_batch(requests), strict=True):
                if verdict.failed:
                    continue
                store.rate(
                    gid, ORACLE, consistent=bool(verdict.consistent), quality=verdict.quality,
                    comment=verdict.detail[:2000] or None, source=ORACLE,
                )  # fmt: skip
                added["ratings"] += 1
            bar.update(min(n, start + batch_size) - start)
    finally:
        lm.max_new_tokens = saved_max
        bar.close()
    return added
