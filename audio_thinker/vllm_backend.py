"""Optional vLLM rollouts for GRPO on GPUs (``--rollout vllm``; ``pip install '.[vllm]'``, GPU only).

vLLM samples the G completions of each prompt; everything else (log-probs, rewards, loss) stays in the
trainer. Each prompt is the same chat text the HF path uses, with its clip as ``multi_modal_data``
(``{"audio": [(waveform, sampling_rate)]}``), so vLLM's own Qwen2-Audio / Qwen2.5-Omni processor expands
the audio placeholder. The engine runs colocated with training (one per process, like TRL's colocate mode)
and gets the policy's weights after every optimizer step. :func:`build_requests` needs no vLLM.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from .prompts import chat_prompt

NOT_INSTALLED = "vLLM is not installed: pip install '.[vllm]' (GPU only)"


def build_requests(processor, items: Sequence[dict], mode: str) -> list[dict]:
    """vLLM prompts for ``items`` (each with an ``audio`` waveform at the processor's sampling rate)."""
    sr = processor.feature_extractor.sampling_rate
    return [
        {
            "prompt": chat_prompt(processor, it["question"], it["choices"], mode),
            "multi_modal_data": {"audio": [(np.asarray(it["audio"], dtype=np.float32), sr)]},
        }
        for it in items
    ]


def import_vllm():
    """The ``vllm`` module, or an ImportError that says how to install it."""
    try:
        import vllm
    except ImportError as err:
        raise ImportError(NOT_INSTALLED) from err
    return vllm


class VLLMRollout:
    """A colocated vLLM engine that samples completions and takes the policy's weights after each step."""

    def __init__(
        self, model: str, *, seed: int = 0, max_model_len: int = 4096, gpu_memory_utilization: float = 0.3
    ):
        # the engine core in this process, so its model can take the policy's weights (vLLM V1; as TRL's
        # colocate mode)
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        vllm = import_vllm()
        self.llm = vllm.LLM(
            model=model,
            seed=seed,
            max_model_len=max_model_len,
            gpu_memory_utilization=gpu_memory_utilization,
            limit_mm_per_prompt={"audio": 1},
            distributed_executor_backend="external_launcher",  # one engine per accelerate process
        )
        self.sampling_params = vllm.SamplingParams

    def generate(
        self,
        requests: list[dict],
        *,
        n: int,
        seeds: Sequence[int],
        max_new_tokens: int,
        temperature: float,
        pad_id: int,
    ) -> torch.Tensor:
        """``n`` completions per request (request i seeded by ``seeds[i]``), right-padded: (len·n, T) token ids."""
        params = [
            self.sampling_params(n=n, seed=int(s), max_tokens=max_new_tokens, temperature=temperature)
            for s in seeds
        ]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        ids = [list(c.token_ids) for o in outputs for c in o.outputs]
        width = max(1, max(len(x) for x in ids))
        return torch.tensor([x + [pad_id] * (width - len(x)) for x in ids], dtype=torch.long)

    @torch.no_grad()
    def load_weights(self, model) -> None:
        """Copy the policy's weights into the engine (a LoRA adapter is merged for the copy, then unmerged)."""
        peft = hasattr(model, "merge_adapter")
        if peft:
            model.merge_adapter()
        try:
            weights = [
                (n.removeprefix("base_model.model.").replace(".base_layer", ""), p)
                for n, p in model.state_dict().items()
                if "lora_" not in n
            ]
            try:
                engine = self.llm.llm_engine.model_executor.driver_worker.worker.model_runner.model
            except AttributeError as err:
                raise RuntimeError(
                    f"cannot reach the model of vLLM {getattr(import_vllm(), '__version__', '?')} to load the "
                    "policy's weights (needs the engine in-process: VLLM_ENABLE_V1_MULTIPROCESSING=0)"
                ) from err
            engine.load_weights(weights)
        finally:
            if peft:
                model.unmerge_adapter()
