"""Judges for the two reasoning rewards of Audio-Thinker (arXiv 2508.08039).

A judge reads a think trace and the final answer of one completion (a :class:`JudgeRequest`) and returns
a :class:`Verdict`: ``consistent`` (R_c ∈ {0, 1}), ``quality`` (R_t ∈ [0, 1] in steps of 0.1) and
``failed`` (the judge could not judge; a neutral verdict). Backends implement the :class:`Judge`
protocol; :func:`make_judge` builds one by name:

* ``oracle`` — synth-aqa ground truth, pure Python (:mod:`.oracle`);
* ``llm`` — a prompted causal LM, the paper's setup (:mod:`.llm`);
* ``learned`` — the reward model trained from the ratings store (:mod:`.learned`; trained by
  :mod:`audio_thinker.reward_model`).

The interface and the registry are in :mod:`.base`; this package registers the three built-in backends
(:data:`BUILTIN_JUDGES`), so ``make_judge`` knows them whatever was imported first.
"""

from .base import (
    Judge,
    JudgeRequest,
    Verdict,
    available_judges,
    make_judge,
    register_judge,
    score,
)
from .learned import LearnedJudge
from .llm import (
    CONSISTENCY_PROMPT,
    DEFAULT_LLM_JUDGE,
    QUALITY_PROMPT,
    LLMJudge,
    llm_judge_source,
    parse_consistency,
    parse_quality,
)
from .oracle import OracleJudge

__all__ = [
    "BUILTIN_JUDGES",
    "CONSISTENCY_PROMPT",
    "DEFAULT_LLM_JUDGE",
    "QUALITY_PROMPT",
    "Judge",
    "JudgeRequest",
    "LLMJudge",
    "LearnedJudge",
    "OracleJudge",
    "Verdict",
    "available_judges",
    "llm_judge_source",
    "make_judge",
    "parse_consistency",
    "parse_quality",
    "register_judge",
    "score",
]

BUILTIN_JUDGES = {"oracle": OracleJudge, "llm": LLMJudge, "learned": LearnedJudge}
"""The backends :func:`make_judge` always knows, by name."""
for _name, _factory in BUILTIN_JUDGES.items():
    register_judge(_name)(_factory)
del _name, _factory
