"""Triton fused SiLU-and-multiply (spec/kernels.md §silu_and_mul).

The Llama MLP computes ``silu(gate) * up`` on the two halves of one fused gate/up projection. One
program handles ``BLOCK`` output columns of one row, reading the matching gate and up columns once
and writing the product once (three memory passes instead of the five of separate ops). The SiLU
result is rounded to the activation dtype before the multiply, the reference's rounding order.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import (
    KernelInputError,
    cdiv,
    check_dtype,
    check_last_dim_contiguous,
    check_launchable,
    is_interpreted,
    next_power_of_2,
    on_input_device,
)
from ._tl import round_to

#: Output columns per program.
MAX_BLOCK = 1024


@triton.jit  # type: ignore[untyped-decorator]
def _silu_and_mul_kernel(  # type: ignore[no-untyped-def]  # noqa: PLR0917
    x_ptr,  # *T, (n_rows, 2*I): gate in columns [0, I), up in [I, 2*I); row stride x_row_stride
    out_ptr,  # *T, (n_rows, I) contiguous output
    x_row_stride,  # elements between consecutive rows of x
    n_inter,  # I
    BLOCK: tl.constexpr,  # output columns per program, a power of two
    INTERPRETED: tl.constexpr,  # running under TRITON_INTERPRET=1 (see _tl.py)
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_inter
    x_row = x_ptr + row * x_row_stride
    gate = tl.load(x_row + cols, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(x_row + n_inter + cols, mask=mask, other=0.0).to(tl.float32)
    dt = out_ptr.dtype.element_ty
    e = tl.exp(-tl.abs(gate))  # sigmoid without overflow: exp of a non-positive number
    sig = tl.where(gate >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    act = round_to(gate * sig, dt, INTERPRETED).to(tl.float32)
    tl.store(out_ptr + row * n_inter + cols, round_to(act * up, dt, INTERPRETED), mask=mask)


@on_input_device
def silu_and_mul(x: torch.Tensor, *, block_size: int | None = None) -> torch.Tensor:
    """``silu(x[..., :I]) * x[..., I:]`` for ``x`` (..., 2*I) -> (..., I).

    Spec/kernels.md §silu_and_mul; same contract as
    :func:`infernet_kernels.reference.silu_and_mul_reference`. ``block_size`` (a power of two)
    overrides the columns per program.
    """
    check_dtype("x", x)
    if x.dim() < 1 or x.shape[-1] % 2 or x.shape[-1] == 0:
        raise KernelInputError(f"x must end in an even, non-zero dimension, got {tuple(x.shape)}")
    check_launchable(_silu_and_mul_kernel, x)
    check_last_dim_contiguous("x", x)
    n_inter = x.shape[-1] // 2
    rows = x.reshape(-1, x.shape[-1])  # (n_rows, 2*I)
    out = torch.empty((rows.shape[0], n_inter), dtype=x.dtype, device=x.device)  # (n_rows, I)
    out_shape = (*x.shape[:-1], n_inter)
    if rows.shape[0] == 0:
        return out.view(out_shape)
    block = block_size if block_size is not None else min(next_power_of_2(n_inter), MAX_BLOCK)
    if block <= 0 or block & (block - 1):
        raise KernelInputError(f"block_size must be a power of two, got {block}")
    grid = (rows.shape[0], cdiv(n_inter, block))
    _silu_and_mul_kernel[grid](
        rows,
        out,
        rows.stride(0),
        n_inter,
        BLOCK=block,
        INTERPRETED=is_interpreted(_silu_and_mul_kernel),
        num_warps=4,
        enable_fp_fusion=False,
    )
    return out.view(out_shape)
