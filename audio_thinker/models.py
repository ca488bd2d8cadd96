"""Loading policies and processors by architecture, and the recipe of the shipped tiny audio LM.

The tiny model is the real ``Qwen2AudioForConditionalGeneration`` class at a tiny size, with the project's
own byte-level BPE tokenizer (carrying the Qwen2-Audio special tokens and chat template) and a
``Qwen2AudioProcessor`` whose Whisper feature extractor window is 3 s. Everything is saved with
``save_pretrained``, so ``from_pretrained(dir)`` works exactly as for a hub model.

The audio path is split into :func:`encode_audio` (audio tower + projector, run once per clip) and
:func:`embed_prompt` (token embeddings with the audio features scattered into the ``<|AUDIO|>`` slots), so
a GRPO group of G completions shares one encoder pass.

Supported bases (:data:`SUPPORTED_ARCHITECTURES`, picked from the checkpoint's config): Qwen2-Audio
(``Qwen2AudioForConditionalGeneration``, e.g. Qwen2-Audio-7B-Instruct) and the Qwen2.5-Omni thinker
(``Qwen2_5OmniThinkerForConditionalGeneration``; a full Qwen2.5-Omni checkpoint loads its thinker, no talker).
For audio-only prompts Qwen2.5-Omni's 3D (M-RoPE) positions are the 1D positions on all three axes
(``get_rope_index`` with no image or video, rope_deltas 0), so one position scheme serves both.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

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

# Qwen2.5-Omni's chat template (as shipped with Qwen/Qwen2.5-Omni-7B), unchanged.
OMNI_CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}{% set image_count = namespace(value=0) %}"
    "{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_bos|><|IMAGE|><|vision_eos|>"
    "{% elif content['type'] == 'audio' or 'audio' in content or 'audio_url' in content %}"
    "{% set audio_count.value = audio_count.value + 1 %}{% if add_audio_id %}Audio {{ audio_count.value }}: {% endif %}"
    "<|audio_bos|><|AUDIO|><|audio_eos|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_bos|><|VIDEO|><|vision_eos|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# the named tokens Qwen2_5OmniProcessor reads from its tokenizer, beyond Qwen2-Audio's audio ones
OMNI_VISION_TOKENS = {
    "image_token": "<|IMAGE|>",
    "video_token": "<|VIDEO|>",
    "vision_bos_token": "<|vision_bos|>",
    "vision_eos_token": "<|vision_eos|>",
}

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


def auto_tokenizer(path: str | os.PathLike, **kwargs: Any) -> Any:
    """``AutoTokenizer.from_pretrained``, except for folders whose ``tokenizer_config.json`` names the generic
    ``TokenizersBackend`` (the project's own tokenizer, saved beside any model): those load with that class.

    AutoTokenizer picks the tokenizer class of ``config.json``'s model type when there is one, so a folder with
    a ``qwen2`` config (a reward model, a text-only policy) would get ``Qwen2Tokenizer``, which replaces the
    saved pre-tokenizer with its own digit-splitting one and tokenizes " 0.1 s" differently from the tokenizer
    the model was trained with.
    """
    from transformers import AutoTokenizer, TokenizersBackend

    try:
        declared = json.loads((Path(path) / "tokenizer_config.json").read_text()).get("tokenizer_class")
    except (OSError, ValueError):
        declared = None
    if declared == "TokenizersBackend":
        return TokenizersBackend.from_pretrained(str(path), **kwargs)
    return AutoTokenizer.from_pretrained(str(path), **kwargs)


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


def build_omni_tokenizer(path: str | os.PathLike = TINY_MODEL_DIR):
    """The project's tokenizer (from ``path``) plus the vision tokens ``Qwen2_5OmniProcessor`` requires."""
    from transformers import AddedToken, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path), **OMNI_VISION_TOKENS)
    tok.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in OMNI_VISION_TOKENS.values()],
        special_tokens=True,
    )
    return tok


def build_omni_processor(tokenizer, clip_seconds: int = CLIP_SECONDS_TINY):
    """A ``Qwen2_5OmniProcessor`` (Whisper features over ``clip_seconds``, Qwen2-VL image processor, Omni chat)."""
    from transformers import Qwen2_5OmniProcessor, Qwen2VLImageProcessorPil, WhisperFeatureExtractor
    from transformers.utils import is_torchvision_available

    _allow_omni_processor_without_torchvision()
    if is_torchvision_available():
        from transformers import Qwen2VLVideoProcessor

        video = Qwen2VLVideoProcessor()
    else:  # audio only: an inert stand-in (transformers' video processors all need torchvision)
        from transformers.video_processing_utils import VideoProcessorMixin

        video = VideoProcessorMixin()
    fe = WhisperFeatureExtractor(feature_size=TINY_AUDIO_CONFIG["num_mel_bins"], chunk_length=clip_seconds)
    return Qwen2_5OmniProcessor(
        image_processor=Qwen2VLImageProcessorPil(),
        video_processor=video,
        feature_extractor=fe,
        tokenizer=tokenizer,
        chat_template=OMNI_CHAT_TEMPLATE,
    )


def build_tiny_omni_thinker(tokenizer, seed: int = 0):
    """A randomly initialised tiny ``Qwen2_5OmniThinkerForConditionalGeneration`` sized for ``tokenizer``.

    Same sizes as the tiny Qwen2-Audio (audio 3 x 128, LM 4 x 192) plus a one-block vision encoder that the
    audio path never runs. M-RoPE sections [4, 6, 6] cover the 32-dim heads' 16 frequencies (7B: [16, 24, 24]).
    """
    from transformers import (
        GenerationConfig,
        Qwen2_5OmniThinkerConfig,
        Qwen2_5OmniThinkerForConditionalGeneration,
    )

    torch.manual_seed(seed)
    ids = tokenizer.convert_tokens_to_ids
    pad, eos = tokenizer.pad_token_id, ids("<|im_end|>")
    hidden = TINY_TEXT_CONFIG["hidden_size"]
    text = {k: v for k, v in TINY_TEXT_CONFIG.items() if k != "rope_theta"}
    config = Qwen2_5OmniThinkerConfig(
        audio_config={**TINY_AUDIO_CONFIG, "output_dim": hidden},
        vision_config={
            "depth": 1,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": hidden,
            "fullatt_block_indexes": [0],
        },
        text_config={
            **text,
            "vocab_size": len(tokenizer),
            "pad_token_id": pad,
            "eos_token_id": eos,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": TINY_TEXT_CONFIG["rope_theta"],
                "mrope_section": [4, 6, 6],
            },
        },
        audio_token_index=ids("<|AUDIO|>"),
        image_token_index=ids(OMNI_VISION_TOKENS["image_token"]),
        video_token_index=ids(OMNI_VISION_TOKENS["video_token"]),
        audio_start_token_id=ids("<|audio_bos|>"),
        audio_end_token_id=ids("<|audio_eos|>"),
        vision_start_token_id=ids(OMNI_VISION_TOKENS["vision_bos_token"]),  # read by get_rope_index
        vision_end_token_id=ids(OMNI_VISION_TOKENS["vision_eos_token"]),
        tie_word_embeddings=True,
    )
    model = Qwen2_5OmniThinkerForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[eos, pad], pad_token_id=pad, do_sample=True, temperature=1.0, top_k=0, top_p=1.0
    )
    return model


def _allow_omni_processor_without_torchvision() -> None:
    """transformers (5.23) checks an Omni processor's video processor against ``VideoProcessorMixin``, a name it
    exports only when torchvision is installed; export it so CPU-only installs (audio only) can build one."""
    from transformers import processing_utils
    from transformers.video_processing_utils import VideoProcessorMixin

    module = processing_utils.transformers_module
    if not hasattr(module, "VideoProcessorMixin"):
        module.VideoProcessorMixin = VideoProcessorMixin


# --------------------------------------------------------------------------------------------------
# Loading


def cpu_threads() -> int:
    """torch's intra-op CPU threads for one process: ``$AUDIO_THINKER_TORCH_THREADS``, else 1 on machines with
    at most 4 cores and min(4, cores / 2) above. On a small CPU shared with another job one thread is much
    faster than two that contend (issue #22: a GRPO step 50-122 s with torch's default of all cores beside a
    busy process, 12-14 s with one thread; the studio's first token 0.5 s against 10-20 s)."""
    env = os.environ.get("AUDIO_THINKER_TORCH_THREADS")
    if env:
        return max(1, int(env))
    cores = os.cpu_count() or 1
    return 1 if cores <= 4 else min(4, cores // 2)


def default_model_path() -> str:
    """``$AUDIO_THINKER_MODEL`` when set, else the shipped tiny checkpoint."""
    return os.environ.get(MODEL_ENV) or str(TINY_MODEL_DIR)


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def check_model_source(path: str | os.PathLike) -> str:
    """``path`` if it can be loaded: a local folder, or a hub id that is cached or downloadable now.

    Raises ValueError with a one-line reason otherwise: a local path that does not exist, a malformed id,
    or a hub id that is not cached while the hub cannot be reached (no retries: one request, 10 s).
    """
    path = str(path)
    if Path(path).expanduser().is_dir():
        return path
    if not _HUB_ID.match(path):
        raise ValueError(
            f"no model folder at {path!r} (and it is not a hub id such as 'Qwen/Qwen2-Audio-7B-Instruct')"
        )
    from huggingface_hub import HfApi, constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(path, "config.json"), str):
        return path  # in the local cache
    reason = "the hub is off (HF_HUB_OFFLINE)" if constants.HF_HUB_OFFLINE else None
    if reason is None:
        try:
            HfApi().model_info(path, timeout=10)
        except Exception as err:  # connection, auth or not found: one line, no retry storm
            reason = f"the hub cannot serve it ({type(err).__name__})"
    if reason:
        raise ValueError(
            f"cannot load {path!r}: no such folder, and as a hub id it is not in the local cache and {reason}; "
            f"download it where the hub is reachable (hf download {path}) or pass a local folder"
        )
    return path


def model_config(path: str | os.PathLike) -> Any:
    """The ``AutoConfig`` of the model at ``path`` (a folder or hub id, or a PEFT adapter: its base's); a one-line
    ValueError when it holds none (e.g. the folder of a run that was stopped before it saved a model)."""
    from transformers import AutoConfig

    path = check_model_source(path)
    adapter = Path(path) / "adapter_config.json"
    if adapter.exists():
        return model_config(json.loads(adapter.read_text())["base_model_name_or_path"])
    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot load a model from {path!r}: {err}") from err


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
    from transformers import AutoProcessor

    path = check_model_source(path or default_model_path())
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
    config = model_config(path)
    if allow_text and config.model_type not in SUPPORTED_ARCHITECTURES:
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        return model, auto_tokenizer(path)
    cls = model_class(config)
    if config.model_type == "qwen2_5_omni":  # a full Qwen2.5-Omni checkpoint: load its thinker only
        config = config.thinker_config
    model = cls.from_pretrained(path, config=config, dtype=dtype).to(device).eval()
    _allow_omni_processor_without_torchvision()
    processor = AutoProcessor.from_pretrained(path)
    return model, processor


# config.model_type -> the transformers class the trainer and inference run
SUPPORTED_ARCHITECTURES = {
    "qwen2_audio": "Qwen2AudioForConditionalGeneration",  # Qwen2-Audio(-7B-Instruct)
    "qwen2_5_omni_thinker": "Qwen2_5OmniThinkerForConditionalGeneration",  # Qwen2.5-Omni's thinker
    "qwen2_5_omni": "Qwen2_5OmniThinkerForConditionalGeneration",  # full Qwen2.5-Omni: its thinker, no talker
}


def model_class(config):
    """The transformers class for ``config``; a clear error naming the supported architectures."""
    import transformers

    name = SUPPORTED_ARCHITECTURES.get(config.model_type)
    if name is None:
        supported = ", ".join(f"{k} ({v})" for k, v in SUPPORTED_ARCHITECTURES.items())
        raise ValueError(f"unsupported architecture {config.model_type!r}; supported: {supported}")
    return getattr(transformers, name)


def is_omni(model) -> bool:
    """Whether ``model`` is a Qwen2.5-Omni thinker (else Qwen2-Audio or a text-only causal LM)."""
    return unwrap_peft(model).config.model_type.startswith("qwen2_5_omni")


def freeze_unused(model) -> list[str]:
    """Freeze what the audio path never runs (Qwen2.5-Omni's vision encoder and its unused audio bos/eos
    embedding): no optimizer state for them, and DDP finds no unused parameters. Returns their names."""
    names = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and (".visual." in f".{n}" or "audio_bos_eos_token" in n)
    ]
    for n, p in model.named_parameters():
        if n in names:
            p.requires_grad_(False)
    return names


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
    if is_omni(model):  # chunked Whisper-style tower over the valid frames only, projection inside
        lengths = feature_attention_mask.sum(-1)
        _, out_lengths = core.audio_tower._get_feat_extract_output_lengths(lengths)
        feats = core.get_audio_features(input_features, feature_attention_mask).last_hidden_state
        return list(feats.split(out_lengths.tolist()))
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
