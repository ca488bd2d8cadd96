"""Ask & compare: one question answered in two prompt modes, streaming side by side, then a vote.

As in Chatbot Arena the two answers are shown as "Model A" (left) and "Model B" (right) in random order
(the swap is stored with the vote), the vote buttons unlock only when both answers are complete and
stored, and the modes are revealed after the vote.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator
from typing import Any

import gradio as gr

from .services import compare as service
from .services import spectrogram
from .services.auth import annotator
from .services.model import audio_check, audio_warning, model_card_markdown
from .services.state import DB_CONCURRENCY, GENERATION_CONCURRENCY, UserError
from .ui import user_error, warn_instead

STREAM_INTERVAL_S = 0.05
ASK_LABEL = "Ask both"


_TAG_RE = re.compile(r"</?(?:think|answer)>")
_ANSWER_LABEL_RE = re.compile(r"^\s*(?:\*\*)?answer\s*:\s*(?:\*\*)?\s*", re.IGNORECASE)


def display_text(raw: str) -> str:
    """A completion's answer as text: "**Answer:**" once, then the answer, without stray ``<think>`` /
    ``</think>`` / ``<answer>`` tags or the model's own "Answer:" labels (the reasoning is shown apart,
    see :func:`_messages`)."""
    start = raw.find("<answer>")
    body = raw[start + len("<answer>") :] if start >= 0 else raw
    body = _TAG_RE.sub(" ", body)
    while True:  # "Answer: Answer: 2" -> "2"
        stripped = _ANSWER_LABEL_RE.sub("", body, count=1)
        if stripped == body:
            break
        body = stripped
    body = " ".join(body.split())
    return f"**Answer:** {body}" if body else "…"


OUT_OF_TOKENS = "**No answer: ran out of tokens.** The reasoning used all {n} tokens without closing."
OUT_OF_TOKENS_DIRECT = (
    "**No answer: ran out of tokens.** The reply used all {n} tokens without closing its answer."
)


def _messages(question: str, side: service.Side) -> list[dict]:
    """The chat for one side: the question, the reasoning as an open "Reasoning" block (a spinner only
    while it streams), then the answer, or a visible "no answer: ran out of tokens" when it never came."""
    msgs: list[dict] = [{"role": "user", "content": question}]
    ans = side.answer
    if ans is None:
        return msgs
    raw = ans.text
    start = raw.find("<think>")
    if start < 0:
        if (
            side.ran_out_of_tokens
        ):  # a direct answer cut off at the cap is not an answer: say so, show the rest
            cut = " ".join(_TAG_RE.sub(" ", raw).split())
            msgs.append({"role": "assistant", "content": OUT_OF_TOKENS_DIRECT.format(n=side.tokens)
                         + (f"\n\n<sub>What it wrote before the cap: {cut}</sub>" if cut else "")})  # fmt: skip
        else:
            msgs.append({"role": "assistant", "content": display_text(raw)})
        return msgs
    end = raw.find("</think>", start)
    think = raw[start + len("<think>") : end if end >= 0 else None].strip()
    rest = raw[end + len("</think>") :] if end >= 0 else ""
    meta: dict[str, Any] = {"title": "Reasoning"}  # no status: open by default, no spinner
    if end < 0 and not side.done:
        meta["status"] = "pending"  # still thinking: spinner (and open)
    elif side.ran_out_of_tokens:
        meta["title"] = "Reasoning (cut off at the token cap)"
    msgs.append({"role": "assistant", "content": think or "…", "metadata": meta})
    if side.ran_out_of_tokens:
        msgs.append({"role": "assistant", "content": OUT_OF_TOKENS.format(n=side.tokens)})
    elif rest.strip() or side.done:
        msgs.append({"role": "assistant", "content": display_text(rest)})
    return msgs


def _stats(side: service.Side, revealed: bool = False, gold: str | None = None) -> str:
    if side.answer is None:
        return "<sub>waiting…</sub>"
    first = f" · first token {side.first_token_s:.2f} s" if side.first_token_s is not None else ""
    state = "" if side.done else " · streaming…"
    if side.ran_out_of_tokens:
        state = " · **no answer: ran out of tokens**"
    mode = f" · mode **{side.mode}** ({side.answer.output_mode})" if revealed else ""
    mark = " · ⚠ **not one of the choices**" if side.off_choices else ""
    if side.correct is not None:
        mark += " · ✓ **correct**" if side.correct else f" · ✗ **wrong** (correct: {gold})"
    return f"<sub>{side.tokens} tokens · {side.compute_s:.2f} s{first}{state}</sub>{mark}{mode}"


def _buttons(enabled: bool) -> list[Any]:
    return [gr.update(interactive=enabled) for _ in range(4)]


def ask(
    audio: str | None, question: str, choices: str, pair: str, request: gr.Request
) -> Iterator[tuple[Any, ...]]:
    """Stream both answers (left/right in random order), store them, then unlock the vote buttons."""
    with user_error():
        user = annotator(request)  # must be signed in
        swapped = random.random() < 0.5  # True: stored answer A is shown on the right
        last_emit = 0.0
        comp = None
        yield (None, [], "", [], "", *_buttons(False), "")
        for comp in service.compare_stream(audio, question, choices, pair, user=user):
            left, right = (comp.b, comp.a) if swapped else (comp.a, comp.b)
            now = time.perf_counter()
            if not comp.stored and now - last_emit < STREAM_INTERVAL_S and not comp.finished:
                continue
            last_emit = now
            yield (
                None,
                _messages(question, left), _stats(left, gold=comp.gold),
                _messages(question, right), _stats(right, gold=comp.gold),
                *_buttons(False), audio_warning(comp.audio_flags),
            )  # fmt: skip
        assert comp is not None and comp.stored
        state = {
            "a": comp.a.generation_id, "b": comp.b.generation_id, "swapped": swapped, "item": comp.item_id,
            "modes": (comp.a.mode, comp.b.mode), "voted": False, "question": question,
            "sides": (comp.b, comp.a) if swapped else (comp.a, comp.b), "gold": comp.gold,
        }  # fmt: skip
        left, right = state["sides"]
        warning = audio_warning(comp.audio_flags)
        yield (
            state,
            _messages(question, left), _stats(left, gold=comp.gold),
            _messages(question, right), _stats(right, gold=comp.gold),
            *_buttons(True), (warning + "\n\n" if warning else "") + "Both answers are in. Which one is better?",
        )  # fmt: skip


VOTE_OUTPUTS = 8
"""state, both stats, the four vote buttons, the result line."""


@warn_instead(VOTE_OUTPUTS)
def cast_vote(screen_choice: str, state: dict | None, request: gr.Request) -> tuple[Any, ...]:
    """Store the vote for the on-screen choice (converted to the stored A/B) and reveal the modes."""
    with user_error():
        user = annotator(request)
        if state and state.get("voted"):  # a second click of a double-click: the vote is already saved
            return tuple(gr.skip() for _ in range(VOTE_OUTPUTS))
        if not state:
            raise UserError("Ask a question first, then vote on its two answers.")
        if state.get("cleared"):
            raise UserError("An answer was cleared: ask again to compare and vote.")
        stored = service.screen_vote_to_stored(screen_choice, state["swapped"])
        service.vote(user, state["a"], state["b"], stored, state["swapped"])
        state = {**state, "voted": True}
        left, right = state["sides"]
        words = {"left": "Model A (left) is better", "right": "Model B (right) is better", "tie": "a tie",
                 "both_bad": "both are bad"}  # fmt: skip
        gr.Info("Vote saved. Thank you!")
        return (
            state, _stats(left, True, state.get("gold")), _stats(right, True, state.get("gold")), *_buttons(False),
            f"Saved: {words[screen_choice]}. Model A was **{left.mode}**, Model B was **{right.mode}**.",
        )  # fmt: skip


def share_clip(state: dict | None, request: gr.Request) -> str:
    """Admins: put the clip and question just asked (with its traces) into everyone's rating queue."""
    with user_error():
        user = annotator(request)
        if not state or state.get("item") is None:
            raise UserError("Ask a question first; then its clip can be shared.")
        service.share(user, state["item"])
        gr.Info("Shared: this clip's traces are now in every annotator's rating queue.")
        return "This clip is shared: its traces are in every annotator's rating queue."


PRIVACY_NOTE = (
    "<sub>🔒 Your uploads and recordings are private: only you hear them and rate their traces, unless an "
    "admin shares a clip into the common rating queue.</sub>"
)


def answer_cleared(state: dict | None) -> tuple[Any, ...]:
    """An answer pane was cleared: nothing left to compare, so no vote until the next Ask."""
    state = {**state, "cleared": True} if state else None
    return (state, *_buttons(False), "An answer was cleared: ask again to compare and vote.")


def check_audio(audio: str | None) -> str:
    """Right after an upload or recording: warn when it cannot be used (nothing is stored either way), and
    say on the page (``#cmp-audio-flag``) when it is far from what the model was trained to hear."""
    if not audio:
        return ""
    try:
        return audio_warning(audio_check(audio))
    except UserError as err:
        gr.Warning(str(err), title="Unusable audio")
        return ""


def show_spectrogram(audio: str | None) -> Any:
    """The chosen clip's spectrogram with a time axis (hidden without a clip or when it cannot be read)."""
    fig = spectrogram.figure(audio)
    return gr.update(value=fig, visible=fig is not None)


def _voter(choice: str):
    def vote_handler(state: dict | None, request: gr.Request) -> tuple[Any, ...]:
        return cast_vote(choice, state, request)

    return vote_handler


def _answer_column(label: str, side: str) -> tuple[gr.Chatbot, gr.Markdown]:
    """One side of the comparison: the streamed answer (``#cmp-<side>``) and its stats line below."""
    with gr.Column():
        chat = gr.Chatbot(
            label=label, height=340, elem_id=f"cmp-{side}",
            feedback_options=None, buttons=["copy"],
        )  # fmt: skip
        stats = gr.Markdown(elem_id=f"cmp-{side}-stats")
    return chat, stats


def build() -> tuple[list[Any], gr.Markdown]:
    """Add the tab's components and events to the enclosing Blocks; returns the admin-only components
    (hidden until the page knows its user is an admin) and the model card (filled on page load)."""
    state = gr.State(None)
    with gr.Accordion("What this model can hear", open=True, elem_id="cmp-model-card"):
        card = gr.Markdown(elem_id="cmp-model-card-text")
    with gr.Row():
        with gr.Column(scale=2):
            audio = gr.Audio(
                sources=["upload", "microphone"], type="filepath", label="Audio (≤ 30 s)", elem_id="cmp-audio"
            )
            spectro = gr.Plot(label="Spectrogram (time in seconds)", visible=False, elem_id="cmp-spectrogram")
            audio_flag = gr.Markdown(elem_id="cmp-audio-flag")
            gr.Markdown(PRIVACY_NOTE, elem_id="cmp-privacy")
            question = gr.Textbox(
                label="Question", max_length=service.MAX_QUESTION_CHARS, elem_id="cmp-question"
            )
            choices = gr.Textbox(
                label="Choices (one per line, optional)", lines=3, max_lines=10, elem_id="cmp-choices"
            )
            pair = gr.Radio(
                list(service.PAIRS), value="think vs no-think", label="Compare", elem_id="cmp-pair"
            )
            ask_btn = gr.Button(ASK_LABEL, variant="primary", elem_id="cmp-ask")
        with gr.Column(scale=3):
            with gr.Row(equal_height=True):
                chat_l, stats_l = _answer_column("Model A", "left")
                chat_r, stats_r = _answer_column("Model B", "right")
            with gr.Row():
                v_left = gr.Button("← A is better", interactive=False, elem_id="vote-left")
                v_right = gr.Button("B is better →", interactive=False, elem_id="vote-right")
                v_tie = gr.Button("Tie", interactive=False, elem_id="vote-tie")
                v_bad = gr.Button("Both are bad", interactive=False, elem_id="vote-bad")
            result = gr.Markdown(elem_id="cmp-result")
            share_btn = gr.Button(
                "Share this clip into the common queue (admin)", size="sm", visible=False, elem_id="cmp-share"
            )
    examples = service.example_items()
    gr.Examples(
        [[path, it["question"], "\n".join(it["choices"])] for path, it in examples],
        inputs=[audio, question, choices],
        label="synth-aqa examples (one per task): click one, then Ask both; the answers are then marked "
        "correct or wrong (the correct answer is shown only then, so that it does not sway your vote)",
        examples_per_page=9,
        example_labels=[f"{it.get('sub-category', 'example')} · {it['question']}" for _, it in examples],
    )
    buttons = [v_left, v_right, v_tie, v_bad]
    for trigger in (audio.upload, audio.stop_recording):
        trigger(check_audio, audio, audio_flag, api_visibility="private", show_progress="hidden")
    audio.clear(lambda: "", None, audio_flag, api_visibility="private", queue=False)
    audio.change(show_spectrogram, audio, spectro, api_visibility="private", show_progress="hidden")
    # Ask is disabled from the click until the answers are in (or refused): one click, one comparison
    asked = ask_btn.click(
        lambda: gr.update(interactive=False, value="Answering…"), None, ask_btn, queue=False,
        api_visibility="private", show_progress="hidden",
    ).then(
        ask,
        [audio, question, choices, pair],
        [state, chat_l, stats_l, chat_r, stats_r, *buttons, result],
        api_name="compare_stream",
        api_visibility="undocumented",
        concurrency_id="model",
        concurrency_limit=GENERATION_CONCURRENCY,
    )  # fmt: skip
    for after in (asked.success, asked.failure):  # enabled again whether the answers came or an error
        after(lambda: gr.update(interactive=True, value=ASK_LABEL), None, ask_btn, queue=False,
              api_visibility="private", show_progress="hidden")  # fmt: skip
    for btn, choice in zip(buttons, ("left", "right", "tie", "both_bad"), strict=True):
        btn.click(
            _voter(choice),
            [state],
            [state, stats_l, stats_r, *buttons, result],
            api_visibility="private",
            concurrency_id="db",
            concurrency_limit=DB_CONCURRENCY,
            trigger_mode="once",  # a double-click is one vote
        )
    for chat in (chat_l, chat_r):
        chat.clear(answer_cleared, [state], [state, *buttons, result], api_visibility="private", queue=False)
    share_btn.click(share_clip, [state], result, api_visibility="private", concurrency_id="db")
    return [share_btn], card


def card_text(request: gr.Request) -> str:
    """The model card panel for whoever loads the page (model paths as :func:`app.services.model.model_label`)."""
    try:
        user = annotator(request)
    except UserError:
        user = ""
    return model_card_markdown(user)
