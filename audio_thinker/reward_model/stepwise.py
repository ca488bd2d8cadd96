"""Step labels in TRL's stepwise-supervision format (``PRMTrainer``): the raters' first-flawed-step marks.

One row per submitted rating of a think trace: ``{"prompt", "completions": [step, ...], "labels": [bool,
...]}``. The steps are the think text's sentences as the studio's Rate panel shows them
(:func:`~audio_thinker.rewards.sentence_spans`, the spans a flawed-step mark is stored as), then the
answer as a last step, ``Answer: X``. Labels, as in TRL's PRM800K conversion:

* a marked flawed step k: steps before k True, step k and every later step (the answer too) False;
* no mark and quality 1.0: every sentence True, the answer step True iff the rating says consistent;
* no mark and quality below 1.0: the rater found a flaw but did not say where, so the rating is left out
  (counted in ``skipped``).

The prompt is the question and the choices as the reward model reads them
(:func:`~audio_thinker.judges.learned.render_prompt`), with ``Reference: …`` (the item's true events, as
the learned judge reads them) when ``reference`` and the item has ground truth. Ratings by several raters of
the same trace are separate rows (as PRM800K keeps each labeler's).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..judges.learned import reference_text, render_prompt
from ..rewards import sentence_spans
from .data import check_sources

__all__ = ["ANSWER_STEP", "STEPWISE", "flawed_step", "step_labels", "stepwise_row", "stepwise_rows"]

STEPWISE = "stepwise"
"""The export format name (``export --format stepwise``)."""
ANSWER_STEP = "Answer: {answer}"
"""The last step of every row: the trace's answer."""


def flawed_step(spans: Sequence[tuple[int, int]], flawed_span: Sequence[int] | None) -> int | None:
    """The step a flawed span marks: the first sentence that ends after the span's start (None: no mark)."""
    if not flawed_span or not spans:
        return None
    start = int(flawed_span[0])
    return next((k for k, (_, end) in enumerate(spans) if end > start), len(spans) - 1)


def step_labels(n_steps: int, flawed: int | None, *, consistent: bool, quality: float) -> list[bool] | None:
    """Labels of ``n_steps`` sentences plus the answer step (None: a flaw without a marked step)."""
    if flawed is not None:
        return [k < flawed for k in range(n_steps + 1)]
    if quality < 1.0 - 1e-9:
        return None
    return [True] * n_steps + [bool(consistent)]


def stepwise_row(
    question: str,
    choices: Sequence[str],
    think: str | None,
    answer: str | None,
    *,
    consistent: bool,
    quality: float,
    flawed_span: Sequence[int] | None,
    meta: Any = None,
    reference: bool = True,
) -> dict[str, Any] | None:
    """One rating as a TRL stepwise row, or None (no think text, or a flaw without a marked step)."""
    spans = sentence_spans(think)
    if not spans:
        return None
    labels = step_labels(len(spans), flawed_step(spans, flawed_span), consistent=consistent, quality=quality)
    if labels is None:
        return None
    prompt = render_prompt(question, choices)
    ref = reference_text(meta) if reference else None
    if ref:
        prompt += f"Reference: {ref}\n"
    steps = [str(think)[s:e] for s, e in spans] + [ANSWER_STEP.format(answer=(answer or "").strip())]
    return {"prompt": prompt, "completions": steps, "labels": labels}


def stepwise_rows(
    store: Any, sources: Iterable[str] | None = None, *, reference: bool = True
) -> tuple[list[dict[str, Any]], int]:
    """Rows of every submitted rating of a think trace (of ``sources``; None: all), and how many ratings
    were left out because they found a flaw without marking its step."""
    rows, skipped = [], 0
    for rec in store.ratings(check_sources(sources)):
        if rec.consistent is None or rec.quality is None or not (rec.think or "").strip():
            continue
        row = stepwise_row(
            rec.question, rec.choices, rec.think, rec.answer, consistent=bool(rec.consistent),
            quality=float(rec.quality), flawed_span=rec.flawed_span, meta=rec.meta, reference=reference,
        )  # fmt: skip
        if row is None:
            skipped += 1
        else:
            rows.append(row)
    return rows, skipped
