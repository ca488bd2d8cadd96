"""One inference API for evaluation, the studio and GRPO rollouts; ``python -m audio_thinker.inference CLIP``
asks a model about one clip.

:class:`AudioLM` wraps a policy and its processor. :meth:`AudioLM.answer` answers one item,
:meth:`AudioLM.answer_batch` many (batched, left-padded), :meth:`AudioLM.stream` yields the text as it
is generated. All of them run :func:`sample`, a small KV-cached sampling loop that encodes each clip once
and can draw ``group`` completions per prompt from one prefill (what GRPO needs).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from .models import embed_prompt, encode_audio, load_policy, unwrap_peft
from .prompts import ADAPTIVE, chat_prompt, check_mode
from .rewards import parse_completion


@dataclass
class Answer:
    """One generated completion and what parsing it says."""

    text: str
    mode: str  # the prompt mode asked for: think | no-think | adaptive
    output_mode: str  # what the completion did: think | no_think | invalid
    think: str | None
    answer: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_s: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Batch:
    """Model inputs for a batch of prompts (left-padded)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    input_features: torch.Tensor
    feature_attention_mask: torch.Tensor


@torch.no_grad()
def sample(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    audio_features: Sequence[torch.Tensor],
    *,
    eos_ids: Sequence[int],
    pad_id: int,
    max_new_tokens: int = 160,
    temperature: float = 1.0,
    group: int = 1,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    all_done: Callable[[bool], bool] | None = None,
) -> Iterator[torch.Tensor]:
    """Sample completions token by token; yields the new column of token ids, shape (B * group,).

    Rows ``i * group … i * group + group - 1`` are the completions of prompt ``i``; the prompt is
    prefilled once and its KV cache repeated. ``temperature == 0`` is greedy decoding. A row that has
    produced an eos keeps yielding ``pad_id``. Stops when every row is done or after ``max_new_tokens``.
    ``generator`` may be one per row: each row then draws from its own stream, so a row's tokens do not
    depend on which other rows share the batch (GRPO's rollouts are the same on 1 or N processes).
    ``all_done`` turns "every row here is done" into the decision to stop (GRPO passes an all-reduce over
    the processes when parameters are sharded, so that all of them run the same number of forwards).
    """
    model = unwrap_peft(model)
    embeds = embed_prompt(model, input_ids, audio_features)
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    out = model(inputs_embeds=embeds, attention_mask=attention_mask, position_ids=positions, use_cache=True)
    logits, cache = out.logits[:, -1].float(), out.past_key_values
    if group > 1:
        logits = logits.repeat_interleave(group, 0)
        attention_mask = attention_mask.repeat_interleave(group, 0)
        positions = positions.repeat_interleave(group, 0)
        cache.batch_repeat_interleave(group)
    last_pos = positions[:, -1:]
    done = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
    eos = torch.tensor(list(eos_ids), device=logits.device)
    for _ in range(max_new_tokens):
        if temperature > 0:
            probs = torch.softmax(logits / temperature, dim=-1)
            if isinstance(generator, Sequence):
                token = torch.cat(
                    [torch.multinomial(p, 1, generator=g) for p, g in zip(probs, generator, strict=True)]
                )
            else:
                token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        else:
            token = logits.argmax(-1)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        yield token
        done |= torch.isin(token, eos)
        finished = bool(done.all())
        if all_done(finished) if all_done is not None else finished:
            return
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones(attention_mask.shape[0], 1)], 1)
        last_pos = last_pos + 1
        out = model(
            input_ids=token[:, None],
            attention_mask=attention_mask,
            position_ids=last_pos,
            past_key_values=cache,
            use_cache=True,
        )
        logits, cache = out.logits[:, -1].float(), out.past_key_values


def decode_completion(tokenizer: Any, tokens: Sequence[int]) -> str:
    """Completion text without special tokens. A NUL character (a byte-level token sampled at a high
    temperature can decode to one) becomes U+FFFD, so that every completion can be stored and shown."""
    return tokenizer.decode(tokens, skip_special_tokens=True).replace("\x00", "\ufffd")


def completion_mask(tokens: torch.Tensor, eos_ids: Sequence[int]) -> torch.Tensor:
    """1 for each generated token up to and including the first eos, 0 after it."""
    is_eos = torch.isin(tokens, torch.tensor(list(eos_ids), device=tokens.device)).int()
    after = (is_eos.cumsum(1) - is_eos) > 0
    return (~after).long()


class AudioLM:
    """A policy and its processor, with the prompt building and decoding around them."""

    def __init__(self, model, processor, *, max_new_tokens: int = 160):
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"
        self.sampling_rate = processor.feature_extractor.sampling_rate
        self.max_new_tokens = max_new_tokens
        gen = getattr(model, "generation_config", None)
        eos = getattr(gen, "eos_token_id", None) or self.tokenizer.eos_token_id
        self.eos_ids = [eos] if isinstance(eos, int) else list(eos)
        self.pad_id = (
            self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0]
        )

    @classmethod
    def from_pretrained(cls, path: str | None = None, **kwargs) -> AudioLM:
        """Load any supported audio LM folder or hub id (default: the shipped tiny model)."""
        model, processor = load_policy(path)
        return cls(model, processor, **kwargs)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # -- inputs ----------------------------------------------------------------------------------------

    def load(self, audio) -> np.ndarray:
        """A waveform at the processor's rate from a path, bytes or an array (arrays are used as given)."""
        if isinstance(audio, np.ndarray):
            return audio.astype(np.float32, copy=False)
        from .audio import load_audio

        return load_audio(audio, sampling_rate=self.sampling_rate)

    def prompt_text(self, question: str, choices: Sequence[str] | None, mode: str) -> str:
        return chat_prompt(self.processor, question, choices, mode)

    def prepare(self, audios: Sequence, texts: Sequence[str]) -> Batch:
        """Tokenize prompts (left-padded) and extract audio features."""
        enc = self.processor(
            text=list(texts),
            audio=[self.load(a) for a in audios],
            sampling_rate=self.sampling_rate,
            return_tensors="pt",
            padding=True,
        )
        dev = self.device
        return Batch(
            enc["input_ids"].to(dev),
            enc["attention_mask"].to(dev),
            enc["input_features"].to(dev),
            enc["feature_attention_mask"].to(dev),
        )

    # -- generation ------------------------------------------------------------------------------------

    def iter_tokens(
        self,
        batch: Batch,
        *,
        temperature: float = 0.0,
        group: int = 1,
        seed: int | None = None,
        max_new_tokens: int | None = None,
    ) -> Iterator[torch.Tensor]:
        gen = None
        if seed is not None:
            gen = torch.Generator(device=self.device).manual_seed(seed)
        feats = encode_audio(self.model, batch.input_features, batch.feature_attention_mask)
        yield from sample(
            self.model,
            batch.input_ids,
            batch.attention_mask,
            feats,
            eos_ids=self.eos_ids,
            pad_id=self.pad_id,
            max_new_tokens=max_new_tokens or self.max_new_tokens,
            temperature=temperature,
            group=group,
            generator=gen,
        )

    def decode(self, tokens: Sequence[int]) -> str:
        return decode_completion(self.tokenizer, tokens).strip()

    def answer_batch(
        self,
        audios: Sequence,
        questions: Sequence[str],
        choices: Sequence[Sequence[str] | None],
        mode: str | Sequence[str] = ADAPTIVE,
        *,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[Answer]:
        """Answer many items in one batch (greedy by default)."""
        modes = [mode] * len(questions) if isinstance(mode, str) else list(mode)
        for m in modes:
            check_mode(m)
        t0 = time.perf_counter()
        texts = [self.prompt_text(q, c, m) for q, c, m in zip(questions, choices, modes, strict=True)]
        batch = self.prepare(audios, texts)
        with torch.inference_mode():
            cols = list(self.iter_tokens(batch, temperature=temperature, seed=seed))
        tokens = torch.stack(cols, 1) if cols else batch.input_ids.new_zeros(len(texts), 0)
        mask = completion_mask(tokens, self.eos_ids)
        latency = time.perf_counter() - t0
        prompt_lens = batch.attention_mask.sum(1).tolist()
        out = []
        for i, m in enumerate(modes):
            ids = tokens[i][mask[i].bool()].tolist()
            n = sum(1 for t in ids if t not in self.eos_ids)
            out.append(self._answer(self.decode(ids), m, prompt_lens[i], n, latency))
        return out

    def answer(
        self, audio, question: str, choices: Sequence[str] | None = None, mode: str = ADAPTIVE, **kwargs
    ) -> Answer:
        """Answer one item."""
        return self.answer_batch([audio], [question], [choices], mode, **kwargs)[0]

    @torch.inference_mode()  # as a decorator torch re-enters the mode at every step, on whatever thread
    def stream(
        self,
        audio,
        question: str,
        choices: Sequence[str] | None = None,
        mode: str = ADAPTIVE,
        *,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> Iterator[Answer]:
        """Yield a growing :class:`Answer` after every generated token; the last one is final."""
        check_mode(mode)
        t0 = time.perf_counter()
        batch = self.prepare([audio], [self.prompt_text(question, choices, mode)])
        prompt_len = int(batch.attention_mask.sum())
        ids: list[int] = []
        for col in self.iter_tokens(batch, temperature=temperature, seed=seed):
            tok = int(col[0])
            if tok in self.eos_ids:
                break
            ids.append(tok)
            yield self._answer(self.decode(ids), mode, prompt_len, len(ids), time.perf_counter() - t0)
        yield self._answer(self.decode(ids), mode, prompt_len, len(ids), time.perf_counter() - t0)

    @staticmethod
    def _answer(text: str, mode: str, prompt_tokens: int, completion_tokens: int, latency: float) -> Answer:
        parsed = parse_completion(text)
        return Answer(
            text, mode, parsed.mode, parsed.think, parsed.answer, prompt_tokens, completion_tokens, latency
        )


def main(argv: Sequence[str] | None = None) -> None:
    """Answer one question about one clip and print the completion and its parsed answer."""
    from .audio import DEFAULT_SAMPLING_RATE, AudioError, load_audio
    from .errors import first_line
    from .models import check_model_source, default_model_path
    from .prompts import MODES

    p = argparse.ArgumentParser(
        prog="python -m audio_thinker.inference", description="Ask a model one question about one clip."
    )
    p.add_argument("clip", help="audio file (WAV, FLAC, OGG, MP3, ...)")
    p.add_argument("--question", default="What do you hear?", help="the question asked about the clip")
    p.add_argument("--choices", nargs="+", default=None, help="answer choices (a multiple-choice question)")
    p.add_argument("--model", default=None, help="model folder or hub id (default: the shipped tiny model)")
    p.add_argument("--mode", default=ADAPTIVE, choices=MODES, help="prompt mode (default: adaptive)")
    p.add_argument("--max-new-tokens", type=int, default=160, help="generation length cap (default: 160)")
    args = p.parse_args(argv)
    if args.max_new_tokens < 1:
        p.exit(2, f"error: --max-new-tokens must be at least 1, got {args.max_new_tokens}\n")
    try:
        audio = load_audio(args.clip)  # refused before the model loads
        source = check_model_source(args.model or default_model_path())
    except (AudioError, ValueError) as err:
        p.exit(2, f"error: {first_line(err)}\n")
    lm = AudioLM.from_pretrained(source, max_new_tokens=args.max_new_tokens)
    try:
        clip = audio if lm.sampling_rate == DEFAULT_SAMPLING_RATE else args.clip  # else decoded at its rate
        ans = lm.answer(clip, args.question, args.choices, args.mode)
    except ValueError as err:  # a question or choices the prompt refuses
        p.exit(2, f"error: {first_line(err)}\n")
    print(ans.text)
    print(f"answer: {ans.answer} ({ans.output_mode}, {ans.completion_tokens} tokens, {ans.latency_s:.2f} s)")


if __name__ == "__main__":
    main()
