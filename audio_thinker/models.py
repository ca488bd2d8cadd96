"""Loading policies and processors by architecture, and the recipe of the shipped tiny audio LM.

The tiny model is the real ``Qwen2AudioForConditionalGeneration`` class at a tiny size, with the project's
own byte-level BPE tokenizer (carrying the Qwen2-Audio special tokens and chat template) and a
``Qwen2AudioProcessor`` whose Whisper feature extractor window is 3 s. Everything is saved with
``save_pretrained``, so ``from_pretrained(dir)`` works exactly as for a hub model.

The audio path is split into :func:`encode_audio` (audio tower + projector, run once per clip) and
:func:`embed_prompt` (token embeddings with the audio features scattered into the ``<|AUDIO|>`` slots), so
a GRPO group of G completions shares one encoder pass.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import torch

ASSETS = Path(__file__).parent / "assets"
TINY_MODEL_DIR = ASSETS / "tiny-qwen2-audio"
MODEL_ENV = "AUDIO_THINKER_MODEL"

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|AUDIO|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
]
TAG_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]

# Qwen2-Audio-Instruct's chat template (as shipped on the hub), unchanged.
CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}Audio {{ audio_count.value }}: <|audio_bos|><|AUDIO|><|audio_eos|>\n"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

TINY_AUDIO_CONFIG = dict(
    num_mel_bins=80,
    encoder_layers=3,
    encoder_attention_heads=4,
    encoder_ffn_dim=512,
    d_model=128,
)  # max_source_positions = 50 per second of clip (150 for 3 s: 300 mel frames at a 10 ms hop)
TINY_TEXT_CONFIG = dict(
    hidden_size=192,
    intermediate_size=576,
    num_hidden_layers=4,
    num_attention_heads=6,
    num_key_value_heads=2,
    max_position_embeddings=1024,
    tie_word_embeddings=True,
    rope_theta=10000.0,
)
TINY_VOCAB_SIZE = 1024
CLIP_SECONDS_TINY = 3


# --------------------------------------------------------------------------------------------------
# The tiny model's recipe


def build_tokenizer(corpus: Iterable[str], vocab_size: int = TINY_VOCAB_SIZE):
    """Train a byte-level BPE (any text encodes, no unknown tokens) on ``corpus``; wrap it for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AddedToken, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(TAG_TOKENS),
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=1024,
        padding_side="left",
        extra_special_tokens={
            "audio_token": "<|AUDIO|>",
            "audio_bos_token": "<|audio_bos|>",
            "audio_eos_token": "<|audio_eos|>",
        },
    )
    fast.add_tokens([AddedToken(t, special=False, normalized=False) for t in TAG_TOKENS])
    return fast


def build_processor(tokenizer, clip_seconds: int = CLIP_SECONDS_TINY):
    """A ``Qwen2AudioProcessor`` whose Whisper feature extractor window is ``clip_seconds``."""
    from transformers import Qwen2AudioProcessor, WhisperFeatureExtractor

    fe = WhisperFeatureExtractor(feature_size=TINY_AUDIO_CONFIG["num_mel_bins"], chunk_length=clip_seconds)
    return Qwen2AudioProcessor(feature_extractor=fe, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)


def build_tiny_model(tokenizer, seed: int = 0, clip_seconds: int = CLIP_SECONDS_TINY):
    """A randomly initialised tiny ``Qwen2AudioForConditionalGeneration`` sized for ``tokenizer``.

    The encoder takes ``clip_seconds`` of audio (50 positions a second after its stride-2 convolution).
    """
    from transformers import GenerationConfig, Qwen2AudioConfig, Qwen2AudioForConditionalGeneration
    from transformers.models.whisper.modeling_whisper import sinusoids

    torch.manual_seed(seed)
    pad, eos = tokenizer.pad_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = Qwen2AudioConfig(
        audio_config={
            "model_type": "qwen2_audio_encoder",
            **TINY_AUDIO_CONFIG,
            "max_source_positions": 50 * clip_seconds,
        },
        text_config={
            "model_type": "qwen2",
            "vocab_size": len(tokenizer),
            "pad_token_id": pad,
            "eos_token_id": eos,
            "bos_token_id": None,
            **TINY_TEXT_CONFIG,
        },
        audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"),
    )
    model = Qwen2AudioForConditionalGeneration(config)
    tower = model.model.audio_tower
    with torch.no_grad():
        # Whisper's fixed sinusoidal positions (the random init is frozen at N(0, 0.02): too weak to locate events)
        tower.embed_positions.weight.copy_(sinusoids(*tower.embed_positions.weight.shape))
        # He-initialised convolutions: at std 0.02 the mel content leaving conv2 is ~1% of the positions and
        # the encoder learns nothing for hundreds of steps (the "plateau" of tiny audio encoders)
        for conv in (tower.conv1, tower.conv2):
            torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            conv.bias.zero_()
    model.generation_config = GenerationConfig(
        eos_token_id=[eos, pad],
        pad_token_id=pad,
        do_sample=True,
        temperature=1.0,
        top_k=0,
        top_p=1.0,
        max_new_tokens=160,
    )
    return model


# --------------------------------------------------------------------------------------------------
# Loading


def default_model_path() -> str:
    """``$AUDIO_THINKER_MODEL`` when set, else the shipped tiny checkpoint."""
    return os.environ.get(MODEL_ENV) or str(TINY_MODEL_DIR)


def load_policy(
    path: str | os.PathLike | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: str = "cpu",
    allow_text: bool = False,
):
    """Load ``(model, processor)`` from a local folder or hub id; a GRPO LoRA run's ``final`` works too.

    ``allow_text`` also accepts a text-only causal LM, returned with its tokenizer as the processor
    (the trainer runs on those too, e.g. to compare with TRL on the same model).
    """
    from transformers import AutoConfig, AutoProcessor

    path = str(path or default_model_path())
    adapter = Path(path) / "adapter_config.json"
    if adapter.exists():  # a PEFT adapter: load its base, then merge the adapter for inference
        import json

        from peft import PeftModel

        base_path = json.loads(adapter.read_text())["base_model_name_or_path"]
        base, _ = load_policy(base_path, dtype=dtype, device=device, allow_text=allow_text)
        model = PeftModel.from_pretrained(base, path).merge_and_unload()
        return model.eval(), AutoProcessor.from_pretrained(
            path if (Path(path) / "processor_config.json").exists() else base_path
        )
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot load a model from {path!r}: {err}") from err
    if allow_text and config.model_type not in SUPPORTED_ARCHITECTURES:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        return model, AutoTokenizer.from_pretrained(path)
    cls = model_class(config)
    model = cls.from_pretrained(path, dtype=dtype).to(device).eval()
    processor = AutoProcessor.from_pretrained(path)
    return model, processor


SUPPORTED_ARCHITECTURES = {
    "qwen2_audio": "Qwen2AudioForConditionalGeneration",
}


def model_class(config):
    """The transformers class for ``config``; a clear error naming the supported architectures."""
    import transformers

    name = SUPPORTED_ARCHITECTURES.get(config.model_type)
    if name is None:
        raise ValueError(
            f"unsupported architecture {config.model_type!r}; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    return getattr(transformers, name)


# --------------------------------------------------------------------------------------------------
# The audio path, split so that one encoder pass serves many completions


def unwrap_peft(model):
    """The transformers model under a PEFT wrapper (LoRA layers stay injected), or ``model`` itself."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def encode_audio(
    model, input_features: torch.Tensor, feature_attention_mask: torch.Tensor
) -> list[torch.Tensor]:
    """Audio tower + projector for a batch of clips: one (n_audio_tokens, hidden) tensor per clip."""
    model = unwrap_peft(model)
    core = model.model
    tower = core.audio_tower
    feat_lengths, out_lengths = tower._get_feat_extract_output_lengths(feature_attention_mask.sum(-1))
    batch, _, max_mel = input_features.shape
    max_len = (max_mel - 2) // 2 + 1
    valid = torch.arange(max_len, device=input_features.device)[None, :] < feat_lengths[:, None]
    # additive bidirectional mask over the conv output (what Qwen2AudioModel.forward builds)
    mask = torch.zeros(
        batch, 1, max_len, max_len, dtype=tower.conv1.weight.dtype, device=input_features.device
    )
    mask = mask.masked_fill(~valid[:, None, None, :], torch.finfo(mask.dtype).min)
    hidden = tower(input_features.to(tower.conv1.weight.dtype), attention_mask=mask).last_hidden_state
    feats = core.multi_modal_projector(hidden)
    return [f[:n] for f, n in zip(feats, out_lengths.tolist(), strict=True)]


def language_model(model):
    """The decoder stack (without LM head) of an audio LM, or of a text-only causal LM."""
    model = unwrap_peft(model)
    return getattr(model.model, "language_model", model.model)


def embed_prompt(model, input_ids: torch.Tensor, audio_features: list[torch.Tensor]) -> torch.Tensor:
    """Token embeddings with each row's audio features scattered into its ``<|AUDIO|>`` positions.

    ``audio_features[i]`` belongs to row ``i``; rows may share one tensor (a GRPO group), so repeating a
    clip's features costs no encoder pass.
    """
    embeds = model.get_input_embeddings()(input_ids)
    if not len(audio_features) and getattr(model.config, "audio_token_id", None) is None:
        return embeds  # a text-only causal LM
    audio_features = (
        torch.cat(list(audio_features)) if len(audio_features) else embeds.new_zeros(0, embeds.shape[-1])
    )
    slots = input_ids == model.config.audio_token_id
    if int(slots.sum()) != audio_features.shape[0]:
        raise ValueError(f"{int(slots.sum())} audio slots but {audio_features.shape[0]} audio features")
    return embeds.masked_scatter(slots.unsqueeze(-1), audio_features.to(embeds.dtype))
