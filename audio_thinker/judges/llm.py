"""The llm judge: a prompted causal LM (the paper's setup: Qwen3-8B-Base).

Two prompts per request, for a *base* model (no chat template, no few-shot examples), each ending in a
cue. Default scoring ("logits") reads the model's probabilities of the candidate continuations after the
cue (" yes"/" Yes" vs " no"/" No"; " 0" … " 10"), each candidate scored as the full log-probability of its
tokens, so tokenizers that split " yes" or " 10" into several tokens work. R_c = 1 iff P(yes) > P(no);
R_t = the expected score E[s]/10 over the renormalised 0–10 distribution, snapped to the 0.1 grid (a
candidate's probability excludes the candidates that extend it, e.g. " 1" excludes " 10").
scoring="generate": greedy generation of max_new_tokens and :func:`parse_consistency` /
:func:`parse_quality` on the replies. A reply that cannot be parsed, non-finite scores, or a model error
give ``Verdict.neutral`` (failed), a logged warning and ``failures += 1``; never an exception.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from typing import Any

from ..rewards import quantize_quality
from .base import JudgeRequest, Verdict, warn_once

__all__ = [
    "CONSISTENCY_PROMPT",
    "DEFAULT_LLM_JUDGE",
    "LLMJudge",
    "QUALITY_PROMPT",
    "llm_judge_source",
    "parse_consistency",
    "parse_quality",
]

log = logging.getLogger(__name__)

DEFAULT_LLM_JUDGE = "Qwen/Qwen3-8B-Base"


def llm_judge_source(path: str | None) -> str:
    """The llm judge's model (``path`` or the paper's default), checked loadable; else a one-line ValueError
    that says what the default weighs and how to pick another."""
    from ..models import check_model_source

    try:
        return check_model_source(path or DEFAULT_LLM_JUDGE)
    except ValueError as err:
        hint = (
            ""
            if path
            else f" (the llm judge defaults to the paper's {DEFAULT_LLM_JUDGE}, an 8B model of about 16 GB; "
            "--judge-model picks another causal LM)"
        )
        raise ValueError(f"{err}{hint}") from None


CONSISTENCY_PROMPT = (
    "Below are a question about an audio clip, a student's step-by-step reasoning about the clip, and the "
    "student's final answer. You cannot hear the clip. Do not judge whether the answer is correct. Judge "
    "only whether the reasoning supports the final answer: the final answer is the one that the "
    "reasoning's own observations and steps lead to, and the reasoning does not conclude something else.\n"
    "\n"
    "Question: {question}\n"
    "Choices: {choices}\n"
    "\n"
    "Reasoning:\n"
    "{think}\n"
    "\n"
    "Final answer: {answer}\n"
    "\n"
    'Does the reasoning support the final answer? Reply "yes" or "no".\n'
    "Answer (yes or no):"
)

QUALITY_PROMPT = (
    "Below are a question about an audio clip, a student's step-by-step reasoning about the clip, and the "
    "student's final answer. You cannot hear the clip. Rate the quality of the reasoning from 0 to 10, "
    "regardless of whether the final answer is correct: every step is stated clearly; the observations "
    "about the audio are specific (what is heard, when, and how it sounds); the logic from the "
    "observations to the answer is sound; nothing is repeated or irrelevant. 0 means no useful reasoning, "
    "10 means flawless reasoning.\n"
    "\n"
    "Question: {question}\n"
    "Choices: {choices}\n"
    "\n"
    "Reasoning:\n"
    "{think}\n"
    "\n"
    "Final answer: {answer}\n"
    "\n"
    "Score (0-10):"
)

PROMPTS = {"consistency": CONSISTENCY_PROMPT, "quality": QUALITY_PROMPT}
TRUNCATION_MARKER = "\n[... part of the reasoning cut ...]\n"
# candidate continuations of the cues (logits scoring): text -> label
_CANDIDATES: dict[str, dict[str, int]] = {
    "consistency": {" yes": 1, " Yes": 1, " no": 0, " No": 0},
    "quality": {f" {k}": k for k in range(11)},
}
# policy text that imitates a cue is neutralised, so a trace cannot answer for the judge
_CUE_ECHO = re.compile(r"answer\s*\(\s*yes\s+or\s+no\s*\)|score\s*\(\s*0\s*[-–]\s*10\s*\)", re.IGNORECASE)
_MAX_REPLY_CHARS = 256
_MAX_ANSWER_TOKENS = 64
_THINK_HEAD = 1 / 3  # share of the think budget kept from the start when cutting (the rest from the end)


def _fit_reply(reply: Any) -> str | None:
    """The lower-cased reply, or None when it is not a string or too long to be a short answer."""
    if not isinstance(reply, str) or len(reply) > _MAX_REPLY_CHARS:
        return None
    return reply.lower()


_REPLY_TOKEN = re.compile(r"[a-z]+|[0-9]+(?:\.[0-9]+)?|[^\sa-z0-9]")
_LABELS = {"yes": 1, "true": 1, "1": 1, "no": 0, "false": 0, "0": 0}
_ECHO_JOINERS = {"or", "and", "/", ",", "|", "-"}


def parse_consistency(reply: str) -> int | None:
    """1 / 0 for a yes / no reply (also true/false, 1/0; case and surrounding junk ignored), else None.

    The first label word decides; a label followed (through "or", "/", "," …) by the opposite label is an
    echo of the options ("yes or no", "yes no") → None. Over 256 characters → None.
    """
    text = _fit_reply(reply)
    if text is None:
        return None
    tokens = _REPLY_TOKEN.findall(text)
    first = next((i for i, t in enumerate(tokens) if t in _LABELS), None)
    if first is None:
        return None
    label = _LABELS[tokens[first]]
    for t in tokens[first + 1 :]:
        if t in _ECHO_JOINERS:
            continue
        if _LABELS.get(t, label) != label:
            return None
        break
    return label


_RANGE_ECHO = re.compile(r"\(?\b0\s*(?:-|–|to)\s*10\b\)?")
_SCORE = re.compile(
    r"(-\s*)?([0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:\s*(/)\s*([0-9]+(?:\.[0-9]+)?)|\s*(%)|([eE][+-]?[0-9]))?"
)


def parse_quality(reply: str) -> float | None:
    """The first number of the reply as a quality in [0, 1] (snapped to 0.1), else None.

    An integer or a number above 1 is on the 0–10 scale ("7" → 0.7, "7.5" → 0.8); a decimal up to 1 is a
    fraction ("0.7"); "7/10" and "70%" are ratios. Negative, above the scale, exponent notation, no ASCII
    number (NaN, "٣"), a first number after "/" ("nan/10"), over 256 characters → None. An echoed
    "(0-10)" is skipped.
    """
    text = _fit_reply(reply)
    if text is None:
        return None
    text = _RANGE_ECHO.sub(" ", text)
    m = _SCORE.search(text)
    if m is None or m.group(1) or m.group(6) or text[: m.start()].rstrip().endswith("/"):
        return None  # no number, negative, exponent, or only a denominator ("nan/10")
    number = m.group(2)
    value = float(number)
    if m.group(3):
        denominator = float(m.group(4))
        if denominator <= 0 or value > denominator:
            return None
        q = value / denominator
    elif m.group(5):
        if value > 100:
            return None
        q = value / 100
    elif "." in number and value <= 1:
        q = value
    elif value <= 10:
        q = value / 10
    else:
        return None
    return quantize_quality(q) if math.isfinite(q) else None


def _format_choices(choices: Sequence[str]) -> str:
    return "; ".join(str(c) for c in choices) if choices else "(none given)"


def _clean(text: str) -> str:
    return _CUE_ECHO.sub("[...]", text).strip()


class LLMJudge:
    """A prompted causal LM as the judge (see the section comment above and docs/judge.md).

    ``path``: any HF causal-LM id or folder (default: the paper's Qwen3-8B-Base); or pass a built
    ``model`` and ``tokenizer``. ``scoring``: "logits" (candidate probabilities, default) or "generate"
    (greedy ``max_new_tokens`` and parsing). ``batch_size``: prompts per forward pass (each request has
    two). ``device``/``dtype``: default CUDA in bfloat16 when available, else CPU in float32.
    ``max_prompt_tokens``: longer prompts are cut in the middle of the think text, with a marker.
    ``failures`` counts the requests that got a neutral verdict.
    """

    name = "llm"

    def __init__(
        self,
        path: str | None = None,
        *,
        model: Any = None,
        tokenizer: Any = None,
        scoring: str = "logits",
        max_new_tokens: int = 8,
        batch_size: int = 8,
        device: str | None = None,
        dtype: str | Any = None,
        max_prompt_tokens: int = 2048,
    ) -> None:
        import torch

        if scoring not in ("logits", "generate"):
            raise ValueError(f"scoring must be 'logits' or 'generate', got {scoring!r}")
        if batch_size < 1 or max_new_tokens < 1:
            raise ValueError("batch_size and max_new_tokens must be positive")
        if max_prompt_tokens < 64:
            raise ValueError("max_prompt_tokens must be at least 64")
        if model is None:
            path = llm_judge_source(path)
            from transformers import AutoModelForCausalLM

            device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            if dtype is None:
                dtype = torch.bfloat16 if str(device).startswith("cuda") else torch.float32
            model = AutoModelForCausalLM.from_pretrained(path, dtype=_torch_dtype(dtype)).to(device)
        else:
            if device is not None:
                model = model.to(device)
            if dtype is not None:
                model = model.to(_torch_dtype(dtype))
        if tokenizer is None:
            if path is None:
                raise ValueError("the llm judge needs a tokenizer with a given model (or a path)")
            from ..models import auto_tokenizer

            tokenizer = auto_tokenizer(path)
        self.model = model.eval() if hasattr(model, "eval") else model
        self.tokenizer = tokenizer
        self.scoring = scoring
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.max_prompt_tokens = max_prompt_tokens
        self.failures = 0
        param = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
        self.device = param.device if param is not None else torch.device(device or "cpu")
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id
        self.pad_id = 0 if pad is None else int(pad)  # padded positions are masked: any id works
        eos = tokenizer.eos_token_id
        self.eos_id = None if eos is None else int(eos)
        self._candidates = {kind: self._candidate_ids(kind) for kind in PROMPTS}

    # ---------------------------------------------------------------- prompts

    def _encode(self, text: str, special: bool = True) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special)["input_ids"])

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def _shorten(self, text: str, max_tokens: int, marker: str = TRUNCATION_MARKER) -> str:
        """``text`` cut in the middle to about ``max_tokens`` tokens (head: a third), with ``marker``."""
        ids = self._encode(text, special=False)
        if len(ids) <= max_tokens:
            return text
        keep = max(0, max_tokens - len(self._encode(marker, special=False)))
        head = int(keep * _THINK_HEAD)
        tail = keep - head
        return self._decode(ids[:head]) + marker + (self._decode(ids[-tail:]) if tail else "")

    def encode_prompt(self, request: JudgeRequest, kind: str) -> list[int]:
        """Token ids of the ``kind`` ("consistency" | "quality") prompt, at most ``max_prompt_tokens``."""
        template = PROMPTS[kind]
        fields = {
            "question": _clean(str(request.question)),
            "choices": _clean(_format_choices(request.choices)),
            "answer": self._shorten(_clean(str(request.answer)), _MAX_ANSWER_TOKENS, " [...] "),
        }
        think = _clean(str(request.think))
        budget = self.max_prompt_tokens - len(self._encode(template.format(think="", **fields)))
        ids = self._encode(template.format(think=think, **fields))
        for _ in range(4):  # re-tokenising around the cut can shift the count by a few tokens
            if len(ids) <= self.max_prompt_tokens or budget <= 0:
                break
            ids = self._encode(template.format(think=self._shorten(think, budget), **fields))
            budget -= max(1, len(ids) - self.max_prompt_tokens)
        if len(ids) > self.max_prompt_tokens:  # question or choices alone too long: keep the end (cue)
            warn_once(
                log, "llm judge: a prompt is too long even without the think text; cutting it from the left"
            )
            ids = ids[-self.max_prompt_tokens :]
        return ids

    def _candidate_ids(self, kind: str) -> list[tuple[tuple[int, ...], int]]:
        """(token ids, label) of each candidate continuation of the ``kind`` cue."""
        cue = PROMPTS[kind].rsplit("\n", 1)[-1]
        ctx = self._encode(cue, special=False)
        out = []
        for text, label in _CANDIDATES[kind].items():
            whole = self._encode(cue + text, special=False)
            ids = whole[len(ctx) :] if whole[: len(ctx)] == ctx and len(whole) > len(ctx) else None
            out.append((tuple(ids or self._encode(text, special=False)), label))
        return out

    # ---------------------------------------------------------------- model calls

    def _batch(self, seqs: Sequence[Sequence[int]]) -> tuple[Any, Any, Any]:
        """Left-padded input ids, attention mask and position ids on the model's device."""
        import torch

        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, s in enumerate(seqs):
            ids[row, width - len(s) :] = torch.tensor(list(s), dtype=torch.long)
            mask[row, width - len(s) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        return ids.to(self.device), mask.to(self.device), positions.to(self.device)

    def _generate(self, prompts: Sequence[Sequence[int]]) -> list[str]:
        """Greedy replies (decoded new tokens) for one batch of prompt ids."""
        import torch
        from transformers import GenerationConfig

        ids, mask, _ = self._batch(prompts)
        config = GenerationConfig(
            max_new_tokens=self.max_new_tokens,
            do_sample=False,
            pad_token_id=self.pad_id,
            eos_token_id=self.eos_id,
        )
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
        return [self.tokenizer.decode(row, skip_special_tokens=True) for row in out[:, ids.shape[1] :]]

    def _candidate_logprobs(self, prompts: Sequence[Sequence[int]], kind: str) -> list[list[float]]:
        """log P(candidate | prompt) for each candidate of ``kind`` (rows: prompts), one batch.

        Each prompt is extended by the longest candidate contexts (usually one), so one forward pass
        gives every candidate token's probability; only the last positions' logits are computed.
        """
        import torch

        cands = [c for c, _ in self._candidates[kind]]
        contexts = {c[:j] for c in cands for j in range(1, len(c))}
        exts = [x for x in contexts if not any(len(y) > len(x) and y[: len(x)] == x for y in contexts)] or [
            ()
        ]
        ext_of = [next(e for e in exts if e[: len(c) - 1] == c[:-1]) for c in cands]
        seqs = [list(p) + list(e) for p in prompts for e in exts]
        keep = max(len(e) for e in exts) + 1
        ids, mask, positions = self._batch(seqs)
        inputs = {"input_ids": ids, "attention_mask": mask, "position_ids": positions}
        with torch.inference_mode():
            try:
                logits = self.model(**inputs, logits_to_keep=keep).logits[:, -keep:]
            except TypeError:  # an architecture without logits_to_keep: all positions
                logits = self.model(**inputs).logits[:, -keep:]
        logp = torch.log_softmax(logits.float(), dim=-1).cpu()
        rows: list[list[float]] = []
        for i in range(len(prompts)):
            scores = []
            for c, e in zip(cands, ext_of, strict=True):
                row = i * len(exts) + exts.index(e)
                start = keep - len(e) - 1  # kept index of the logits after the prompt's last token
                scores.append(sum(float(logp[row, start + j, t]) for j, t in enumerate(c)))
            rows.append(scores)
        return rows

    def _run(self, prompts: list[list[int]], kind: str) -> list[Any]:
        """Replies (generate) or candidate log-probs (logits) per prompt; a failed batch → error strings."""
        results: list[Any] = [None] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))  # similar lengths batch together
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            batch = [prompts[i] for i in chunk]
            try:
                out = (
                    self._generate(batch)
                    if self.scoring == "generate"
                    else self._candidate_logprobs(batch, kind)
                )
                if len(out) != len(batch):
                    raise RuntimeError(f"{len(out)} results for {len(batch)} prompts")
            except Exception as exc:  # noqa: BLE001 - a judge error must never stop training
                log.warning(
                    "llm judge: %s batch of %d failed: %s: %s", kind, len(batch), type(exc).__name__, exc
                )
                _free_cuda_memory()
                out = [_ModelError(f"{type(exc).__name__}: {str(exc)[:200]}")] * len(batch)
            for i, r in zip(chunk, out, strict=True):
                results[i] = r
        return results

    # ---------------------------------------------------------------- readouts

    def _readout(self, kind: str, result: Any) -> tuple[float | None, str]:
        """(score or None, detail): consistency 1/0 or quality in [0, 1] from one prompt's result."""
        if isinstance(result, _ModelError):
            return None, f"model error ({result})"
        if isinstance(result, str):
            value = parse_consistency(result) if kind == "consistency" else parse_quality(result)
            return value, f"{kind} reply {result[:60]!r}"
        probs = _exclusive_probs([c for c, _ in self._candidates[kind]], result)
        labels = [label for _, label in self._candidates[kind]]
        total = sum(probs)
        if not (math.isfinite(total) and total > 0):
            return None, f"{kind}: no probability on the candidates"
        if kind == "consistency":
            p_yes = sum(p for p, label in zip(probs, labels, strict=True) if label == 1) / total
            return float(p_yes > 0.5), f"p(yes)={p_yes:.2f}"
        expected = sum(p * label for p, label in zip(probs, labels, strict=True)) / total
        return quantize_quality(expected / 10), f"E[score]={expected:.1f}"

    def score_batch(self, requests: Sequence[JudgeRequest]) -> list[Verdict]:
        verdicts: list[Verdict | None] = [None] * len(requests)
        todo = []
        for i, r in enumerate(requests):
            if not str(r.think or "").strip():
                verdicts[i] = Verdict(consistent=0, quality=0.0, detail="empty think")
            else:
                todo.append(i)
        if todo:
            results = {
                kind: self._run([self.encode_prompt(requests[i], kind) for i in todo], kind)
                for kind in PROMPTS
            }
            for n, i in enumerate(todo):
                c, c_detail = self._readout("consistency", results["consistency"][n])
                q, q_detail = self._readout("quality", results["quality"][n])
                if c is None or q is None:
                    self.failures += 1
                    detail = f"llm judge failed: {c_detail}; {q_detail}"
                    log.warning("%s (failures so far: %d)", detail, self.failures)
                    verdicts[i] = Verdict.neutral(detail=detail)
                else:
                    verdicts[i] = Verdict(consistent=int(c), quality=q, detail=f"{c_detail}; {q_detail}")
        return [v for v in verdicts if v is not None]


class _ModelError(str):
    """The error message standing in for a prompt's result when its batch raised."""


def _exclusive_probs(cands: Sequence[tuple[int, ...]], logprobs: Sequence[float]) -> list[float]:
    """P of each candidate minus the candidates that extend it (" 1" excludes " 10"), clipped at 0."""
    probs = [math.exp(lp) if math.isfinite(lp) else (0.0 if lp == -math.inf else math.nan) for lp in logprobs]
    out = []
    for c, p in zip(cands, probs, strict=True):
        longer = [k for k, d in enumerate(cands) if len(d) > len(c) and d[: len(c)] == c]
        direct = [
            k for k in longer if not any(cands[k][: len(cands[j])] == cands[j] for j in longer if j != k)
        ]
        out.append(max(0.0, p - sum(probs[k] for k in direct)) if math.isfinite(p) else math.nan)
    return out


def _torch_dtype(dtype: Any) -> Any:
    import torch

    return getattr(torch, dtype) if isinstance(dtype, str) else dtype


def _free_cuda_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
