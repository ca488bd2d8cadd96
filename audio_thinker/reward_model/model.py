"""The reward model's network: the tiny default ``Qwen2ForSequenceClassification`` or an HF base.

A one-output sequence classifier per head. The default is :data:`TINY_CONFIG` on the project's shipped
tokenizer, trained from scratch on CPU in minutes (or initialised from a policy's text decoder with
``init``); ``base`` fine-tunes any HF sequence-classification model instead (its own tokenizer).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..judges.learned import torch_setup
from .data import RewardModelError

__all__ = ["TINY_CONFIG", "build_model", "default_tokenizer_path"]

TINY_CONFIG = dict(
    hidden_size=128,
    intermediate_size=384,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=1024,
    rope_theta=10000.0,
    tie_word_embeddings=False,
)
"""Size of the default reward model (a ``Qwen2Config`` sized for the project's tokenizer)."""


def default_tokenizer_path() -> str:
    """The project's tokenizer: the shipped tiny model's folder."""
    from ..models import TINY_MODEL_DIR

    return str(TINY_MODEL_DIR)


def build_model(
    tokenizer: Any,
    base: str | None = None,
    *,
    seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
    init: str | None = None,
) -> Any:
    """A one-output sequence classifier with a fresh head.

    ``base``: any HF model, loaded with ``AutoModelForSequenceClassification``. Else the tiny Qwen2:
    with ``init`` (a policy folder: a Qwen2-Audio checkpoint or a Qwen2 causal LM) its text decoder's
    weights and size, else :data:`TINY_CONFIG` (+ ``overrides``) from a random init.
    """
    torch = torch_setup()
    torch.manual_seed(seed)
    if base is not None:
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1)
        model.config.pad_token_id = tokenizer.pad_token_id
        return model
    from transformers import Qwen2Config, Qwen2ForSequenceClassification

    size: dict[str, Any] = TINY_CONFIG | dict(overrides or {})
    state: dict[str, Any] | None = None
    if init is not None:
        size, state = _policy_text_decoder(init)
    config = Qwen2Config(
        **(size | {"vocab_size": len(tokenizer), "num_labels": 1, "pad_token_id": tokenizer.pad_token_id,
                   "eos_token_id": tokenizer.eos_token_id, "bos_token_id": None, "use_cache": False}),
    )  # fmt: skip
    model = Qwen2ForSequenceClassification(config)
    if state is not None:
        emb = state["model.embed_tokens.weight"]
        if emb.shape[0] != len(tokenizer):
            raise RewardModelError(
                f"{init}: its vocabulary ({emb.shape[0]}) does not match the tokenizer ({len(tokenizer)}); "
                "use the policy's own tokenizer (--tokenizer)"
            )
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or set(missing) - {"score.weight"}:
            raise RewardModelError(f"{init}: cannot load its text decoder ({missing=}, {unexpected=})")
    return model


_TEXT_CONFIG_KEYS = (
    "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
    "max_position_embeddings", "rms_norm_eps", "hidden_act", "rope_parameters",
)  # fmt: skip


def _policy_text_decoder(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Size and weights (``model.*`` keys) of the text decoder of a Qwen2(-Audio) checkpoint folder."""
    from safetensors.torch import load_file

    folder = Path(path)
    try:
        config = json.loads((folder / "config.json").read_text())
        tensors = load_file(str(folder / "model.safetensors"))
    except (OSError, json.JSONDecodeError) as err:
        raise RewardModelError(f"cannot read the policy checkpoint {folder}: {err}") from err
    text = config.get("text_config", config)
    if text.get("model_type") != "qwen2":
        raise RewardModelError(f"{folder}: --init needs a Qwen2 text decoder, got {text.get('model_type')!r}")
    size = {k: text[k] for k in _TEXT_CONFIG_KEYS if k in text}
    size["tie_word_embeddings"] = False
    state = {}
    for key, value in tensors.items():
        for prefix in ("language_model.model.", "model.language_model.", "model."):
            if key.startswith(prefix) and "audio_tower" not in key and "projector" not in key:
                state["model." + key[len(prefix) :]] = value.clone()
                break
    return size, state
