"""Ask & compare: one question, answered in two modes side by side, streaming."""

from __future__ import annotations

import gradio as gr

from . import service


def _render(ans) -> str:
    if ans is None:
        return ""
    think = f"**Reasoning**\n\n{ans.think}\n\n" if ans.think else ""
    return (
        f"{think}**Answer:** {ans.answer or '(none)'}\n\n"
        f"<sub>{ans.output_mode} · {ans.completion_tokens} tokens · {ans.latency_s:.2f} s</sub>"
    )


def compare(audio, question, choices, mode_a, mode_b):
    """Stream mode A, then mode B (one CPU model; both panes fill in turn)."""
    try:
        a = b = None
        for a in service.answer_stream(audio, question, choices, mode_a):
            yield _render(a), ""
        for b in service.answer_stream(audio, question, choices, mode_b):
            yield _render(a), _render(b)
    except service.UserError as err:
        raise gr.Error(str(err)) from None


def build() -> None:
    """Add the tab's components to the enclosing Blocks."""
    with gr.Row():
        with gr.Column():
            audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Audio")
            question = gr.Textbox(label="Question", max_length=1000)
            choices = gr.Textbox(label="Choices (one per line, optional)", lines=4)
            with gr.Row():
                mode_a = gr.Dropdown(list(service.MODES), value="think", label="Left")
                mode_b = gr.Dropdown(list(service.MODES), value="no-think", label="Right")
            ask = gr.Button("Ask", variant="primary")
        with gr.Column():
            out_a = gr.Markdown(label="Left")
            out_b = gr.Markdown(label="Right")
    examples = service.example_items()
    gr.Examples(
        [[path, it["question"], "\n".join(it["choices"])] for path, it in examples],
        inputs=[audio, question, choices],
        label="synth-aqa examples",
    )
    ask.click(compare, [audio, question, choices, mode_a, mode_b], [out_a, out_b], api_name="compare")
