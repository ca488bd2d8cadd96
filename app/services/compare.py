"""Ask & compare: answer one question in two modes side by side, store both answers, and vote on them."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audio_thinker import synth
from audio_thinker.inference import Answer, AudioLM
from audio_thinker.prompts import check_question
from audio_thinker.rewards import match_choice
from audio_thinker.store import MAX_QUESTION_CHARS as MAX_QUESTION_CHARS  # the question box's limit
from audio_thinker.store import STUDIO_RUN, AccessDeniedError, NotFoundError

from .auth import LOCAL_ANNOTATOR, require_admin
from .model import audio_check, load_upload, model, model_name
from .state import STATE, UserError, db, store

PAIRS: dict[str, tuple[str, str]] = {
    "think vs no-think": ("think", "no-think"),
    "think vs adaptive": ("think", "adaptive"),
    "no-think vs adaptive": ("no-think", "adaptive"),
}


def parse_choices(text: str | Sequence[str] | None) -> list[str] | None:
    """Choices typed one per line (or a list); blank lines ignored; None when there are none."""
    lines = text.splitlines() if isinstance(text, str) else list(text or [])
    choices = [str(line).strip() for line in lines if str(line).strip()]
    return choices or None


@dataclass
class Side:
    """One of the two answers of a comparison, in stored order (A is the pair's first mode)."""

    mode: str
    answer: Answer | None = None
    done: bool = False
    compute_s: float = 0.0
    first_token_s: float | None = None
    generation_id: int | None = None
    max_tokens: int | None = None  # the model's token cap
    correct: bool | None = None  # against a built-in example's gold answer (None: no gold known)
    off_choices: bool = False  # finished with an answer that is none of the choices given

    @property
    def ran_out_of_tokens(self) -> bool:
        """Finished at the token cap without closing its answer (the reasoning never ended)."""
        a = self.answer
        return bool(
            self.done and a is not None and a.answer is None and self.max_tokens
            and a.completion_tokens >= self.max_tokens
        )  # fmt: skip

    @property
    def text(self) -> str:
        return self.answer.text if self.answer else ""

    @property
    def tokens(self) -> int:
        return self.answer.completion_tokens if self.answer else 0

    def to_dict(self) -> dict:
        a = self.answer
        return {
            "generation_id": self.generation_id,
            "mode": self.mode,
            "output_mode": a.output_mode if a else None,
            "think": a.think if a else None,
            "answer": a.answer if a else None,
            "text": self.text,
            "completion_tokens": self.tokens,
            "latency_s": round(self.compute_s, 4),
            "first_token_s": None if self.first_token_s is None else round(self.first_token_s, 4),
            "ran_out_of_tokens": self.ran_out_of_tokens,
            "correct": self.correct,
        }


@dataclass
class Comparison:
    """The state of a two-mode comparison while it streams and after it is stored."""

    a: Side
    b: Side
    item_id: int | None = None
    clip_hash: str | None = None
    model: str = ""
    gold: str | None = None  # a built-in example's correct answer
    audio_flags: list[str] = field(default_factory=list)  # why the clip is unlike the training clips

    @property
    def finished(self) -> bool:
        return self.a.done and self.b.done

    @property
    def stored(self) -> bool:
        return self.a.generation_id is not None and self.b.generation_id is not None

    def to_dict(self) -> dict:
        return {
            "item_id": self.item_id,
            "clip_hash": self.clip_hash,
            "model": self.model,
            "gold": self.gold,
            "audio_flags": self.audio_flags,
            "a": self.a.to_dict(),
            "b": self.b.to_dict(),
        }


def compare_stream(
    audio_path: str | None,
    question: str,
    choices: str | Sequence[str] | None,
    pair: str = "think vs no-think",
    *,
    save: bool = True,
    original_name: str | None = None,
    user: str | None = None,
) -> Iterator[Comparison]:
    """Answer in both modes of ``pair``, token by token in turn (side by side), then store everything.

    Yields the growing :class:`Comparison` after every step; the last one is stored (clip by content
    hash, item, both generations) and carries the generation ids. Nothing is stored when the audio or
    question is refused or generation fails. Each side's ``compute_s`` counts only its own steps. ``user``
    (who asked) is recorded as having been shown the pair, which is what lets them vote on it.
    """
    if pair not in PAIRS:
        raise UserError(f"Unknown comparison {pair!r}; choose one of: {', '.join(PAIRS)}.")
    question = (question or "").strip()
    choice_list = parse_choices(choices)
    try:
        check_question(question, choice_list)
    except ValueError as err:
        raise UserError(f"Please check the question: {err}.") from err
    lm = model()
    wave = load_upload(audio_path, lm.sampling_rate)
    cap = lm.max_new_tokens
    comp = Comparison(
        Side(PAIRS[pair][0], max_tokens=cap), Side(PAIRS[pair][1], max_tokens=cap), model=model_name()
    )
    assert audio_path is not None
    example = _example_for(hashlib.sha256(Path(audio_path).read_bytes()).hexdigest(), question)
    if example is not None:
        comp.gold = example["answer"]
    else:
        comp.audio_flags = audio_check(audio_path)
    sides = (comp.a, comp.b)
    steps = (STATE.pair_runner or _stream_pair)(lm, wave, question, choice_list, (comp.a.mode, comp.b.mode))
    try:
        for k, ans, seconds in steps:
            side = sides[k]
            side.compute_s += seconds
            if ans is None:
                side.done = True
                given = side.answer.answer if side.answer else None
                side.off_choices = bool(choice_list and given and not any(
                    match_choice(given, c, choice_list) for c in choice_list
                ))  # fmt: skip
                if comp.gold is not None:
                    side.correct = match_choice(side.answer.answer if side.answer else None, comp.gold,
                                                choice_list or [])  # fmt: skip
            else:
                side.answer = ans
                if side.first_token_s is None:
                    side.first_token_s = side.compute_s
            yield comp
    except ValueError as err:  # the model refused the inputs
        raise UserError(str(err)) from err
    finally:
        steps.close()
    if save:
        _save_comparison(comp, audio_path, question, choice_list or [], original_name, user)
        yield comp


def _stream_pair(
    lm: AudioLM, wave: Any, question: str, choices: list[str] | None, modes: tuple[str, str]
) -> Iterator[tuple[int, Answer | None, float]]:
    """Interleave the two streams token by token: yields (side, growing answer or None when that side
    has finished, seconds spent on this step)."""
    streams = [lm.stream(wave, question, choices, mode) for mode in modes]
    done = [False, False]
    try:
        while not all(done):
            for k, stream in enumerate(streams):
                if done[k]:
                    continue
                t0 = time.perf_counter()
                try:  # Gradio may resume this on another worker thread: AudioLM.stream handles that
                    ans: Answer | None = next(stream)
                except StopIteration:
                    done[k], ans = True, None
                yield k, ans, time.perf_counter() - t0
    finally:
        for stream in streams:
            stream.close()


def use_gpu_decorator(decorator: Callable) -> None:
    """Run generation under ``decorator`` (``spaces.GPU`` on a ZeroGPU Space) and put the model on CUDA."""
    STATE.pair_runner = decorator(_stream_pair)
    STATE.on_gpu = True


def _save_comparison(
    comp: Comparison, audio_path: str | None, question: str, choices: list[str], original_name: str | None,
    user: str | None = None,
) -> None:  # fmt: skip
    st = store()
    assert audio_path is not None
    clip = db(lambda: st.add_clip(audio_path, original_name=original_name or Path(audio_path).name))
    example = _example_for(clip.hash, question)
    if example is not None:
        item = db(
            lambda: st.add_item(
                question, choices, answer=example["answer"], source="synth-aqa", external_id=example["id"],
                clip=clip.hash, task=example.get("sub-category"), difficulty=example.get("difficulty"),
                meta={"events": example.get("events", [])},
            )
        )  # fmt: skip
    else:  # an upload or recording: private to whoever asked (its key includes them)
        owner = user or LOCAL_ANNOTATOR
        key = hashlib.sha256(json.dumps([owner, clip.hash, question, choices]).encode()).hexdigest()[:32]
        item = db(
            lambda: st.add_item(
                question, choices, source="upload", external_id=key, clip=clip.hash, owner=owner
            )
        )
    comp.item_id, comp.clip_hash = item.id, clip.hash
    for side in (comp.a, comp.b):
        ans = side.answer
        raw = (ans.text if ans else "") or "(empty)"
        gen = db(
            lambda ans=ans, raw=raw, side=side: st.add_generation(
                item.id, comp.model, side.mode, raw,
                think=(ans.think or None) if ans else None, answer=(ans.answer or None) if ans else None,
                completion_tokens=side.tokens, latency_s=round(side.compute_s, 4), run=STUDIO_RUN, reuse=True,
            )
        )  # fmt: skip
        side.generation_id = gen.id
    if user is not None:
        a, b = comp.a.generation_id, comp.b.generation_id
        assert a is not None and b is not None
        db(lambda: st.show_comparison(a, b, user))


def example_items() -> list[tuple[str, dict]]:
    """One synth-aqa example per task, written once to a temporary folder: (wav path, item)."""
    import tempfile

    with STATE.lock:
        if STATE.examples is None:
            out = Path(tempfile.mkdtemp(prefix="audio-thinker-examples-"))
            path = synth.make_split(out, n=len(synth.TASKS), seed=2024, split="example")
            items = json.loads(path.read_text())
            examples = {}
            for it in items:
                wav = out / it["audio_id"]
                it["path"] = str(wav)
                examples[hashlib.sha256(wav.read_bytes()).hexdigest()] = it
            STATE.examples = examples
        return [(it["path"], it) for it in STATE.examples.values()]


def _example_for(clip_hash: str, question: str) -> dict | None:
    """The synth-aqa example with these bytes and this question (to store its gold answer), if any."""
    examples = STATE.examples
    if examples is None:
        return None
    it = examples.get(clip_hash)
    return it if it is not None and it["question"] == question else None


# ------------------------------------------------------------------------------------------------ votes


def vote(user: str, generation_a: int, generation_b: int, choice: str, swapped: bool = False) -> dict:
    """Record ``user``'s preference (``choice`` names the stored generation: A, B, tie, both_bad).

    Only on a comparison ``user`` was shown (or two imported traces); voting again updates the vote.
    """
    st = store()
    try:
        v = db(
            lambda: st.vote(
                int(generation_a), int(generation_b), choice, user, swapped=bool(swapped), shown_only=True
            )
        )
    except (NotFoundError, AccessDeniedError):
        raise UserError("You can only vote on a comparison you were shown.") from None
    return {"vote_id": v.id, "generation_a": v.generation_a_id, "generation_b": v.generation_b_id,
            "choice": v.choice, "swapped": v.swapped, "annotator": user}  # fmt: skip


def screen_vote_to_stored(screen_choice: str, swapped: bool) -> str:
    """The stored vote for a click on the screen: ``left``/``right``/``tie``/``both_bad``.

    ``swapped`` means generation A is shown on the right.
    """
    if screen_choice == "left":
        return "B" if swapped else "A"
    if screen_choice == "right":
        return "A" if swapped else "B"
    if screen_choice in ("tie", "both_bad"):
        return screen_choice
    raise UserError(f"unknown vote {screen_choice!r}")


def share(user: str, item_id: int, shared: bool = True) -> dict:
    """Admins only: put an item (an upload's clip and question, with its traces) into everyone's queue, or
    take it back (``shared=False``)."""
    require_admin(user, "share clips")
    st = store()
    try:
        item = db(lambda: st.share_item(int(item_id), bool(shared)))
    except NotFoundError:
        raise UserError(f"No item {item_id}.") from None
    return {"item_id": item.id, "shared": item.shared}
