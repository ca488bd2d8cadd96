"""The supported bases at tiny size, through the code users run at 7B: Qwen2-Audio, the Qwen2.5-Omni thinker,
and a full Qwen2.5-Omni checkpoint (its thinker loaded). Each is built from a random config with the project's
tokenizer, saved with ``save_pretrained``, loaded by ``load_policy``, trained one GRPO step and evaluated."""

from __future__ import annotations

import pytest
import torch

from audio_thinker import grpo, synth
from audio_thinker.grpo import GRPOConfig
from audio_thinker.inference import AudioLM
from audio_thinker.models import (
    SUPPORTED_ARCHITECTURES,
    TINY_MODEL_DIR,
    build_omni_processor,
    build_omni_tokenizer,
    build_processor,
    build_tiny_model,
    build_tiny_omni_thinker,
    embed_prompt,
    encode_audio,
    load_policy,
)
from audio_thinker.policy import completion_logprobs

BASES = ["qwen2_audio", "qwen2_5_omni_thinker", "qwen2_5_omni"]
CLASSES = {
    "qwen2_audio": ("Qwen2AudioForConditionalGeneration", "Qwen2AudioProcessor"),
    "qwen2_5_omni_thinker": ("Qwen2_5OmniThinkerForConditionalGeneration", "Qwen2_5OmniProcessor"),
    "qwen2_5_omni": ("Qwen2_5OmniThinkerForConditionalGeneration", "Qwen2_5OmniProcessor"),
}


@pytest.fixture(scope="module")
def base_dirs(tmp_path_factory) -> dict[str, str]:
    """One saved tiny random checkpoint per base (processor included)."""
    from transformers import AutoTokenizer, Qwen2_5OmniConfig, Qwen2_5OmniForConditionalGeneration

    dirs = {b: tmp_path_factory.mktemp(b) for b in BASES}
    tok = AutoTokenizer.from_pretrained(TINY_MODEL_DIR)
    build_tiny_model(tok, seed=0).save_pretrained(dirs["qwen2_audio"])
    build_processor(tok).save_pretrained(dirs["qwen2_audio"])

    omni_tok = build_omni_tokenizer()
    omni_proc = build_omni_processor(omni_tok)
    thinker = build_tiny_omni_thinker(omni_tok, seed=0)
    thinker.save_pretrained(dirs["qwen2_5_omni_thinker"])
    omni_proc.save_pretrained(dirs["qwen2_5_omni_thinker"])
    # a full Qwen2.5-Omni checkpoint (thinker.* weights, Qwen2_5OmniConfig); the talker is not needed here
    full = Qwen2_5OmniForConditionalGeneration(
        Qwen2_5OmniConfig(thinker_config=thinker.config.to_dict(), enable_audio_output=False)
    )
    full.thinker.load_state_dict(thinker.state_dict())
    full.generation_config = thinker.generation_config
    full.save_pretrained(dirs["qwen2_5_omni"])
    omni_proc.save_pretrained(dirs["qwen2_5_omni"])
    return {b: str(d) for b, d in dirs.items()}


@pytest.fixture(scope="module")
def lms(base_dirs) -> dict[str, AudioLM]:
    return {b: AudioLM.from_pretrained(d, max_new_tokens=6) for b, d in base_dirs.items()}


def _batch(lm: AudioLM):
    """Two prompts of different lengths with clips of different lengths (left padding, feature masks)."""
    (a, clip_a), (b, clip_b) = synth.generate_item("count", 4, 0), synth.generate_item("pitch_pattern", 4, 1)
    texts = [
        lm.prompt_text(a["question"], a["choices"], "think"),
        lm.prompt_text(b["question"], None, "adaptive"),
    ]
    return lm.prepare([clip_a, clip_b[:24000]], texts)


@pytest.mark.parametrize("base", BASES)
def test_the_config_picks_class_and_processor(base, base_dirs):
    model, processor = load_policy(base_dirs[base])
    assert (type(model).__name__, type(processor).__name__) == CLASSES[base]


def test_unsupported_architecture_names_the_supported_ones(tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="unsupported architecture 'gpt2'") as err:
        load_policy(tmp_path)
    for name in SUPPORTED_ARCHITECTURES.values():
        assert name in str(err.value)


@pytest.mark.parametrize("base", BASES)
def test_split_audio_path_matches_the_model_forward(base, lms):
    lm = lms[base]
    batch = _batch(lm)
    assert batch.attention_mask[1].sum() < batch.attention_mask.shape[1]  # row 1 is left-padded
    positions = (batch.attention_mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        full = lm.model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            input_features=batch.input_features,
            feature_attention_mask=batch.feature_attention_mask,
        ).logits
        feats = encode_audio(lm.model, batch.input_features, batch.feature_attention_mask)
        split = lm.model(
            inputs_embeds=embed_prompt(lm.model, batch.input_ids, feats),
            attention_mask=batch.attention_mask,
            position_ids=positions,
        ).logits
    valid = batch.attention_mask.bool()
    assert [f.shape[0] for f in feats] == (batch.input_ids == lm.model.config.audio_token_id).sum(1).tolist()
    assert torch.allclose(full[valid], split[valid], atol=1e-4)
    if base != "qwen2_audio":  # Omni's M-RoPE for audio-only prompts: 1D positions on all 3 axes
        rope, deltas = lm.model.model.get_rope_index(
            batch.input_ids, None, None, batch.attention_mask, False, batch.feature_attention_mask.sum(-1)
        )
        assert torch.equal(rope[:, valid], positions[valid].expand(3, -1)) and not deltas.any()


@pytest.mark.parametrize("base", BASES)
def test_shared_prefix_logprobs_equal_the_full_forward(base, lms):
    lm = lms[base]
    batch = _batch(lm)
    comp = torch.randint(20, 500, (4, 5))
    args = (
        lm.model,
        batch.input_ids,
        batch.attention_mask,
        batch.input_features,
        batch.feature_attention_mask,
    )
    with torch.no_grad():
        shared, _ = completion_logprobs(*args, comp, 2, shared_prefix=True)
        copied, _ = completion_logprobs(*args, comp, 2, shared_prefix=False)
        ids = torch.cat([batch.input_ids[1], comp[3]])[None]  # prompt 1 (left-padded), completion 1
        mask = torch.cat([batch.attention_mask[1], torch.ones(5, dtype=torch.long)])[None]
        logits = lm.model(
            input_ids=ids,
            attention_mask=mask,
            input_features=batch.input_features[1:],
            feature_attention_mask=batch.feature_attention_mask[1:],
        ).logits
    ref = torch.log_softmax(logits[0, batch.input_ids.shape[1] - 1 : -1], -1).gather(-1, comp[3][:, None])
    assert torch.allclose(shared, copied, atol=1e-4)
    assert torch.allclose(shared[3], ref.squeeze(-1), atol=1e-4)


@pytest.mark.parametrize("base", BASES)
def test_changing_audio_changes_logprobs(base, lms):
    lm = lms[base]
    item, a = synth.generate_item("count", 77, 0)
    _, b = synth.generate_item("count", 77, 1)
    target = lm.tokenizer(f"<answer>{item['answer']}</answer>", add_special_tokens=False, return_tensors="pt")
    logps = []
    for clip in (a, b):
        batch = lm.prepare([clip], [lm.prompt_text(item["question"], item["choices"], "no-think")])
        with torch.no_grad():
            logp, _ = completion_logprobs(
                lm.model,
                batch.input_ids,
                batch.attention_mask,
                batch.input_features,
                batch.feature_attention_mask,
                target["input_ids"],
                1,
            )
        logps.append(logp)
    assert torch.isfinite(logps[0]).all() and (logps[0] - logps[1]).abs().max() > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("base", BASES)
def test_one_grpo_step_then_evaluation(base, base_dirs, tmp_path, synth_set):
    from audio_thinker.evaluate import evaluate, load_items

    cfg = GRPOConfig(
        out=str(tmp_path / "run"),
        model=base_dirs[base],
        max_steps=1,
        prompts_per_step=2,
        num_generations=2,
        micro_batch_prompts=1,
        max_new_tokens=4,
        learning_rate=1e-3,
        warmup_steps=0,
        save_every=0,
        log_with="",
        eval_per_task=0,
        lora=base == "qwen2_5_omni",  # LoRA on the full Omni checkpoint, full fine-tuning on the others
    )
    result = grpo.train(cfg)
    assert result["history"][0]["step"] == 1 and torch.isfinite(torch.tensor(result["history"][0]["loss"]))
    lm = AudioLM.from_pretrained(result["final"], max_new_tokens=4)
    assert type(lm.model).__name__ == CLASSES[base][0]
    predictions, metrics = evaluate(lm, load_items(synth_set)[:3], mode="think", progress=False)
    assert metrics["n"] == 3 and all(p["completion_tokens"] > 0 for p in predictions)
