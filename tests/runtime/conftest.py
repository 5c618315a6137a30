"""Random-weight Hugging Face checkpoints for the runtime's oracle tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

torch.set_num_threads(1)

#: Device of test_runtime_device.py: "cuda" on opt-in (scripts/gpu_check.sh), else CPU.
TEST_DEVICE = os.environ.get("INFERNET_TEST_DEVICE", "").strip().lower()
if TEST_DEVICE == "cuda":
    # tests/conftest.py asks for Triton's interpreter when /dev/nvidiactl is missing; on a GPU
    # run the runtime must call the compiled kernels (triton is not imported yet here).
    os.environ.pop("TRITON_INTERPRET", None)

FAMILIES: dict[str, dict[str, Any]] = {
    # odd head count, GQA 3:1, untied
    "llama-gqa3": {
        "model_type": "llama",
        "hidden_size": 48,
        "num_attention_heads": 6,
        "num_key_value_heads": 2,
        "intermediate_size": 72,
        "num_hidden_layers": 3,
    },
    # llama3 rope scaling, MHA, tied embeddings, attention and mlp bias
    "llama3-tied": {
        "model_type": "llama",
        "hidden_size": 32,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
        "intermediate_size": 40,
        "num_hidden_layers": 2,
        "tie_word_embeddings": True,
        "attention_bias": True,
        "mlp_bias": True,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        },
    },
    # mistral, MQA (one kv head), explicit head_dim != hidden/heads
    "mistral-mqa": {
        "model_type": "mistral",
        "hidden_size": 40,
        "num_attention_heads": 5,
        "num_key_value_heads": 1,
        "head_dim": 12,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "sliding_window": None,
    },
    # qwen2 with q/k/v bias, GQA 2:1, tied
    "qwen2-bias": {
        "model_type": "qwen2",
        "hidden_size": 32,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 48,
        "num_hidden_layers": 3,
        "tie_word_embeddings": True,
    },
}


def make_hf_model(family: str, vocab: int = 97, seed: int = 0, **overrides: Any) -> Any:
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    spec = dict(FAMILIES[family])
    spec.update(overrides)
    model_type = spec.pop("model_type")
    cls_cfg, cls_model = {
        "llama": (LlamaConfig, LlamaForCausalLM),
        "mistral": (MistralConfig, MistralForCausalLM),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    }[model_type]
    cfg = cls_cfg(
        vocab_size=vocab,
        max_position_embeddings=256,
        rms_norm_eps=1e-5,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        **spec,
    )
    torch.manual_seed(seed)
    model = cls_model(cfg).eval()
    with torch.no_grad():  # larger than the default init so that logits are well separated
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.8, 1.2)
            else:
                p.normal_(0.0, 0.08 if p.dim() > 1 else 0.05)
    return model


def save_hf(model: Any, path: Path, max_shard_size: str | None = None) -> Path:
    kwargs: dict[str, Any] = {}
    if max_shard_size:
        kwargs["max_shard_size"] = max_shard_size
    model.save_pretrained(path, **kwargs)
    return path


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Any]]:
    out = {}
    for fam in FAMILIES:
        model = make_hf_model(fam)
        path = save_hf(model, tmp_path_factory.mktemp(fam))
        out[fam] = (path, model)
    return out


def hf_greedy(model: Any, prompts: list[list[int]], new_tokens: int) -> list[list[int]]:
    """Greedy continuation by transformers' own generate (one prompt at a time, no padding)."""
    outs = []
    with torch.inference_mode():
        for p in prompts:
            ids = torch.tensor([p])
            gen = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=0,
            )
            outs.append(gen[0, len(p) :].tolist())
    return outs
