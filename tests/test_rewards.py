"""Tests for audio_thinker.rewards (Audio-Thinker reward equations)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from audio_thinker.rewards import (
    QUALITY_GRID,
    REWARD_SETS,
    Parsed,
    answer_tokens,
    atar,
    consistency_gate,
    fill_no_think_quality,
    format_reward,
    match_choice,
    parse_completion,
    quantize_quality,
    reward_functions,
    sentences,
    shows_think,
    total_reward,
)

# ---------------------------------------------------------------- format / parse

VALID_THINK = [
    ("<think>reason</think><answer>A</answer>", "reason", "A"),
    ("<think>reason</think>\n<answer>A</answer>", "reason", "A"),
    ("  \n<think>\n step 1\n step 2\n</think>\n\n<answer> higher </answer>\n  ", "step 1\n step 2", "higher"),
    ("<think>a < b and c > d</think> <answer>x</answer>", "a < b and c > d", "x"),
    ("<think>mentions <THINK> uppercase</think><answer>y</answer>", "mentions <THINK> uppercase", "y"),
]
VALID_NO_THINK = [
    ("<answer>A</answer>", "A"),
    ("\n  <answer>\nthe second\n</answer>\n", "the second"),
    ("\t<answer>(A) higher</answer>", "(A) higher"),
]
INVALID = {
    "empty": "",
    "plain text": "the answer is A",
    "repeated think": "<think>a</think><think>b</think><answer>A</answer>",
    "repeated answer": "<answer>A</answer><answer>B</answer>",
    "two answers after think": "<think>a</think><answer>A</answer>\n<answer>B</answer>",
    "answer inside think": "<think>a <answer>B</answer> b</think><answer>A</answer>",
    "empty answer": "<think>a</think><answer></answer>",
    "whitespace answer": "<think>a</think><answer> \n\t </answer>",
    "lone empty answer": "<answer></answer>",
    "empty think": "<think></think><answer>A</answer>",
    "whitespace think": "<think>  \n </think><answer>A</answer>",
    "trailing text": "<think>a</think><answer>A</answer> done",
    "trailing text no think": "<answer>A</answer>.",
    "leading text": "Sure! <think>a</think><answer>A</answer>",
    "leading text no think": "Answer: <answer>A</answer>",
    "nested think": "<think>a <think>b</think> c</think><answer>A</answer>",
    "nested think open": "<think>a <think>b</think><answer>A</answer>",
    "unclosed think": "<think>a <answer>A</answer>",
    "unclosed think only": "<think>reasoning forever",
    "unclosed answer": "<think>a</think><answer>A",
    "unopened answer": "<think>a</think>A</answer>",
    "close think without open": "a</think><answer>A</answer>",
    "out of order": "<answer>A</answer><think>a</think>",
    "uppercase think": "<THINK>a</THINK><answer>A</answer>",
    "uppercase answer": "<ANSWER>A</ANSWER>",
    "mixed case": "<Think>a</Think><Answer>A</Answer>",
    "text between blocks": "<think>a</think> so <answer>A</answer>",
    "swapped closing": "<think>a</answer><answer>A</think>",
    "answer nested in answer": "<answer>A <answer>B</answer></answer>",
    "spaced tag": "<think >a</think ><answer>A</answer>",
    "think only": "<think>a</think>",
}


@pytest.mark.parametrize(("text", "think", "answer"), VALID_THINK)
def test_valid_think(text: str, think: str, answer: str) -> None:
    assert format_reward(text) == 1.0
    assert parse_completion(text) == Parsed("think", think, answer)
    assert shows_think(text)


@pytest.mark.parametrize(("text", "answer"), VALID_NO_THINK)
def test_valid_no_think(text: str, answer: str) -> None:
    assert format_reward(text) == 1.0
    assert parse_completion(text) == Parsed("no_think", None, answer)
    assert not shows_think(text)


@pytest.mark.parametrize("text", list(INVALID.values()), ids=list(INVALID))
def test_invalid_format(text: str) -> None:
    assert format_reward(text) == 0.0
    assert parse_completion(text).mode == "invalid"


def test_parsed_is_frozen() -> None:
    parsed = parse_completion("<answer>A</answer>")
    with pytest.raises(AttributeError):
        parsed.mode = "think"  # type: ignore[misc]


def test_invalid_best_effort_fields() -> None:
    p = parse_completion("<think> r </think> so <answer> A </answer>")
    assert p == Parsed("invalid", "r", "A")
    # last complete answer block wins
    assert parse_completion("<answer>A</answer><answer> B </answer>").answer == "B"
    assert parse_completion("<think>x</think><answer>A</answer><answer>B</answer>").answer == "B"
    assert parse_completion("<answer>A <answer>B</answer>").answer == "B"
    # unclosed think runs to the next answer tag, or the end
    assert parse_completion("<think> loose <answer>A</answer>") == Parsed("invalid", "loose", "A")
    assert parse_completion("<think> endless reasoning ") == Parsed("invalid", "endless reasoning", None)
    # first think block
    assert parse_completion("<think>one</think><think>two</think><answer>A</answer>").think == "one"
    # empty blocks are present-but-empty, not None
    assert parse_completion("<think></think><answer></answer>") == Parsed("invalid", "", "")
    # no tags at all
    assert parse_completion("just text") == Parsed("invalid", None, None)
    assert parse_completion("<answer>unclosed") == Parsed("invalid", None, None)
    # uppercase tags are not tags
    assert parse_completion("<THINK>a</THINK><ANSWER>b</ANSWER>") == Parsed("invalid", None, None)


def test_shows_think_on_invalid() -> None:
    assert shows_think("<think>a <answer>A</answer>")
    assert shows_think("x <think>")
    assert not shows_think("<THINK>a</THINK><answer>A</answer>")
    assert not shows_think("a</think><answer>A</answer>")


TAG_ALPHABET = [
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
    "<THINK>",
    "a",
    "B c",
    " ",
    "\n",
    "<",
    ">",
    "/",
]


@given(st.lists(st.sampled_from(TAG_ALPHABET), max_size=12).map("".join))
def test_format_iff_parse_valid(text: str) -> None:
    reward = format_reward(text)
    assert reward in (0.0, 1.0)
    parsed = parse_completion(text)
    assert (reward == 1.0) == (parsed.mode != "invalid")
    if parsed.mode == "think":
        assert parsed.think and parsed.answer
    if parsed.mode == "no_think":
        assert parsed.think is None and parsed.answer


_inner = st.text(alphabet="ab <>/\n", min_size=0, max_size=8).filter(
    lambda s: not any(tag in s for tag in ("<think>", "</think>", "<answer>", "</answer>"))
)
_ws = st.text(alphabet=" \n\t", max_size=3)


@given(_ws, _inner, _ws, _inner, _ws, st.booleans())
def test_constructed_completions(
    lead: str, think: str, mid: str, answer: str, trail: str, with_think: bool
) -> None:
    body = f"<think>{think}</think>{mid}" if with_think else ""
    text = f"{lead}{body}<answer>{answer}</answer>{trail}"
    expect_valid = bool(answer.strip()) and (not with_think or bool(think.strip()))
    assert format_reward(text) == (1.0 if expect_valid else 0.0)
    parsed = parse_completion(text)
    assert parsed.answer == answer.strip()
    assert parsed.think == (think.strip() if with_think else None)
    if expect_valid:
        assert parsed.mode == ("think" if with_think else "no_think")


# ---------------------------------------------------------------- MMAU matching


def test_answer_tokens() -> None:
    assert answer_tokens("(A) Higher, then LOWER!") == ["a", "higher", "then", "lower"]
    assert answer_tokens("") == []
    assert answer_tokens("it's 2.5 dB") == ["it", "s", "2", "5", "db"]


@pytest.mark.parametrize(
    ("prediction", "answer", "choices", "expected"),
    [
        ("the second", "the second", ["the first", "the second", "the third"], True),
        ("the first", "the second", ["the first", "the second", "the third"], False),
        ("higher", "higher", ["higher", "lower"], True),
        ("higher or lower", "higher", ["higher", "lower"], False),
        ("2", "2", ["1", "2", "3", "4"], True),
        ("3", "2", ["1", "2", "3", "4"], False),
        ("up then down", "up then down", ["rising", "falling", "up then down", "down then up"], True),
        # permuted choices (same token set): word order decides, unlike plain MMAU bag-of-tokens
        ("down then up", "up then down", ["rising", "falling", "up then down", "down then up"], False),
        (
            "The pattern: up then down.",
            "up then down",
            ["rising", "falling", "up then down", "down then up"],
            True,
        ),
        ("up then down or down then up", "up then down", ["rising", "up then down", "down then up"], False),
        ("down then up", "down then up", ["rising", "falling", "up then down", "down then up"], True),
        ("it is rising, up then down", "up then down", ["rising", "up then down"], False),
        # case and punctuation are ignored
        ("HIGHER.", "higher", ["higher", "lower"], True),
        ('"Higher"!', "Higher", ["Higher", "Lower"], True),
        ("The answer is: higher", "higher", ["higher", "lower"], True),
        # "(A) higher" style: the letter is a token of no choice, so it is harmless
        ("(A) higher", "higher", ["higher", "lower"], True),
        ("(B) lower", "higher", ["higher", "lower"], False),
        # letter-labelled choices: the bare letter alone misses the gold word
        ("A", "(A) higher", ["(A) higher", "(B) lower"], False),
        ("(A) higher", "(A) higher", ["(A) higher", "(B) lower"], True),
        ("higher", "(A) higher", ["(A) higher", "(B) lower"], False),
        # partial gold answer
        ("dog", "dog barking", ["dog barking", "cat meowing"], False),
        ("a dog is barking", "dog barking", ["dog barking", "cat meowing"], True),
        # sub-word overlap does not count: tokens are whole words
        ("lowered", "higher", ["higher", "lower"], False),
        ("higher-pitched", "higher", ["higher", "lower"], True),
        # empty / missing predictions
        (None, "higher", ["higher", "lower"], False),
        ("", "higher", ["higher", "lower"], False),
        ("?!", "higher", ["higher", "lower"], False),
        # duplicated gold in choices is not a wrong choice
        ("yes", "Yes", ["yes", "Yes.", "no"], True),
    ],
)
def test_match_choice(prediction: str | None, answer: str, choices: list[str], expected: bool) -> None:
    assert match_choice(prediction, answer, choices) is expected


# ---------------------------------------------------------------- ATAR


def test_atar_end_of_training_values() -> None:
    think = [True, True, False, False]
    correct = [True, False, True, False]
    assert atar(think, correct, step=100, total_steps=100) == [1.0, 0.0, 2.0, -1.0]
    # steps past T are clipped to p = 0
    assert atar(think, correct, step=250, total_steps=100) == [1.0, 0.0, 2.0, -1.0]


def test_atar_paper_values_step0_half_think() -> None:
    think = [True, True, False, False]
    correct = [True, False, True, False]
    got = atar(think, correct, step=0, total_steps=10)
    assert [round(v, 4) for v in got] == [0.6065, -0.3935, 1.2131, -1.3935]


def test_atar_lambda_from_batch() -> None:
    # all-think batch: λ = 1 so g_think = exp(-p)
    p = 1 - 30 / 100
    g = math.exp(-p)
    got = atar([True, True, True], [True, False, True], step=30, total_steps=100)
    assert got == pytest.approx([g, -(1 - g), g])
    # all-no-think batch: 1 - λ = 1 so g_no = exp(-p)
    got = atar([False, False], [True, False], step=30, total_steps=100)
    assert got == pytest.approx([2 * g, -g - 2 * (1 - g)])
    # λ = 0.25
    lam = 0.25
    g_think, g_no = math.exp(-lam * p), math.exp(-(1 - lam) * p)
    got = atar([True, False, False, False], [True, True, False, True], step=30, total_steps=100)
    assert got == pytest.approx([g_think, 2 * g_no, -g_no - 2 * (1 - g_no), 2 * g_no])


def test_atar_progress() -> None:
    think = [True, False]
    correct = [True, True]
    # negative steps are clipped to p = 1
    assert atar(think, correct, -5, 10) == pytest.approx(atar(think, correct, 0, 10))
    # gates increase towards 1 with progress
    values = [atar(think, correct, s, 10) for s in range(11)]
    for prev, cur in zip(values, values[1:], strict=False):
        assert cur[0] > prev[0] and cur[1] > prev[1]
    assert values[-1] == [1.0, 2.0]
    assert values[5] == pytest.approx([math.exp(-0.25), 2 * math.exp(-0.25)])


@given(
    st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=16),
    st.integers(min_value=0, max_value=200),
    st.integers(min_value=1, max_value=200),
)
def test_atar_bounds(batch: list[tuple[bool, bool]], step: int, total: int) -> None:
    think = [t for t, _ in batch]
    correct = [c for _, c in batch]
    for t, c, r in zip(think, correct, atar(think, correct, step, total), strict=True):
        if t and c:
            assert 0 < r <= 1
        elif t:
            assert -1 < r <= 0
        elif c:
            assert 0 < r <= 2
        else:
            assert -3 < r <= -1


@pytest.mark.parametrize(
    ("think", "correct", "step", "total"),
    [
        ([], [], 0, 10),
        ([True], [True, False], 0, 10),
        ([True], [True], 0, 0),
        ([True], [True], 0, -3),
    ],
)
def test_atar_validation(think: list[bool], correct: list[bool], step: int, total: int) -> None:
    with pytest.raises(ValueError):
        atar(think, correct, step, total)


# ---------------------------------------------------------------- total / consistency / quality


def test_total_reward() -> None:
    assert total_reward(1.0, 1.0, 1.0, 1.0) == pytest.approx(1.0 * 1.5 + 0.5 + 1.0)
    assert total_reward(2.0, 1.0, 1.0, 0.7) == pytest.approx(2 * 1.5 + 0.5 + 0.7)
    assert total_reward(-1.0, 0.0, 0.0, 0.3) == pytest.approx(-1.0 + 0.3)
    assert total_reward(0.5, 1.0, 1.0, 0.2, w_c=1.0, w_f=0.0, w_t=2.0) == pytest.approx(0.5 * 2 + 0.4)
    # a wrong answer with consistency 1 is multiplied further down
    assert total_reward(-1.0, 1.0, 0.0, 0.0) == pytest.approx(-1.5)


def test_consistency_gate() -> None:
    r_c = [1.0, 0.0, 1.0, None, None]
    correct = [True, True, False, True, False]
    think = [True, True, True, False, False]
    assert consistency_gate(r_c, correct, think) == [1.0, 0.0, 0.0, 1.0, 0.0]
    assert consistency_gate([1, 0], [True, True], [False, False]) == [1.0, 1.0]


def test_consistency_gate_think_mean_rule() -> None:
    """The option beside the paper's rule: a direct answer gets the batch mean of the think completions'
    judged R_c (before the gate, as R_t is filled), and is still gated by its own correctness."""
    r_c = [1.0, 0.0, 0.0, None, None, 1.0]
    correct = [True, True, False, True, False, True]
    think = [True, True, True, False, False, True]
    mean = (1 + 0 + 0 + 1) / 4
    assert consistency_gate(r_c, correct, think, "think-mean") == [1.0, 0.0, 0.0, mean, 0.0, 1.0]
    assert consistency_gate(r_c, correct, think, "one") == consistency_gate(r_c, correct, think)
    assert consistency_gate([None], [True], [False], "think-mean") == [0.0]  # no think completion
    with pytest.raises(ValueError, match="no_think_consistency"):
        consistency_gate([None], [True], [False], "half")


def test_consistency_gate_validation() -> None:
    with pytest.raises(ValueError):
        consistency_gate([1.0], [True, False], [True, True])
    with pytest.raises(ValueError):
        consistency_gate([0.5], [True], [True])
    with pytest.raises(ValueError):
        consistency_gate([None], [True], [True])


def test_fill_no_think_quality() -> None:
    got = fill_no_think_quality([0.8, None, 0.44, 0.0], [True, False, True, False])
    assert got == pytest.approx([0.8, 0.6, 0.4, 0.6])
    # rounding to nearest 0.1 and clipping
    got = fill_no_think_quality([0.25, 0.96, 1.7, -0.2, 0.349], [True] * 5)
    assert got == pytest.approx([0.3, 1.0, 1.0, 0.0, 0.3])
    # no think completions in the batch
    assert fill_no_think_quality([None, 0.9], [False, False]) == [0.0, 0.0]
    assert fill_no_think_quality([], []) == []


def test_fill_no_think_quality_grid() -> None:
    got = fill_no_think_quality([i / 100 for i in range(101)], [True] * 101)
    for v in got:
        assert 0.0 <= v <= 1.0
        assert abs(v * 10 - round(v * 10)) < 1e-9


def test_fill_no_think_quality_validation() -> None:
    with pytest.raises(ValueError):
        fill_no_think_quality([0.5], [True, False])
    with pytest.raises(ValueError):
        fill_no_think_quality([None], [True])
    with pytest.raises(ValueError):
        fill_no_think_quality([float("nan")], [True])


# ---------------------------------------------------------------- the reward sets as weighted reward functions


def test_each_sets_weighted_reward_functions_sum_to_eq7():
    """Table 1's sets: their terms and weights, and (with w_c = 0.5) the weighted sum is bitwise Eq. 7."""
    completions = [
        "<think>two beeps</think><answer>2</answer>",  # think, correct, judged consistent
        "<think>two beeps</think><answer>3</answer>",  # think, wrong: R_c gated to 0
        "<answer>2</answer>",  # no-think, correct: R_c 1, R_t the batch mean
        "<answer>3</answer>",  # no-think, wrong
        "<think>no answer tag",  # invalid, shows think: think and wrong
    ]
    columns = {
        "answer": ["2"] * 5,
        "choices": [["2", "3"]] * 5,
        "verdicts": [(1.0, 0.8, False), (1.0, 0.4, False), None, None, (0.0, 0.2, False)],
        "step": 3,
        "max_steps": 10,
    }
    names = {s: [f.name for f in reward_functions(s)] for s in REWARD_SETS}
    assert names == {
        "grpo": ["accuracy_reward", "format"],
        "grpo-nothink": ["accuracy_reward", "format"],
        "atar": ["accuracy_reward", "format"],
        "atar+rc": ["accuracy_reward", "consistency_bonus", "format"],
        "full": ["accuracy_reward", "consistency_bonus", "format", "quality"],
    }
    assert [f.weight for f in reward_functions("grpo")] == [1.0, 1.0]  # R1-AQA: accuracy + format
    assert [f.weight for f in reward_functions("full")] == [1.0, 0.5, 0.5, 1.0]  # Eq. 7
    funcs = reward_functions("full")
    values = {f.name: f.fn([""] * 5, completions, **columns) for f in funcs}
    total = [sum(f.weight * values[f.name][i] for f in funcs) for i in range(5)]
    r_a = atar([True, True, False, False, True], [True, False, True, False, False], 3, 10)
    r_c = [1.0, 0.0, 1.0, 0.0, 0.0]
    r_t = [0.8, 0.4, pytest.approx((0.8 + 0.4 + 0.2) / 3), pytest.approx((0.8 + 0.4 + 0.2) / 3), 0.2]
    assert values["accuracy_reward"] == r_a and values["quality"] == r_t
    assert values["consistency_bonus"] == [a * c for a, c in zip(r_a, r_c, strict=True)]
    expected = [
        total_reward(a, c, f, t)
        for a, c, f, t in zip(r_a, r_c, [1.0, 1.0, 1.0, 1.0, 0.0], values["quality"], strict=True)
    ]
    assert total == expected  # exactly, not approximately


# ---------------------------------------------------------------- sentences, the quality grid


def test_sentences_end_at_marks_and_line_breaks_not_at_decimal_points():
    text = "Beep 1 at 0.2 s: high; beep 2 at .45 s: low!?\nThat is 2 beeps.so the answer is 0.  "
    assert sentences(text) == [
        "Beep 1 at 0.2 s: high;",
        "beep 2 at .45 s: low!?",
        "That is 2 beeps.",
        "so the answer is 0.",
    ]
    assert sentences(" ... ?!\n;\n ") == [] and sentences("") == []
    assert sentences("no end mark") == ["no end mark"]


def test_the_quality_grid_is_what_quantize_quality_gives():
    assert QUALITY_GRID == (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    assert {quantize_quality(k / 1000) for k in range(-50, 1051)} == set(QUALITY_GRID)
