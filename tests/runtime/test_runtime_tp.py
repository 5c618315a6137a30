"""Tensor parallelism: 2 gloo ranks on 127.0.0.1 against the unsharded model and transformers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from infernet_ref.runtime import tp
from infernet_ref.runtime.config import load_config
from infernet_ref.runtime.errors import RequestError
from infernet_ref.runtime.launch import run_ranks

from ._workers import tp_rank_check
from .conftest import hf_greedy

PROMPTS = [[1, 2, 3, 4, 5], [7, 8, 9], [11] * 13]


@pytest.mark.interop
def test_tp2_matches_unsharded_and_transformers(checkpoints: dict[str, tuple[Path, Any]]) -> None:
    """One spawn of 2 ranks checks an odd-head GQA Llama and a biased, tied Qwen2."""
    families = ["llama-gqa3", "qwen2-bias"]
    paths = [str(checkpoints[f][0]) for f in families]
    results = run_ranks(tp_rank_check, 2, paths, PROMPTS, 32, timeout=240)
    for family, result in zip(families, results, strict=True):
        _check(checkpoints[family], result)


def _check(checkpoint: tuple[Path, Any], result: dict[str, Any]) -> None:
    path, hf = checkpoint
    assert result["diffs"]["loaded"] < 1e-5
    assert result["diffs"]["passed"] < 1e-5
    cfg = load_config(path)
    assert result["qkv_shape"][0] == (cfg.q_size + 2 * cfg.kv_size) // 2
    expected = hf_greedy(hf, PROMPTS, 32)
    for name in ("full", "loaded", "passed"):
        assert result["tokens"][name] == expected, name
    assert result["tokens"]["hybrid"] == expected[0]
    assert result["tokens"]["cli"] == expected[1]
    assert result["tokens"]["sampled_tp"] == result["tokens"]["sampled_full"]


def test_impossible_tp_sizes_are_refused(checkpoints: dict[str, tuple[Path, Any]]) -> None:
    cfg = load_config(checkpoints["llama-gqa3"][0])  # 6 heads, 2 kv heads, intermediate 72
    with pytest.raises(RequestError, match="num_key_value_heads=2"):
        tp.local_config(cfg, 4)
    with pytest.raises(RequestError, match="num_attention_heads=6"):
        tp.local_config(cfg, 4)
    with pytest.raises(RequestError):
        tp.local_config(cfg, 0)
    with pytest.raises(RequestError):
        tp.local_config(cfg, 2, rank=2)
    assert tp.local_config(cfg, 2).num_attention_heads == 3


def test_shard_dims_follow_megatron_layout() -> None:
    assert tp.shard_dim("model.layers.0.self_attn.q_proj.weight") == 0
    assert tp.shard_dim("model.layers.0.self_attn.k_proj.bias") == 0
    assert tp.shard_dim("model.layers.3.mlp.up_proj.weight") == 0
    assert tp.shard_dim("model.layers.0.self_attn.o_proj.weight") == 1
    assert tp.shard_dim("model.layers.0.self_attn.o_proj.bias") is None
    assert tp.shard_dim("model.layers.0.mlp.down_proj.weight") == 1
    assert tp.shard_dim("model.embed_tokens.weight") is None
    assert tp.shard_dim("lm_head.weight") is None
    assert tp.shard_dim("model.norm.weight") is None
