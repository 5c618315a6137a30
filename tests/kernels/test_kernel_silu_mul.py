"""SiLU-and-multiply: kernel vs reference, reference vs transformers' LlamaMLP (spec/kernels.md)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from infernet_kernels import KernelInputError, silu_and_mul, silu_and_mul_reference
from kernels_testlib import DTYPE_IDS, DTYPES, assert_matches

# (shape, block_size): odd intermediate sizes, 3-D batches, Llama-7B-like width (1408 per
# TP rank of 11008/8 is odd-ish), and a forced small block so a row spans many programs.
CASES = {
    "1x2": ((1, 2), None),
    "3x90": ((3, 90), None),
    "2x3x2000": ((2, 3, 2000), None),
    "2x2816": ((2, 2816), None),
    "3x90-block8": ((3, 90), 8),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(CASES))
def test_kernel_matches_reference(name: str, dtype: torch.dtype) -> None:
    shape, block = CASES[name]
    gen = torch.Generator().manual_seed(len(name))
    x = (4 * torch.randn(shape, generator=gen)).to(dtype)
    out = silu_and_mul(x, block_size=block)
    assert out.shape == (*shape[:-1], shape[-1] // 2)
    assert_matches("silu_and_mul", out, silu_and_mul_reference(x))


def test_strided_rows() -> None:
    base = torch.randn(4, 300)
    x = base[:, 50:250]  # row stride 300, unit column stride
    assert_matches("silu_and_mul", silu_and_mul(x), silu_and_mul_reference(x))


def test_extreme_values() -> None:
    x = torch.tensor([[-100.0, -20.0, 0.0, 20.0, 100.0, 3.0, 3.0, 3.0, 3.0, 3.0]])
    assert_matches("silu_and_mul", silu_and_mul(x), silu_and_mul_reference(x))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_reference_matches_transformers_mlp(dtype: torch.dtype) -> None:
    """The fused layout (gate first, up second) reproduces LlamaMLP through down_proj."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    config = LlamaConfig(
        hidden_size=48,
        intermediate_size=75,
        num_attention_heads=4,
        num_key_value_heads=2,
        hidden_act="silu",
    )
    torch.manual_seed(0)
    mlp = LlamaMLP(config).to(dtype)
    x = torch.randn(3, 5, 48).to(dtype)
    with torch.no_grad():
        fused = torch.cat([mlp.gate_proj(x), mlp.up_proj(x)], dim=-1)  # (3, 5, 2*75)
        ours = mlp.down_proj(silu_and_mul_reference(fused))
        theirs = mlp(x)
    # fp32 SiLU on a strided slice may take another vector path (1 ulp); half precision is exact.
    atol, rtol = (1e-6, 1e-6) if dtype == torch.float32 else (0.0, 0.0)
    torch.testing.assert_close(ours, theirs, atol=atol, rtol=rtol)


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 3),
    inter=st.integers(1, 400),
    block_exp=st.sampled_from([None, 3, 7]),
    dtype=st.sampled_from(DTYPES),
)
def test_random_shapes(rows: int, inter: int, block_exp: int | None, dtype: torch.dtype) -> None:
    x = (3 * torch.randn(rows, 2 * inter)).to(dtype)
    block = None if block_exp is None else 1 << block_exp
    assert_matches("silu_and_mul", silu_and_mul(x, block_size=block), silu_and_mul_reference(x))


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (torch.randn(3, 7), "even, non-zero"),
        (torch.randn(3, 0), "even, non-zero"),
        (torch.ones(3, 4, dtype=torch.int64), "float32, float16"),
        (torch.randn(8, 4).t(), "unit stride"),
    ],
    ids=["odd", "empty", "int", "strided"],
)
def test_contract_violations_raise_typed_errors(x: torch.Tensor, message: str) -> None:
    with pytest.raises(KernelInputError, match=message):
        silu_and_mul(x)
