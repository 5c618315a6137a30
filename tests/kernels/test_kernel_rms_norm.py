"""RMSNorm: kernel vs reference, reference vs transformers' LlamaRMSNorm (spec/kernels.md)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from infernet_kernels import KernelInputError, rms_norm, rms_norm_reference
from kernels_testlib import DTYPE_IDS, DTYPES, assert_matches

# Shapes: non-power-of-two hidden sizes, a single column, a 3-D batch, and forced
# blocks narrower than the row (two-pass mode, the row ends inside and at a block edge).
# (shape, block_size, eps): the eps values matter at the input scale used (std 3 or 0.1).
CASES = {
    "1x1": ((1, 1), None, 1e-6),
    "3x77": ((3, 77), None, 1e-6),
    "2x3x257-big-eps": ((2, 3, 257), None, 0.25),
    "4x1000": ((4, 1000), None, 1e-5),
    "3x77-two-pass": ((3, 77), 16, 1e-6),
    "2x96-two-pass-exact-big-eps": ((2, 96), 32, 0.25),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(CASES))
def test_kernel_matches_reference(name: str, dtype: torch.dtype) -> None:
    shape, block, eps = CASES[name]
    gen = torch.Generator().manual_seed(len(name))
    x = ((0.1 if eps > 0.01 else 3.0) * torch.randn(shape, generator=gen)).to(dtype)
    weight = (1 + 0.5 * torch.randn(shape[-1], generator=gen)).to(dtype)
    out = rms_norm(x, weight, eps, block_size=block)
    assert_matches("rms_norm", out, rms_norm_reference(x, weight, eps))


@pytest.mark.parametrize(
    ("x_dtype", "w_dtype"),
    [
        (torch.bfloat16, torch.float32),
        (torch.float16, torch.float32),
        (torch.float32, torch.bfloat16),
    ],
)
def test_mixed_weight_dtype_promotes(x_dtype: torch.dtype, w_dtype: torch.dtype) -> None:
    x = torch.randn(5, 130).to(x_dtype)
    weight = torch.randn(130).to(w_dtype)
    out = rms_norm(x, weight, 1e-5)
    assert out.dtype == torch.float32
    assert_matches("rms_norm", out, rms_norm_reference(x, weight, 1e-5))


def test_strided_rows_and_large_eps() -> None:
    base = torch.randn(6, 200)
    x = base[::2, :150]  # row stride 400 elements, unit column stride
    weight = torch.randn(150)
    assert_matches("rms_norm", rms_norm(x, weight, 0.5), rms_norm_reference(x, weight, 0.5))


def test_empty_batch() -> None:
    out = rms_norm(torch.empty(0, 64), torch.ones(64), 1e-6)
    assert out.shape == (0, 64)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_reference_matches_transformers(dtype: torch.dtype) -> None:
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    module = LlamaRMSNorm(333, eps=1e-5).to(dtype)
    with torch.no_grad():
        module.weight.copy_(torch.randn(333))
    x = torch.randn(4, 7, 333).to(dtype)
    with torch.no_grad():
        expected = module(x)
    torch.testing.assert_close(rms_norm_reference(x, module.weight, 1e-5), expected, atol=0, rtol=0)


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 4),
    cols=st.integers(1, 300),
    block_exp=st.sampled_from([None, 4, 6]),
    dtype=st.sampled_from(DTYPES),
)
def test_random_shapes(rows: int, cols: int, block_exp: int | None, dtype: torch.dtype) -> None:
    x = torch.randn(rows, cols).to(dtype)
    weight = torch.randn(cols).to(dtype)
    block = None if block_exp is None else 1 << block_exp
    assert_matches(
        "rms_norm", rms_norm(x, weight, 1e-6, block_size=block), rms_norm_reference(x, weight, 1e-6)
    )


@pytest.mark.parametrize(
    ("x", "weight", "eps", "block", "message"),
    [
        (torch.randn(2, 8), torch.ones(7), 1e-6, None, "weight must have shape"),
        (torch.randn(2, 8), torch.ones(8), -1.0, None, "eps must be"),
        (torch.randn(2, 8), torch.ones(8), float("nan"), None, "eps must be"),
        (torch.randn(2, 8), torch.ones(8), 1e-6, 24, "power of two"),
        (torch.randn(2, 0), torch.ones(0), 1e-6, None, "non-empty last dimension"),
        (torch.ones(2, 8, dtype=torch.int32), torch.ones(8), 1e-6, None, "float32, float16"),
        (torch.randn(8, 2).t(), torch.ones(8), 1e-6, None, "unit stride"),
    ],
    ids=[
        "weight-shape",
        "negative-eps",
        "nan-eps",
        "block-not-pow2",
        "empty-rows",
        "int",
        "strided",
    ],
)
def test_contract_violations_raise_typed_errors(
    x: torch.Tensor, weight: torch.Tensor, eps: float, block: int | None, message: str
) -> None:
    with pytest.raises(KernelInputError, match=message):
        rms_norm(x, weight, eps, block_size=block)
