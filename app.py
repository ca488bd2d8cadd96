"""Audio-Thinker studio: ``python app.py`` (also the Hugging Face Space entry point).

Environment: GRADIO_SERVER_PORT, AUDIO_THINKER_MODEL (model folder or hub id), AUDIO_THINKER_DB.
"""

from __future__ import annotations

import argparse
import os

import gradio as gr

from app import compare


def build_app() -> gr.Blocks:
    with gr.Blocks(title="Audio-Thinker studio") as demo:
        gr.Markdown(
            "# Audio-Thinker studio\nAsk an audio question and compare thinking with answering directly."
        )
        with gr.Tab("Ask & compare"):
            compare.build()
    demo.queue(default_concurrency_limit=1, max_size=64)
    return demo


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model folder, hub id, or a GRPO run's final/")
    args = p.parse_args()
    if args.model:
        os.environ["AUDIO_THINKER_MODEL"] = args.model
    build_app().launch()


if __name__ == "__main__":
    main()
