"""The three prompt modes, the output modes, and chat-message building.

- ``think``: reason in <think> </think>, then answer in <answer> </answer> (the R1-AQA / GRPO baseline).
- ``no-think``: answer in <answer> </answer> only.
- ``adaptive``: the paper's Fig. 1 prompt: the model decides whether the problem needs thinking.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

# The prompt modes (what the prompt asks for), hyphenated: --mode no-think, summary["no-think"].
THINK, NO_THINK, ADAPTIVE = "think", "no-think", "adaptive"
PromptMode = Literal["think", "no-think", "adaptive"]  # MODES, spelled out for the type checker
MODES: tuple[str, ...] = (THINK, NO_THINK, ADAPTIVE)

# The output modes (what a completion did: ``Answer.output_mode``, ``Parsed.mode``), with an underscore:
# a prompt mode names a request, an output mode a result (metrics count ``output_mode == NO_THINK_OUTPUT``).
THINK_OUTPUT, NO_THINK_OUTPUT, INVALID_OUTPUT = "think", "no_think", "invalid"
OUTPUT_MODES: tuple[str, ...] = (THINK_OUTPUT, NO_THINK_OUTPUT, INVALID_OUTPUT)

INSTRUCTIONS: dict[str, str] = {
    THINK: "Output the thinking process in <think> </think> and the final answer in <answer> </answer>.",
    NO_THINK: "Output the final answer in <answer> </answer> without thinking.",
    # Audio-Thinker, Fig. 1 (verbatim).
    ADAPTIVE: (
        "First identify whether this problem requires thinking. If the problem requires thinking, output "
        "thinking in <think> </think> and answer in <answer> </answer>. If no thinking is required, output "
        "answer in <answer> </answer>"
    ),
}

MAX_QUESTION_CHARS = 1000
MAX_CHOICES = 10
MAX_CHOICE_CHARS = 200


def check_mode(mode: str) -> str:
    """Return ``mode`` or raise ValueError naming the valid modes."""
    if mode not in INSTRUCTIONS:
        raise ValueError(f"unknown prompt mode {mode!r}; choose one of {', '.join(MODES)}")
    return mode


def check_question(question: str, choices: Sequence[str] | None) -> None:
    """Refuse empty or oversized questions and choices with a clear ValueError."""
    if not question or not question.strip():
        raise ValueError("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise ValueError(
            f"the question is {len(question)} characters long; the limit is {MAX_QUESTION_CHARS}"
        )
    if choices is not None:
        if len(choices) > MAX_CHOICES:
            raise ValueError(f"{len(choices)} choices given; the limit is {MAX_CHOICES}")
        for c in choices:
            if not c.strip():
                raise ValueError("a choice is empty")
            if len(c) > MAX_CHOICE_CHARS:
                raise ValueError(f"a choice is {len(c)} characters long; the limit is {MAX_CHOICE_CHARS}")


def user_text(question: str, choices: Sequence[str] | None, mode: str) -> str:
    """The text part of the user turn: question, options (R1-AQA style) and the mode instruction."""
    check_mode(mode)
    check_question(question, choices)
    text = question.strip()
    if choices:
        text += (
            " Please choose the answer from the following options: ["
            + ", ".join(f"'{c.strip()}'" for c in choices)
            + "]."
        )
    return f"{text} {INSTRUCTIONS[mode]}"


def build_messages(question: str, choices: Sequence[str] | None, mode: str) -> list[dict]:
    """Chat messages in the Qwen2-Audio layout: one user turn with the audio, then the text."""
    return [
        {
            "role": "user",
            "content": [
                {"type": "audio", "audio_url": "input.wav"},
                {"type": "text", "text": user_text(question, choices, mode)},
            ],
        }
    ]


def chat_prompt(processor, question: str, choices: Sequence[str] | None, mode: str) -> str:
    """The generation prompt as text: the Qwen2-Audio chat for an audio processor, or a plain-string user
    turn for a text-only tokenizer (which has no audio slot)."""
    if hasattr(processor, "feature_extractor"):
        messages = build_messages(question, choices, mode)
    else:
        messages = [{"role": "user", "content": user_text(question, choices, mode)}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def format_target(answer: str, think: str | None = None) -> str:
    """An assistant completion in the paper's format (think then answer, or answer only)."""
    if think is None:
        return f"<answer>{answer}</answer>"
    return f"<think>{think}</think><answer>{answer}</answer>"
