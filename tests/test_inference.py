"""The inference path: audio is heard, encoded once per prompt, batching and streaming are consistent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from audio_thinker import synth
from audio_thinker.inference import completion_mask, decode_completion, sample
from audio_thinker.models import embed_prompt, encode_audio


def _completion_logprob(lm, audio: np.ndarray, item: dict, completion: str) -> torch.Tensor:
    """Per-token log-probs of ``completion`` after the item's think prompt, through the full model forward."""
    text = lm.prompt_text(item["question"], item["choices"], "think")
    batch = lm.prepare([audio], [text])
    target = lm.tokenizer(completion, add_special_tokens=False, return_tensors="pt")["input_ids"]
    ids = torch.cat([batch.input_ids, target], 1)
    mask = torch.ones_like(ids)
    with torch.no_grad():
        logits = lm.model(
            input_ids=ids,
            attention_mask=mask,
            input_features=batch.input_features,
            feature_attention_mask=batch.feature_attention_mask,
        ).logits
    logp = torch.log_softmax(logits[0, batch.input_ids.shape[1] - 1 : -1].float(), -1)
    return logp.gather(-1, target[0][:, None]).squeeze(-1)


@pytest.mark.parametrize("which", ["random_lm", "shipped_lm"])
def test_changing_audio_changes_logprobs(which, request):
    lm = request.getfixturevalue(which)
    item, a = synth.generate_item("count", 77, 0)
    _, b = synth.generate_item("count", 77, 1)
    completion = f"<think>{item['reasoning']}</think><answer>{item['answer']}</answer>"
    la, lb = _completion_logprob(lm, a, item, completion), _completion_logprob(lm, b, item, completion)
    assert torch.isfinite(la).all()
    assert (la - lb).abs().max() > 1e-3


def test_shipped_model_generation_depends_on_audio(shipped_lm):
    q, choices = "How many beeps are there?", ["1", "2", "3", "4"]
    seen = set()
    for n in (1, 3, 5, 6):
        rng = np.random.default_rng(n)
        events = synth.place_events(rng, [synth._tone_spec(rng) for _ in range(n)])
        ans = shipped_lm.answer(synth.render(events, rng), q, choices, "think")
        seen.add(ans.text)
    assert len(seen) >= 3


def test_split_audio_path_equals_full_forward(random_lm):
    item, audio = synth.generate_item("pitch_pattern", 3, 0)
    batch = random_lm.prepare([audio], [random_lm.prompt_text(item["question"], item["choices"], "adaptive")])
    with torch.no_grad():
        full = random_lm.model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            input_features=batch.input_features,
            feature_attention_mask=batch.feature_attention_mask,
        ).logits
        feats = encode_audio(random_lm.model, batch.input_features, batch.feature_attention_mask)
        split = random_lm.model(
            inputs_embeds=embed_prompt(random_lm.model, batch.input_ids, feats),
            attention_mask=batch.attention_mask,
        ).logits
    assert torch.allclose(full, split, atol=1e-5)


def test_group_sampling_encodes_audio_once_per_prompt(random_lm):
    items = [synth.generate_item(t, 1, 0) for t in ("count", "loudness")]
    texts = [random_lm.prompt_text(it["question"], it["choices"], "adaptive") for it, _ in items]
    batch = random_lm.prepare([a for _, a in items], texts)
    calls = []
    hook = random_lm.model.model.audio_tower.register_forward_hook(
        lambda m, i, o: calls.append(i[0].shape[0])
    )
    try:
        cols = list(random_lm.iter_tokens(batch, temperature=1.0, group=4, seed=0))
    finally:
        hook.remove()
    assert calls == [2]  # one encoder pass over the two clips, shared by all 8 completions
    assert torch.stack(cols, 1).shape[0] == 8


def test_group_greedy_rows_equal_single_prompt_rows(random_lm):
    item, audio = synth.generate_item("odd_one_out", 2, 0)
    batch = random_lm.prepare([audio], [random_lm.prompt_text(item["question"], item["choices"], "think")])
    one = torch.stack(list(random_lm.iter_tokens(batch, temperature=0.0, group=1)), 1)
    three = torch.stack(list(random_lm.iter_tokens(batch, temperature=0.0, group=3)), 1)
    assert all(torch.equal(row, one[0]) for row in three)


def test_left_padded_batch_equals_single_answers(shipped_lm):
    # different questions and choices give different prompt lengths, so the batch is left-padded
    items = [synth.generate_item(t, 9, 0) for t in ("loudness", "high_low_difference", "pitch_pattern")]
    args = ([a for _, a in items], [it["question"] for it, _ in items], [it["choices"] for it, _ in items])
    batched = shipped_lm.answer_batch(*args, "think")
    singles = [shipped_lm.answer(a, q, c, "think") for a, q, c in zip(*args, strict=True)]
    assert [b.text for b in batched] == [s.text for s in singles]
    assert len({b.prompt_tokens for b in batched}) == 3


def test_stream_grows_to_the_final_answer(shipped_lm):
    item, audio = synth.generate_item("compare_pitch", 4, 0)
    steps = list(shipped_lm.stream(audio, item["question"], item["choices"], "think"))
    assert len(steps) > 5
    texts = [s.text for s in steps]
    assert all(texts[i + 1].startswith(texts[i][: max(0, len(texts[i]) - 2)]) for i in range(len(texts) - 1))
    final = shipped_lm.answer(audio, item["question"], item["choices"], "think")
    assert steps[-1].text == final.text and steps[-1].completion_tokens == final.completion_tokens


def test_sampling_is_reproducible_by_seed(random_lm):
    item, audio = synth.generate_item("count", 5, 0)
    a = random_lm.answer(audio, item["question"], item["choices"], "adaptive", temperature=1.0, seed=3)
    b = random_lm.answer(audio, item["question"], item["choices"], "adaptive", temperature=1.0, seed=3)
    assert a.text == b.text


def test_completion_mask_stops_after_first_eos():
    tokens = torch.tensor([[5, 6, 9, 0, 0], [5, 9, 7, 9, 0], [1, 2, 3, 4, 5]])
    assert completion_mask(tokens, [9]).tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]


def test_decoded_nul_byte_becomes_storable(shipped_lm, tmp_path):
    """A byte-level token that decodes to NUL (sampled at a high temperature in a bootstrap) must not crash
    the ratings store, which refuses NUL characters."""
    from audio_thinker.store import Store

    tok = shipped_lm.tokenizer
    nul = [i for i in range(len(tok)) if "\x00" in tok.decode([i])]
    assert nul, "the tokenizer has no token that decodes to NUL; this test needs one"
    ids = tok("<think>a", add_special_tokens=False)["input_ids"] + nul[:1]
    text = decode_completion(tok, ids)
    assert "\x00" not in text and text.endswith("\ufffd")
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    item = store.add_item("q?", ["a", "b"])
    assert store.add_generation(item.id, "m", "think", text).raw_text == text


def test_bad_inputs_are_refused_with_clear_errors(random_lm):
    _, audio = synth.generate_item("count", 5, 0)
    with pytest.raises(ValueError, match="unknown prompt mode"):
        random_lm.answer(audio, "How many?", None, "ponder")
    with pytest.raises(ValueError, match="question is empty"):
        random_lm.answer(audio, "  ", None, "think")
    with pytest.raises(ValueError, match="limit is 1000"):
        random_lm.answer(audio, "x" * 1001, None, "think")
    from audio_thinker.audio import AudioError

    with pytest.raises(AudioError):
        random_lm.answer(b"not audio at all", "How many?", None, "think")


def test_sample_respects_max_new_tokens(random_lm):
    item, audio = synth.generate_item("count", 5, 0)
    batch = random_lm.prepare([audio], [random_lm.prompt_text(item["question"], None, "think")])
    feats = encode_audio(random_lm.model, batch.input_features, batch.feature_attention_mask)
    cols = list(
        sample(
            random_lm.model,
            batch.input_ids,
            batch.attention_mask,
            feats,
            eos_ids=[-1],
            pad_id=0,
            max_new_tokens=7,
            temperature=1.0,
        )
    )
    assert len(cols) == 7
