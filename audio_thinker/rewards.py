"""Rewards of Audio-Thinker (arXiv 2508.08039): pure Python, no torch.

Notation: a GRPO global batch of completions; ``think`` marks completions that
reasoned inside ``<think>…</think>``; ``correct`` marks right final answers.

* Adaptive think accuracy reward, ATAR (Eq. 1-5). With λ the share of think
  completions in the batch, training progress ``p = 1 - step/T`` and the gates
  ``g_think = exp(-λ p)``, ``g_no = exp(-(1-λ) p)``::

      think,    correct:  R_a = g_think
      think,    wrong:    R_a = -(1 - g_think)
      no-think, correct:  R_a = 2 g_no
      no-think, wrong:    R_a = -g_no - 2 (1 - g_no)

  At the end of training (p = 0) both gates are 1, giving {1, 0, 2, -1}.
* Consistency reward R_c ∈ {0, 1} (an LLM judge: is the answer consistent with the
  reasoning); no-think completions get 1 (the paper's rule; ``no_think_consistency="think-mean"``
  gives them the batch mean of the think completions' judged R_c instead, as R_t is filled);
  gated to 0 when the answer is wrong.
* Think-quality reward R_t ∈ [0, 1] in steps of 0.1 (an LLM judge); no-think
  completions get the batch mean over think completions.
* Format reward R_f ∈ {0, 1} (see :func:`format_reward`).
* Total (Eq. 7): ``R = R_a (1 + w_c R_c) + w_f R_f + w_t R_t``.

The last part of the module composes these per reward set (Table 1) as TRL-style reward functions,
``fn(prompts, completions, **columns) -> list[float]``: Eq. 7 is their weighted sum
``R = 1·R_a + w_c·(R_a R_c) + w_f·R_f + w_t·R_t`` (see :func:`reward_functions`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from .prompts import ADAPTIVE, INVALID_OUTPUT, NO_THINK, NO_THINK_OUTPUT, THINK, THINK_OUTPUT

__all__ = [
    "LOGGED_TERMS",
    "NO_THINK_CONSISTENCY",
    "REWARD_SETS",
    "Mode",
    "Parsed",
    "RewardFunction",
    "RewardSet",
    "JudgeScores",
    "accuracy_reward_func",
    "answer_tokens",
    "atar",
    "atar_reward_func",
    "completion_terms",
    "consistency_gate",
    "consistency_reward_func",
    "QUALITY_GRID",
    "QUALITY_STEPS",
    "fill_no_think_quality",
    "format_reward",
    "format_reward_func",
    "is_think",
    "match_choice",
    "parse_completion",
    "reward_functions",
    "quantize_quality",
    "sentence_spans",
    "sentences",
    "shows_think",
    "think_quality_reward_func",
    "total_reward",
]

Mode = Literal["think", "no_think", "invalid"]  # prompts.OUTPUT_MODES

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
_TAG_RE = re.compile(r"</?(?:think|answer)>")  # exact, lower-case tags only
_TOKEN_RE = re.compile(r"\b\w+\b")


@dataclass(frozen=True)
class Parsed:
    """Result of :func:`parse_completion`; ``think``/``answer`` are stripped, None when absent."""

    mode: Mode
    think: str | None
    answer: str | None


def _strict_parse(text: str) -> tuple[str | None, str] | None:
    """Return ``(think, answer)`` for a format-valid completion, else None."""
    pieces = _TAG_RE.split(text)
    tags = _TAG_RE.findall(text)
    if tags == [THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE]:
        lead, think, between, answer, trail = pieces
        if between.strip() or not think.strip():
            return None
        think_text: str | None = think.strip()
    elif tags == [ANSWER_OPEN, ANSWER_CLOSE]:
        lead, answer, trail = pieces
        think_text = None
    else:
        return None
    if lead.strip() or trail.strip() or not answer.strip():
        return None
    return think_text, answer.strip()


def format_reward(text: str) -> float:
    """R_f: 1.0 for ``<think>T</think><answer>A</answer>`` or a lone ``<answer>A</answer>``, else 0.0.

    Only whitespace may surround or separate the blocks. Tags are the exact lower-case
    strings (``<THINK>`` is plain text). Any extra, nested, unclosed or out-of-order tag
    makes the text invalid. Both A and T must be non-empty after strip: an empty
    ``<think></think>`` would be a degenerate way to claim the think mode, so it is invalid.
    """
    return 1.0 if _strict_parse(text) is not None else 0.0


def shows_think(text: str) -> bool:
    """Whether the text contains a ``<think>`` tag (the mode an invalid completion shows, for ATAR)."""
    return THINK_OPEN in text


def _loose_think(text: str) -> str | None:
    start = text.find(THINK_OPEN)
    if start < 0:
        return None
    start += len(THINK_OPEN)
    end = text.find(THINK_CLOSE, start)
    if end < 0:  # unclosed: run to the next answer tag, or to the end
        end = text.find(ANSWER_OPEN, start)
        if end < 0:
            end = len(text)
    return text[start:end].strip()


def _loose_answer(text: str) -> str | None:
    end = text.rfind(ANSWER_CLOSE)
    if end < 0:
        return None
    start = text.rfind(ANSWER_OPEN, 0, end)
    if start < 0:
        return None
    return text[start + len(ANSWER_OPEN) : end].strip()


def parse_completion(text: str) -> Parsed:
    """Split a completion into mode, think and answer.

    Format-valid text (see :func:`format_reward`) gives ``think`` or ``no_think``.
    Otherwise the mode is ``invalid`` with best-effort fields: ``think`` is the content
    of the first ``<think>…</think>`` (an unclosed ``<think>`` runs to the next
    ``<answer>`` or the end); ``answer`` is the content of the last complete
    ``<answer>…</answer>`` block, or None.
    """
    strict = _strict_parse(text)
    if strict is not None:
        think, answer = strict
        return Parsed(THINK_OUTPUT if think is not None else NO_THINK_OUTPUT, think, answer)
    return Parsed(INVALID_OUTPUT, _loose_think(text), _loose_answer(text))


def answer_tokens(text: str) -> list[str]:
    """Lower-cased ``\\b\\w+\\b`` tokens of ``text`` (the MMAU tokeniser)."""
    return _TOKEN_RE.findall(text.lower())


def _contains_phrase(tokens: list[str], phrase: list[str]) -> bool:
    n = len(phrase)
    return any(tokens[i : i + n] == phrase for i in range(len(tokens) - n + 1))


def match_choice(prediction: str | None, answer: str, choices: Sequence[str]) -> bool:
    """The MMAU string-match rule for multiple choice, with word order for permuted choices.

    With tokens = lower-cased ``\\b\\w+\\b`` sets: correct iff every gold token is in the
    prediction and the prediction has no token of a wrong choice (a choice whose token set
    differs from the gold one) that is not also a gold token. A prediction that is None or
    has no tokens is wrong.

    One extension: a wrong choice with exactly the gold's tokens in another order ("down then up"
    against "up then down") is invisible to the bag-of-tokens rule, which would score it correct.
    For such choices word order decides: the gold must appear as a phrase in the prediction and the
    permuted choice must not. Where no two choices share a token set (all of MMAU) the rule is
    unchanged.
    """
    if not prediction:
        return False
    pred_list = answer_tokens(prediction)
    pred = set(pred_list)
    if not pred:
        return False
    gold_list = answer_tokens(answer)
    gold = set(gold_list)
    wrong: set[str] = set()
    permuted: list[list[str]] = []
    for choice in choices:
        tokens_list = answer_tokens(choice)
        tokens = set(tokens_list)
        if tokens != gold:
            wrong |= tokens - gold
        elif tokens_list != gold_list:
            permuted.append(tokens_list)
    if not (gold <= pred and pred.isdisjoint(wrong)):
        return False
    if permuted:
        return _contains_phrase(pred_list, gold_list) and not any(
            _contains_phrase(pred_list, p) for p in permuted
        )
    return True


def atar(think: Sequence[bool], correct: Sequence[bool], step: int, total_steps: int) -> list[float]:
    """Adaptive think accuracy reward R_a (Eq. 1-5) for one global batch.

    λ is the share of think completions in ``think``; ``p = clip(1 - step/total_steps, 0, 1)``.
    An invalid completion should be passed as wrong, in the mode :func:`shows_think` reports.
    """
    n = len(think)
    if n == 0:
        raise ValueError("atar needs a non-empty batch")
    if len(correct) != n:
        raise ValueError(f"think and correct differ in length: {n} != {len(correct)}")
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    lam = sum(1 for t in think if t) / n
    p = min(1.0, max(0.0, 1.0 - step / total_steps))
    g_think = math.exp(-lam * p)
    g_no = math.exp(-(1.0 - lam) * p)
    out: list[float] = []
    for t, c in zip(think, correct, strict=True):
        if t:
            out.append(g_think if c else -(1.0 - g_think))
        else:
            out.append(2.0 * g_no if c else -g_no - 2.0 * (1.0 - g_no))
    return out


def total_reward(
    r_a: float, r_c: float, r_f: float, r_t: float, *, w_c: float = 0.5, w_f: float = 0.5, w_t: float = 1.0
) -> float:
    """Total reward (Eq. 7): ``r_a (1 + w_c r_c) + w_f r_f + w_t r_t``."""
    return r_a * (1.0 + w_c * r_c) + w_f * r_f + w_t * r_t


NO_THINK_CONSISTENCY = ("one", "think-mean")
"""R_c of a no-think completion: ``one``, the paper's rule (a direct answer counts as consistent), or
``think-mean``, the batch mean of the think completions' judged R_c (before the gate), the way the paper
fills R_t; 0.0 when the batch has no think completion. Either is gated by the completion's correctness."""


def consistency_gate(
    r_c: Sequence[float | None],
    correct: Sequence[bool],
    think: Sequence[bool],
    no_think: str = "one",
) -> list[float]:
    """Gated consistency reward R_c: judge value (0 or 1) for think, ``no_think``'s rule
    (:data:`NO_THINK_CONSISTENCY`) for no-think, 0 when wrong.

    Entries for no-think completions are ignored (may be None). Raises ValueError on length
    mismatch, a think entry outside {0, 1} or an unknown rule.
    """
    if not len(r_c) == len(correct) == len(think):
        raise ValueError(f"length mismatch: {len(r_c)}, {len(correct)}, {len(think)}")
    if no_think not in NO_THINK_CONSISTENCY:
        raise ValueError(
            f"no_think_consistency {no_think!r} unknown; choose from {list(NO_THINK_CONSISTENCY)}"
        )
    for rc, t in zip(r_c, think, strict=True):
        if t and (rc is None or rc not in (0, 1)):
            raise ValueError(f"consistency reward must be 0 or 1 for think completions, got {rc!r}")
    # think-mean fills direct answers the way R_t is filled (0 and 1 are on R_t's grid, so nothing is rounded)
    ungated = (
        [float(rc) if t else 1.0 for rc, t in zip(r_c, think, strict=True)]
        if no_think == "one"
        else fill_no_think_quality(r_c, think)
    )
    return [value if c else 0.0 for value, c in zip(ungated, correct, strict=True)]


QUALITY_STEPS = 10
"""R_t is a multiple of ``1 / QUALITY_STEPS`` (0.1) in [0, 1]: judges, ratings and rewards share the grid."""
QUALITY_GRID = tuple(k / QUALITY_STEPS for k in range(QUALITY_STEPS + 1))
"""The R_t values: 0.0, 0.1, …, 1.0."""


def quantize_quality(value: float) -> float:
    """Clip to [0, 1] and round half up to the nearest grid value (:data:`QUALITY_GRID`)."""
    clipped = min(1.0, max(0.0, float(value)))
    return math.floor(clipped * QUALITY_STEPS + 0.5 + 1e-9) / QUALITY_STEPS


_SENTENCE_END = re.compile(r"[!?;]+|\.(?![0-9])|\n")
_END_MARKS = ".!?; \t\n\r\f\v"


def sentences(text: str) -> list[str]:
    """The sentences of a reasoning text, stripped, each with its end mark.

    A sentence ends at a ``.``, a run of ``! ? ;`` or a line break; a period followed by a digit is a
    decimal point ("0.2 s"). Pieces with nothing but end marks are dropped. The one way the project
    counts a trace's sentences: the oracle judge parses them, the learned judge aligns them with a
    reference.
    """
    pieces, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        pieces.append(text[start : m.end()])
        start = m.end()
    pieces.append(text[start:])
    return [p.strip() for p in pieces if p.strip(_END_MARKS)]


def sentence_spans(text: str | None) -> list[tuple[int, int]]:
    """Character spans ``[start, end)`` of the sentences of a think text (a period before a digit is a
    decimal point); surrounding whitespace is not part of a span. The steps a rater picks the first flawed
    one from (the studio's Rate panel stores it as such a span), and the steps of the stepwise export."""
    if not text:
        return []
    spans: list[tuple[int, int]] = []
    pos = 0
    n = len(text)
    while pos < n:
        end = pos
        while end < n:
            ch = text[end]
            if ch == "\n" or (ch in ".!?;" and not (end + 1 < n and text[end + 1].isdigit())):
                end += 1
                break
            end += 1
        start, stop = pos, end
        while start < stop and text[start].isspace():
            start += 1
        while stop > start and text[stop - 1].isspace():
            stop -= 1
        if stop > start:
            spans.append((start, stop))
        pos = end
    return spans


def fill_no_think_quality(r_t: Sequence[float | None], think: Sequence[bool]) -> list[float]:
    """Think-quality reward R_t for a batch.

    Think entries are rounded (half up) to the nearest 0.1 and clipped to [0, 1]; each
    no-think entry (may be None) becomes the mean of the batch's quantised think entries,
    or 0.0 when the batch has none. Raises ValueError on length mismatch or a think entry
    that is None or NaN.
    """
    if len(r_t) != len(think):
        raise ValueError(f"length mismatch: {len(r_t)} != {len(think)}")
    rated: list[float] = []
    for rt, t in zip(r_t, think, strict=True):
        if t:
            if rt is None or math.isnan(rt):
                raise ValueError(f"think completion needs a quality score, got {rt!r}")
            rated.append(quantize_quality(rt))
    fill = sum(rated) / len(rated) if rated else 0.0
    it = iter(rated)
    return [next(it) if t else fill for t in think]


# --------------------------------------------------------------------------------------------------
# The reward sets (Table 1) as TRL-style reward functions
#
# Every function is ``fn(prompts, completions, **columns) -> list[float]``, one reward per completion of
# the global batch (the calling convention of TRL's GRPOTrainer). The GRPO loop passes these columns, one
# entry per completion: ``answer`` and ``choices`` (the item's), ``verdicts`` (the judge's
# :data:`JudgeScores` of a think completion with think text, else None), and the scalars ``step`` and
# ``max_steps``. Functions take what they need and ignore the rest.

JudgeScores = tuple[float, float, bool]
"""A judge's scores of one think trace as the rewards read them: (consistent 0/1, quality 0..1, the judge
failed); the judge's own result is :class:`audio_thinker.judges.Verdict`."""


def is_think(parsed: Parsed, completion: str) -> bool:
    """Think mode: a valid think completion, or an invalid one that shows ``<think>`` (as ATAR scores it)."""
    return parsed.mode == THINK_OUTPUT or (parsed.mode == INVALID_OUTPUT and shows_think(completion))


def _think_and_correct(
    completions: Sequence[str], answer: Sequence[str], choices: Sequence[Sequence[str]]
) -> tuple[list[bool], list[bool]]:
    """Per completion: think mode, and a right final answer (an invalid completion is wrong)."""
    parsed = [parse_completion(c) for c in completions]
    think = [is_think(p, c) for p, c in zip(parsed, completions, strict=True)]
    correct = [
        p.mode != INVALID_OUTPUT and match_choice(p.answer, a, ch)
        for p, a, ch in zip(parsed, answer, choices, strict=True)
    ]
    return think, correct


def _judged_terms(
    think: Sequence[bool],
    correct: Sequence[bool],
    verdicts: Sequence[JudgeScores | None],
    no_think_consistency: str = "one",
) -> tuple[list[float], list[float], list[float | None]]:
    """Gated R_c, filled R_t, and the judge's raw consistency (None where not judged) for a batch.

    A think completion the judge did not see (no think text, or a set without the judge) counts as
    inconsistent with quality 0.
    """
    raw_c: list[float | None] = [v[0] if v is not None else None for v in verdicts]
    raw_t: list[float | None] = [v[1] if v is not None else None for v in verdicts]
    for i, t in enumerate(think):
        if t and raw_c[i] is None:
            raw_c[i], raw_t[i] = 0.0, 0.0
    r_c = consistency_gate(raw_c, correct, think, no_think_consistency)
    return r_c, fill_no_think_quality(raw_t, think), raw_c


def format_reward_func(prompts: Sequence[str], completions: Sequence[str], **_) -> list[float]:
    """R_f of each completion (:func:`format_reward`)."""
    return [format_reward(c) for c in completions]


def accuracy_reward_func(
    prompts: Sequence[str],
    completions: Sequence[str],
    *,
    answer: Sequence[str],
    choices: Sequence[Sequence[str]],
    **_,
) -> list[float]:
    """Plain accuracy (the R1-AQA recipe): 1.0 for a right final answer, else 0.0."""
    return [float(c) for c in _think_and_correct(completions, answer, choices)[1]]


def atar_reward_func(
    prompts: Sequence[str],
    completions: Sequence[str],
    *,
    answer: Sequence[str],
    choices: Sequence[Sequence[str]],
    step: int,
    max_steps: int,
    **_,
) -> list[float]:
    """ATAR's R_a (:func:`atar`); λ is the batch's share of think completions."""
    think, correct = _think_and_correct(completions, answer, choices)
    return atar(think, correct, step, max_steps)


def consistency_reward_func(
    prompts: Sequence[str],
    completions: Sequence[str],
    *,
    answer: Sequence[str],
    choices: Sequence[Sequence[str]],
    verdicts: Sequence[JudgeScores | None],
    step: int,
    max_steps: int,
    no_think_consistency: str = "one",
    **_,
) -> list[float]:
    """Eq. 7's consistency summand ``R_a · R_c`` (ATAR's R_a, gated R_c), to be weighted by w_c.

    ``R_a (1 + w_c R_c) = R_a + w_c (R_a R_c)``: R_c scales the accuracy reward rather than adding to it.
    ``no_think_consistency``: the R_c of direct answers (:data:`NO_THINK_CONSISTENCY`).
    """
    think, correct = _think_and_correct(completions, answer, choices)
    r_a = atar(think, correct, step, max_steps)
    r_c, _, _ = _judged_terms(think, correct, verdicts, no_think_consistency)
    return [a * c for a, c in zip(r_a, r_c, strict=True)]


def think_quality_reward_func(
    prompts: Sequence[str],
    completions: Sequence[str],
    *,
    answer: Sequence[str],
    choices: Sequence[Sequence[str]],
    verdicts: Sequence[JudgeScores | None],
    **_,
) -> list[float]:
    """R_t: the judge's quality of each think trace; no-think completions get the batch mean."""
    think, correct = _think_and_correct(completions, answer, choices)
    return _judged_terms(think, correct, verdicts)[1]


RewardFunc = Callable[..., list[float]]


class RewardFunction(NamedTuple):
    """One summand of the total reward: ``weight · fn(prompts, completions, **columns)``, named ``name``."""

    name: str
    fn: RewardFunc
    weight: float


@dataclass(frozen=True)
class RewardSet:
    """One row of Table 1: the prompt a run trains with and the terms of Eq. 7 it uses."""

    prompt_mode: str
    atar: bool  # R_a is ATAR; else plain accuracy (R1-AQA)
    consistency: bool  # R_c (the judge)
    quality: bool  # R_t (the judge)

    def __post_init__(self) -> None:
        if self.consistency and not self.atar:
            raise ValueError("R_c scales ATAR's R_a (Eq. 7): a set with R_c needs ATAR")

    @property
    def needs_judge(self) -> bool:
        return self.consistency or self.quality

    @property
    def default_w_format(self) -> float:
        """Eq. 7 weighs R_f 0.5; the R1-AQA recipe (no ATAR) adds accuracy and format with weight 1."""
        return 0.5 if self.atar else 1.0


REWARD_SETS: dict[str, RewardSet] = {
    "grpo": RewardSet(THINK, atar=False, consistency=False, quality=False),  # R1-AQA: accuracy + format
    "grpo-nothink": RewardSet(NO_THINK, atar=False, consistency=False, quality=False),
    "atar": RewardSet(ADAPTIVE, atar=True, consistency=False, quality=False),
    "atar+rc": RewardSet(ADAPTIVE, atar=True, consistency=True, quality=False),
    "full": RewardSet(ADAPTIVE, atar=True, consistency=True, quality=True),  # Audio-Thinker
}


def reward_functions(
    reward_set: str, *, w_consistency: float = 0.5, w_format: float | None = None, w_quality: float = 1.0
) -> list[RewardFunction]:
    """The weighted reward functions of ``reward_set``; their sum in this order is Eq. 7.

    ``w_format`` None means the set's default (:attr:`RewardSet.default_w_format`).
    """
    s = REWARD_SETS[reward_set]
    funcs = [RewardFunction("accuracy_reward", atar_reward_func if s.atar else accuracy_reward_func, 1.0)]
    if s.consistency:
        funcs.append(RewardFunction("consistency_bonus", consistency_reward_func, w_consistency))
    funcs.append(
        RewardFunction("format", format_reward_func, s.default_w_format if w_format is None else w_format)
    )
    if s.quality:
        funcs.append(RewardFunction("quality", think_quality_reward_func, w_quality))
    return funcs


LOGGED_TERMS = ("accuracy_reward", "format", "consistency", "quality")
"""The per-completion terms every run logs: the reward functions' ``accuracy_reward`` and ``format``, and
:func:`completion_terms`' gated R_c and filled R_t (logged whether or not the set trains on them)."""


def completion_terms(
    completions: Sequence[str],
    *,
    answer: Sequence[str],
    choices: Sequence[Sequence[str]],
    verdicts: Sequence[JudgeScores | None],
    no_think_consistency: str = "one",
    **_,
) -> dict[str, list]:
    """What a run logs per completion besides the rewards: think mode, correct answer, gated R_c
    (``consistency``), filled R_t (``quality``) and the judge's raw consistency (None where not judged)."""
    think, correct = _think_and_correct(completions, answer, choices)
    r_c, r_t, raw_c = _judged_terms(think, correct, verdicts, no_think_consistency)
    return {"think": think, "correct": correct, "consistency": r_c, "quality": r_t, "judge_consistent": raw_c}
