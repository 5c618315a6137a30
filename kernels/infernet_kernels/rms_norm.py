"""Triton RMSNorm (spec/kernels.md §rms_norm), one program per row.

Rows up to ``MAX_BLOCK`` columns stay in registers (``SINGLE_PASS``): one read of ``x``, one write
of the output. Wider rows take two passes over blocks of ``MAX_BLOCK`` columns (sum of squares,
then normalize), reading ``x`` twice. The normalized row is rounded to ``x``'s dtype before the
weight multiply, the order Hugging Face Llama uses, so half-precision results match the
reference to the last bit in most elements.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._common import (
    KernelInputError,
    check_dtype,
    check_last_dim_contiguous,
    check_launchable,
    is_interpreted,
    next_power_of_2,
    on_input_device,
)
from ._tl import round_to

#: Widest row normalized in a single pass (elements); wider rows loop over blocks this wide.
MAX_BLOCK = 8192


@triton.jit  # type: ignore[untyped-decorator]
def _rms_norm_kernel(  # type: ignore[no-untyped-def]  # noqa: PLR0917
    x_ptr,  # *T, (n_rows, n_cols) input; row stride x_row_stride, unit column stride
    w_ptr,  # *W, (n_cols,) weight, contiguous
    out_ptr,  # *O, (n_rows, n_cols) output, O = promote(T, W); row stride out_row_stride
    x_row_stride,  # elements between consecutive rows of x
    out_row_stride,  # elements between consecutive rows of out
    n_cols,  # hidden size
    eps,  # added to the mean square before the reciprocal square root
    BLOCK: tl.constexpr,  # columns per block, a power of two
    SINGLE_PASS: tl.constexpr,  # True when BLOCK >= n_cols: the row stays in registers
    INTERPRETED: tl.constexpr,  # running under TRITON_INTERPRET=1 (see _tl.py)
):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * x_row_stride
    out_row = out_ptr + row * out_row_stride
    cols = tl.arange(0, BLOCK)
    if SINGLE_PASS:
        mask = cols < n_cols
        x = tl.load(x_row + cols, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.rsqrt(tl.sum(x * x, axis=0) / n_cols + eps)
        w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
        normed = round_to(x * rstd, x_ptr.dtype.element_ty, INTERPRETED).to(tl.float32)
        tl.store(
            out_row + cols, round_to(normed * w, out_ptr.dtype.element_ty, INTERPRETED), mask=mask
        )
    else:
        sq = tl.zeros([BLOCK], dtype=tl.float32)
        for start in range(0, n_cols, BLOCK):
            mask = start + cols < n_cols
            x = tl.load(x_row + start + cols, mask=mask, other=0.0).to(tl.float32)
            sq += x * x
        rstd = tl.rsqrt(tl.sum(sq, axis=0) / n_cols + eps)
        for start in range(0, n_cols, BLOCK):
            mask = start + cols < n_cols
            x = tl.load(x_row + start + cols, mask=mask, other=0.0).to(tl.float32)
            w = tl.load(w_ptr + start + cols, mask=mask, other=0.0).to(tl.float32)
            normed = round_to(x * rstd, x_ptr.dtype.element_ty, INTERPRETED).to(tl.float32)
            tl.store(
                out_row + start + cols,
                round_to(normed * w, out_ptr.dtype.element_ty, INTERPRETED),
                mask=mask,
            )


def _num_warps(block: int) -> int:
    """8 warps from 2048 columns up (16 warps spill at 8192 fp16 columns on sm_90)."""
    return 8 if block >= 2048 else 4


@on_input_device
def rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float, *, block_size: int | None = None
) -> torch.Tensor:
    """RMSNorm of ``x`` (..., N) with ``weight`` (N,) (spec/kernels.md §rms_norm).

    Same contract as :func:`infernet_kernels.reference.rms_norm_reference`. ``block_size``
    (a power of two) overrides the column block; a block narrower than N selects the two-pass
    mode. Raises :class:`KernelInputError` on a contract violation.
    """
    check_dtype("x", x)
    check_dtype("weight", weight)
    if x.dim() < 1 or x.shape[-1] == 0:
        raise KernelInputError(
            f"x must have a non-empty last dimension, got shape {tuple(x.shape)}"
        )
    n_cols = x.shape[-1]
    if weight.shape != (n_cols,):
        raise KernelInputError(f"weight must have shape ({n_cols},), got {tuple(weight.shape)}")
    if not eps >= 0.0:
        raise KernelInputError(f"eps must be a non-negative float, got {eps!r}")
    check_launchable(_rms_norm_kernel, x, weight)
    check_last_dim_contiguous("x", x)
    weight = weight.contiguous()
    rows = x.reshape(-1, n_cols)  # (n_rows, N); a view when the leading dims collapse
    out = torch.empty(
        rows.shape, dtype=torch.promote_types(x.dtype, weight.dtype), device=x.device
    )  # (n_rows, N)
    if rows.shape[0] == 0:
        return out.view(x.shape)
    block = block_size if block_size is not None else min(next_power_of_2(n_cols), MAX_BLOCK)
    if block <= 0 or block & (block - 1):
        raise KernelInputError(f"block_size must be a power of two, got {block}")
    _rms_norm_kernel[(rows.shape[0],)](
        rows,
        weight,
        out,
        rows.stride(0),
        out.stride(0),
        n_cols,
        float(eps),
        BLOCK=block,
        SINGLE_PASS=block >= n_cols,
        INTERPRETED=is_interpreted(_rms_norm_kernel),
        num_warps=_num_warps(block),
        enable_fp_fusion=False,
    )
    return out.view(x.shape)
