"""Triton rotary position embedding, "rotate_half" layout (spec/kernels.md §rotary_embedding).

One program per token rotates every query and key head of that token, so the token's cos/sin row
is read once. Heads are processed in tiles of ``BLOCK_H`` heads x ``BLOCK_HALF`` pairs. The
inputs may be strided views (for example slices of a fused QKV projection) as long as the head
dimension is unit-strided; the outputs are new contiguous tensors. Each product is rounded to the
activation dtype before the sum, replicating the reference's (and Hugging Face's) rounding.
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

#: Most heads rotated per tile; more heads loop over tiles.
MAX_BLOCK_H = 16


@triton.jit  # type: ignore[untyped-decorator]
def _rotate_heads(  # type: ignore[no-untyped-def]  # noqa: PLR0917
    src,  # *T, first head of this token; heads head_stride apart, unit stride inside a head
    dst,  # *T, first head of this token in the contiguous output (heads 2*half apart)
    head_stride,  # elements between consecutive heads of src
    n_heads,  # heads to rotate
    half,  # head_dim // 2
    cos,  # (BLOCK_HALF,) float32 cos row, already rounded to the activation dtype
    sin,  # (BLOCK_HALF,) float32 sin row, already rounded to the activation dtype
    BLOCK_H: tl.constexpr,  # heads per tile
    BLOCK_HALF: tl.constexpr,  # next power of two >= half
    INTERPRETED: tl.constexpr,  # running under TRITON_INTERPRET=1 (see _tl.py)
):
    dt = dst.dtype.element_ty
    d = tl.arange(0, BLOCK_HALF)[None, :]  # (1, BLOCK_HALF)
    c = cos[None, :]
    s = sin[None, :]
    for h0 in range(0, n_heads, BLOCK_H):
        h = h0 + tl.arange(0, BLOCK_H)[:, None]  # (BLOCK_H, 1)
        mask = (h < n_heads) & (d < half)
        x1 = tl.load(src + h * head_stride + d, mask=mask, other=0.0).to(tl.float32)
        x2 = tl.load(src + h * head_stride + half + d, mask=mask, other=0.0).to(tl.float32)
        x1c = round_to(x1 * c, dt, INTERPRETED).to(tl.float32)
        x2c = round_to(x2 * c, dt, INTERPRETED).to(tl.float32)
        x1s = round_to(x1 * s, dt, INTERPRETED).to(tl.float32)
        x2s = round_to(x2 * s, dt, INTERPRETED).to(tl.float32)
        tl.store(dst + h * (2 * half) + d, round_to(x1c - x2s, dt, INTERPRETED), mask=mask)
        tl.store(dst + h * (2 * half) + half + d, round_to(x2c + x1s, dt, INTERPRETED), mask=mask)


@triton.jit  # type: ignore[untyped-decorator]
def _rotary_kernel(  # type: ignore[no-untyped-def]  # noqa: PLR0917
    q_ptr,  # *T, (T, H, D) queries; token stride q_tok_stride, head stride q_head_stride
    k_ptr,  # *T, (T, Hkv, D) keys; token stride k_tok_stride, head stride k_head_stride
    cos_ptr,  # *C, (T, D//2) cos of each token's angles; row stride cos_stride
    sin_ptr,  # *C, (T, D//2) sin of each token's angles; row stride sin_stride
    q_out_ptr,  # *T, (T, H, D) contiguous output
    k_out_ptr,  # *T, (T, Hkv, D) contiguous output
    q_tok_stride,
    q_head_stride,
    k_tok_stride,
    k_head_stride,
    cos_stride,
    sin_stride,
    n_q_heads,  # H
    n_k_heads,  # Hkv
    half,  # D // 2
    BLOCK_H: tl.constexpr,  # heads per tile
    BLOCK_HALF: tl.constexpr,  # next power of two >= half
    INTERPRETED: tl.constexpr,  # running under TRITON_INTERPRET=1 (see _tl.py)
):
    tok = tl.program_id(0).to(tl.int64)
    d = tl.arange(0, BLOCK_HALF)
    dmask = d < half
    dt = q_out_ptr.dtype.element_ty
    cos = tl.load(cos_ptr + tok * cos_stride + d, mask=dmask, other=0.0).to(tl.float32)
    cos = round_to(cos, dt, INTERPRETED).to(tl.float32)
    sin = tl.load(sin_ptr + tok * sin_stride + d, mask=dmask, other=0.0).to(tl.float32)
    sin = round_to(sin, dt, INTERPRETED).to(tl.float32)
    _rotate_heads(
        q_ptr + tok * q_tok_stride,
        q_out_ptr + tok * n_q_heads * 2 * half,
        q_head_stride,
        n_q_heads,
        half,
        cos,
        sin,
        BLOCK_H,
        BLOCK_HALF,
        INTERPRETED,
    )
    _rotate_heads(
        k_ptr + tok * k_tok_stride,
        k_out_ptr + tok * n_k_heads * 2 * half,
        k_head_stride,
        n_k_heads,
        half,
        cos,
        sin,
        BLOCK_H,
        BLOCK_HALF,
        INTERPRETED,
    )


def _check(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("cos", cos), ("sin", sin)):
        check_dtype(name, t)
    if q.dim() != 3 or k.dim() != 3:
        raise KernelInputError(
            f"q and k must be (T, heads, head_dim), got {tuple(q.shape)} and {tuple(k.shape)}"
        )
    n_tok, _, head_dim = q.shape
    if head_dim % 2 or head_dim == 0:
        raise KernelInputError(f"head_dim must be even and positive, got {head_dim}")
    if k.shape[0] != n_tok or k.shape[2] != head_dim:
        raise KernelInputError(f"k shape {tuple(k.shape)} does not match q shape {tuple(q.shape)}")
    if k.dtype != q.dtype:
        raise KernelInputError(f"q and k must share a dtype, got {q.dtype} and {k.dtype}")
    for name, t in (("cos", cos), ("sin", sin)):
        if t.shape != (n_tok, head_dim // 2):
            raise KernelInputError(
                f"{name} must have shape ({n_tok}, {head_dim // 2}), got {tuple(t.shape)}"
            )
        check_last_dim_contiguous(name, t)
    check_last_dim_contiguous("q", q)
    check_last_dim_contiguous("k", k)


@on_input_device
def rotary_embedding(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate ``q`` (T, H, D) and ``k`` (T, Hkv, D) by ``cos``/``sin`` (T, D//2).

    Spec/kernels.md §rotary_embedding; same contract as
    :func:`infernet_kernels.reference.rotary_embedding_reference`. Returns new tensors.
    """
    _check(q, k, cos, sin)
    check_launchable(_rotary_kernel, q, k, cos, sin)
    q_out = torch.empty(q.shape, dtype=q.dtype, device=q.device)  # (T, H, D)
    k_out = torch.empty(k.shape, dtype=k.dtype, device=k.device)  # (T, Hkv, D)
    n_tok, n_heads, head_dim = q.shape
    if n_tok == 0:
        return q_out, k_out
    half = head_dim // 2
    _rotary_kernel[(n_tok,)](
        q,
        k,
        cos,
        sin,
        q_out,
        k_out,
        q.stride(0),
        q.stride(1),
        k.stride(0),
        k.stride(1),
        cos.stride(0),
        sin.stride(0),
        n_heads,
        k.shape[1],
        half,
        BLOCK_H=min(next_power_of_2(max(n_heads, k.shape[1])), MAX_BLOCK_H),
        BLOCK_HALF=next_power_of_2(half),
        INTERPRETED=is_interpreted(_rotary_kernel),
        num_warps=4,
        enable_fp_fusion=False,
    )
    return q_out, k_out
