"""Rotary embedding: kernel vs reference, reference vs transformers (spec/kernels.md)."""

from __future__ import annotations

import pytest
import torch
from infernet_kernels import KernelInputError, rotary_embedding, rotary_embedding_reference
from kernels_testlib import DTYPE_IDS, DTYPES, assert_matches


def _tables(
    positions: torch.Tensor, head_dim: int, base: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin (T, D//2) of the Llama angles for ``positions`` in float32."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    angles = positions.float()[:, None] * inv_freq[None, :]  # (T, D//2)
    return angles.cos(), angles.sin()


# (tokens, heads, kv_heads, head_dim): head_dim 64/80/128 and 96, GQA 1/2/4/7, 1..7 tokens.
CASES = {
    "1tok-mha-d64": (1, 4, 4, 64),
    "3tok-gqa2-d80": (3, 6, 3, 80),
    "7tok-gqa4-d128": (7, 8, 2, 128),
    "5tok-gqa7-d96": (5, 7, 1, 96),
    "2tok-many-heads-d64": (2, 40, 8, 64),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(CASES))
def test_kernel_matches_reference(name: str, dtype: torch.dtype) -> None:
    tokens, heads, kv_heads, dim = CASES[name]
    gen = torch.Generator().manual_seed(len(name))
    q = torch.randn(tokens, heads, dim, generator=gen).to(dtype)
    k = torch.randn(tokens, kv_heads, dim, generator=gen).to(dtype)
    positions = torch.randint(0, 8192, (tokens,), generator=gen)
    cos, sin = _tables(positions, dim)
    q_out, k_out = rotary_embedding(q, k, cos, sin)
    q_ref, k_ref = rotary_embedding_reference(q, k, cos, sin)
    assert_matches("rotary_embedding", q_out, q_ref)
    assert_matches("rotary_embedding", k_out, k_ref)


def test_strided_views_of_fused_qkv_and_half_precision_tables() -> None:
    tokens, heads, kv_heads, dim = 4, 6, 2, 80
    qkv = torch.randn(tokens, (heads + 2 * kv_heads) * dim).to(torch.bfloat16)
    q = qkv[:, : heads * dim].view(tokens, heads, dim)  # token stride (H + 2 Hkv) * D
    k = qkv[:, heads * dim : (heads + kv_heads) * dim].view(tokens, kv_heads, dim)
    cos, sin = _tables(torch.arange(100, 104), dim)
    cos, sin = cos.to(torch.bfloat16), sin.to(torch.bfloat16)
    q_out, k_out = rotary_embedding(q, k, cos, sin)
    q_ref, k_ref = rotary_embedding_reference(q, k, cos, sin)
    assert q_out.is_contiguous()
    assert_matches("rotary_embedding", q_out, q_ref)
    assert_matches("rotary_embedding", k_out, k_ref)
    assert torch.equal(qkv[:, : heads * dim].view(tokens, heads, dim), q)  # inputs untouched


def test_position_zero_is_identity() -> None:
    q, k = torch.randn(3, 2, 64), torch.randn(3, 1, 64)
    cos, sin = _tables(torch.zeros(3, dtype=torch.long), 64)
    q_out, k_out = rotary_embedding(q, k, cos, sin)
    assert torch.equal(q_out, q)
    assert torch.equal(k_out, k)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_reference_matches_transformers(dtype: torch.dtype) -> None:
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    config = LlamaConfig(
        hidden_size=320, num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0
    )
    rope = LlamaRotaryEmbedding(config)
    positions = torch.tensor([[0, 1, 17, 4095, 300]])
    x = torch.randn(1, 5, 320).to(dtype)
    cos_full, sin_full = rope(x, positions)  # (1, 5, 80) in dtype
    q = torch.randn(5, 4, 80).to(dtype)
    k = torch.randn(5, 2, 80).to(dtype)
    # HF layout (B, H, T, D) with cos (B, T, D); ours (T, H, D) with cos (T, D//2).
    q_hf, k_hf = apply_rotary_pos_emb(
        q.transpose(0, 1)[None], k.transpose(0, 1)[None], cos_full, sin_full
    )
    cos, sin = _tables(positions[0], 80)
    q_ref, k_ref = rotary_embedding_reference(q, k, cos, sin)
    atol, rtol = (1e-6, 1e-6) if dtype == torch.float32 else (0.0, 0.0)
    torch.testing.assert_close(q_ref, q_hf[0].transpose(0, 1), atol=atol, rtol=rtol)
    torch.testing.assert_close(k_ref, k_hf[0].transpose(0, 1), atol=atol, rtol=rtol)


@pytest.mark.parametrize(
    ("q_shape", "k_shape", "table_shape", "message"),
    [
        ((2, 4, 63), (2, 2, 63), (2, 31), "head_dim must be even"),
        ((2, 4, 64), (3, 2, 64), (2, 32), "does not match"),
        ((2, 4, 64), (2, 2, 64), (2, 64), "cos must have shape"),
        ((2, 4, 64), (2, 2, 64), (1, 32), "cos must have shape"),
        ((2, 64), (2, 64), (2, 32), "must be \\(T, heads, head_dim\\)"),
    ],
    ids=["odd-dim", "token-mismatch", "full-width-table", "short-table", "2d"],
)
def test_contract_violations_raise_typed_errors(
    q_shape: tuple[int, ...], k_shape: tuple[int, ...], table_shape: tuple[int, ...], message: str
) -> None:
    cos = torch.randn(table_shape)
    with pytest.raises(KernelInputError, match=message):
        rotary_embedding(torch.randn(q_shape), torch.randn(k_shape), cos, cos)


def test_dtype_mismatch_raises() -> None:
    cos = torch.randn(2, 32)
    with pytest.raises(KernelInputError, match="share a dtype"):
        rotary_embedding(torch.randn(2, 4, 64), torch.randn(2, 2, 64).half(), cos, cos)
