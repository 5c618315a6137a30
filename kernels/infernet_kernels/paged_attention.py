"""Triton paged-attention decode (spec/kernels.md §paged_attention_decode).

Theory of operation. A decode step has one query token per sequence. Program (s, g, p) takes
sequence ``s``, KV head ``g`` and the ``BLOCK_G`` query heads that share it under grouped-query
attention (heads ``g*group .. g*group+group-1``), so each K/V row is read once per group, not
once per query head. It walks tokens ``BLOCK_N`` at a time; each token's physical slot is found
through the block table (``block_tables[s, t // block_size]``, row ``t % block_size``), so any
cache block size works and a tile can straddle cache blocks. Scores use the base-2 online
softmax of FlashAttention: running maximum ``m``, denominator ``l`` and unnormalized output
``acc`` in float32.

Two mode flags. ``USE_DOT`` computes q k^T and p v with ``tl.dot`` (tensor cores; query heads
padded to 16 rows), otherwise with broadcast multiply-and-sum (cheaper for one or two heads per
group). ``SPLIT`` (flash-decoding) splits each sequence's tokens into partitions of
``partition_size`` tokens, one program each, writing ``m``, ``l`` and ``acc`` per partition to a
float32 scratch that :func:`_reduce_kernel` combines; without it, one program covers the
whole context and normalizes in place. Splitting keeps the GPU busy when
``num_seqs * num_kv_heads`` programs are too few to fill it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ._common import (
    KernelInputError,
    cdiv,
    check_dtype,
    check_launchable,
    is_interpreted,
    next_power_of_2,
    on_input_device,
)
from ._tl import round_to

_LOG2E = 1.4426950408889634

#: Tokens per partition in the split (flash-decoding) mode when the launcher chooses it.
DEFAULT_PARTITION = 512


@triton.jit  # type: ignore[untyped-decorator]
def _qk(q, k, USE_DOT: tl.constexpr, INTERPRETED: tl.constexpr):  # type: ignore[no-untyped-def]
    """Scores q (BLOCK_G, BLOCK_D) x k (BLOCK_N, BLOCK_D)^T in float32 -> (BLOCK_G, BLOCK_N)."""
    if USE_DOT:
        if INTERPRETED:  # the interpreter multiplies bf16 bit patterns; give it float32
            s = tl.dot(q.to(tl.float32), tl.trans(k.to(tl.float32)), input_precision="ieee")
        else:
            s = tl.dot(q, tl.trans(k), input_precision="ieee")
    else:
        s = tl.sum(q.to(tl.float32)[:, None, :] * k.to(tl.float32)[None, :, :], axis=2)
    return s


@triton.jit  # type: ignore[untyped-decorator]
def _pv(p, v, USE_DOT: tl.constexpr, INTERPRETED: tl.constexpr):  # type: ignore[no-untyped-def]
    """Probabilities p (BLOCK_G, BLOCK_N) float32 x v (BLOCK_N, BLOCK_D) -> (BLOCK_G, BLOCK_D)."""
    if USE_DOT:
        p_lo = round_to(p, v.dtype, INTERPRETED)  # the tensor cores take p in the cache dtype
        if INTERPRETED:
            pv = tl.dot(p_lo.to(tl.float32), v.to(tl.float32), input_precision="ieee")
        else:
            pv = tl.dot(p_lo, v, input_precision="ieee")
    else:
        pv = tl.sum(p[:, :, None] * v.to(tl.float32)[None, :, :], axis=1)
    return pv


@triton.jit  # type: ignore[untyped-decorator]
def _attention_kernel(  # type: ignore[no-untyped-def]  # noqa: PLR0917
    out_ptr,  # *T, (S, H, D) contiguous output (written when not SPLIT)
    part_m_ptr,  # *f32, (S, H, P) running maximum (base-2 scores) per partition (SPLIT)
    part_l_ptr,  # *f32, (S, H, P) softmax denominator per partition (SPLIT)
    part_acc_ptr,  # *f32, (S, H, P, D) unnormalized output per partition (SPLIT)
    q_ptr,  # *T, (S, H, D) queries; strides q_stride_s, q_stride_h, 1
    k_cache_ptr,  # *T, (num_blocks, block_size, Hkv, D) keys; strides kv_stride_*, 1
    v_cache_ptr,  # *T, (num_blocks, block_size, Hkv, D) values; same strides as keys
    block_tables_ptr,  # *i32, (S, max_blocks) physical block of each logical block
    context_lens_ptr,  # *i32, (S,) tokens to attend to, current token included
    qk_scale,  # f32, softmax scale times log2(e)
    q_stride_s,
    q_stride_h,
    kv_stride_b,
    kv_stride_t,
    kv_stride_h,
    bt_stride_s,
    num_heads,  # H
    group,  # H // Hkv, query heads per KV head
    head_dim,  # D
    block_size,  # tokens per cache block
    partition_size,  # tokens per partition (a multiple of BLOCK_N); unused when not SPLIT
    BLOCK_G: tl.constexpr,  # query heads per program (>= group, a power of two; >= 16 for dot)
    BLOCK_N: tl.constexpr,  # tokens per tile
    BLOCK_D: tl.constexpr,  # next power of two >= D
    USE_DOT: tl.constexpr,  # tl.dot for q k^T and p v
    SPLIT: tl.constexpr,  # write per-partition partials instead of the normalized output
    INTERPRETED: tl.constexpr,  # running under TRITON_INTERPRET=1 (see _tl.py)
):
    seq = tl.program_id(0).to(tl.int64)
    kv_head = tl.program_id(1).to(tl.int64)
    part = tl.program_id(2)
    ctx = tl.load(context_lens_ptr + seq)
    if SPLIT:
        tok_begin = part * partition_size
        tok_end = tl.minimum(tok_begin + partition_size, ctx)
    else:
        tok_begin = 0
        tok_end = ctx

    g = tl.arange(0, BLOCK_G)
    d = tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    heads = kv_head * group + g  # (BLOCK_G,)
    gmask = g < group
    dmask = d < head_dim
    qd_mask = gmask[:, None] & dmask[None, :]
    q_offs = seq * q_stride_s + heads[:, None] * q_stride_h + d[None, :]  # (BLOCK_G, BLOCK_D)
    q = tl.load(q_ptr + q_offs, mask=qd_mask, other=0.0)

    m_i = tl.full([BLOCK_G], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_G], dtype=tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], dtype=tl.float32)
    table = block_tables_ptr + seq * bt_stride_s
    for start in range(tok_begin, tok_end, BLOCK_N):
        tok = start + n  # (BLOCK_N,)
        nmask = tok < tok_end
        phys = tl.load(table + tok // block_size, mask=nmask, other=0).to(tl.int64)
        row = phys * kv_stride_b + (tok % block_size) * kv_stride_t + kv_head * kv_stride_h
        kv_offs = row[:, None] + d[None, :]  # (BLOCK_N, BLOCK_D)
        kv_mask = nmask[:, None] & dmask[None, :]
        k = tl.load(k_cache_ptr + kv_offs, mask=kv_mask, other=0.0)
        v = tl.load(v_cache_ptr + kv_offs, mask=kv_mask, other=0.0)
        s = _qk(q, k, USE_DOT, INTERPRETED)  # (BLOCK_G, BLOCK_N)
        s = tl.where(nmask[None, :], s * qk_scale, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])  # (BLOCK_G, BLOCK_N)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None] + _pv(p, v, USE_DOT, INTERPRETED)  # (BLOCK_G, BLOCK_D)
        m_i = m_new

    if SPLIT:
        n_parts = tl.num_programs(2)
        ml_offs = (seq * num_heads + heads) * n_parts + part  # (BLOCK_G,)
        tl.store(part_m_ptr + ml_offs, m_i, mask=gmask)
        tl.store(part_l_ptr + ml_offs, l_i, mask=gmask)
        tl.store(part_acc_ptr + ml_offs[:, None] * head_dim + d[None, :], acc, mask=qd_mask)
    else:
        denom = tl.where(l_i > 0.0, l_i, 1.0)  # an empty context yields zeros
        out = acc / denom[:, None]
        out_offs = (seq * num_heads + heads[:, None]) * head_dim + d[None, :]
        out = round_to(out, out_ptr.dtype.element_ty, INTERPRETED)
        tl.store(out_ptr + out_offs, out, mask=qd_mask)


@triton.jit  # type: ignore[untyped-decorator]
def _reduce_kernel(  # type: ignore[no-untyped-def]  # noqa: PLR0917
    out_ptr,  # *T, (S, H, D) contiguous output
    part_m_ptr,  # *f32, (S, H, P) per-partition maxima (base 2), -inf for empty partitions
    part_l_ptr,  # *f32, (S, H, P) per-partition denominators
    part_acc_ptr,  # *f32, (S, H, P, D) per-partition unnormalized outputs
    num_parts,  # P
    head_dim,  # D
    BLOCK_P: tl.constexpr,  # partitions combined per step
    BLOCK_D: tl.constexpr,  # next power of two >= D
    INTERPRETED: tl.constexpr,  # running under TRITON_INTERPRET=1 (see _tl.py)
):
    row = tl.program_id(0).to(tl.int64)  # seq * H + head
    d = tl.arange(0, BLOCK_D)
    dmask = d < head_dim
    m_run = tl.max(tl.full([BLOCK_P], float("-inf"), dtype=tl.float32), axis=0)
    l_run = tl.sum(tl.zeros([BLOCK_P], dtype=tl.float32), axis=0)
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for p0 in range(0, num_parts, BLOCK_P):
        p = p0 + tl.arange(0, BLOCK_P)
        pmask = p < num_parts
        m = tl.load(part_m_ptr + row * num_parts + p, mask=pmask, other=float("-inf"))
        den = tl.load(part_l_ptr + row * num_parts + p, mask=pmask, other=0.0)
        a_offs = (row * num_parts + p[:, None]) * head_dim + d[None, :]
        a = tl.load(part_acc_ptr + a_offs, mask=pmask[:, None] & dmask[None, :], other=0.0)
        m_new = tl.maximum(m_run, tl.max(m, axis=0))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # all partitions empty so far
        alpha = tl.exp2(m_run - m_safe)
        w = tl.exp2(m - m_safe)  # (BLOCK_P,); 0 for empty partitions
        l_run = l_run * alpha + tl.sum(w * den, axis=0)
        acc = acc * alpha + tl.sum(a * w[:, None], axis=0)
        m_run = m_new
    out = acc / tl.where(l_run > 0.0, l_run, 1.0)
    out = round_to(out, out_ptr.dtype.element_ty, INTERPRETED)
    tl.store(out_ptr + row * head_dim + d, out, mask=dmask)


def _check(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
) -> None:
    for name, t in (("q", q), ("k_cache", k_cache), ("v_cache", v_cache)):
        check_dtype(name, t)
    if q.dim() != 3:
        raise KernelInputError(f"q must be (num_seqs, num_heads, head_dim), got {tuple(q.shape)}")
    if k_cache.dim() != 4 or k_cache.shape != v_cache.shape:
        raise KernelInputError(
            "k_cache and v_cache must both be (num_blocks, block_size, num_kv_heads, head_dim), "
            f"got {tuple(k_cache.shape)} and {tuple(v_cache.shape)}"
        )
    num_seqs, num_heads, head_dim = q.shape
    num_kv_heads = k_cache.shape[2]
    if k_cache.shape[3] != head_dim or head_dim == 0:
        raise KernelInputError(f"cache head_dim {k_cache.shape[3]} != query head_dim {head_dim}")
    if num_kv_heads == 0 or num_heads % num_kv_heads:
        raise KernelInputError(
            f"num_heads {num_heads} is not a multiple of num_kv_heads {num_kv_heads}"
        )
    if not q.dtype == k_cache.dtype == v_cache.dtype:
        raise KernelInputError(
            f"q, k_cache and v_cache must share a dtype, got {q.dtype}, {k_cache.dtype}, {v_cache.dtype}"
        )
    if k_cache.stride() != v_cache.stride() or k_cache.stride(3) != 1:
        raise KernelInputError(
            "k_cache and v_cache must have equal strides and a unit-stride head_dim"
        )
    if q.stride(2) != 1:
        raise KernelInputError("q must have a unit stride in head_dim")
    if (
        block_tables.dtype != torch.int32
        or block_tables.dim() != 2
        or block_tables.shape[0] != num_seqs
    ):
        raise KernelInputError(
            f"block_tables must be int32 (num_seqs={num_seqs}, max_blocks), got "
            f"{block_tables.dtype} {tuple(block_tables.shape)}"
        )
    if block_tables.shape[1] > 1 and block_tables.stride(1) != 1:
        raise KernelInputError("block_tables must have a unit stride along max_blocks")
    if context_lens.dtype != torch.int32 or context_lens.shape != (num_seqs,):
        raise KernelInputError(
            f"context_lens must be int32 ({num_seqs},), got {context_lens.dtype} {tuple(context_lens.shape)}"
        )


def _check_bounds(
    k_cache: torch.Tensor, block_tables: torch.Tensor, context_lens: torch.Tensor
) -> None:
    """Host-side range checks (one device synchronization): contexts fit their tables, blocks exist."""
    num_blocks, block_size = k_cache.shape[:2]
    capacity = block_tables.shape[1] * block_size
    lens = context_lens.tolist()
    for s, ctx in enumerate(lens):
        if not 0 <= ctx <= capacity:
            raise KernelInputError(f"context_lens[{s}] = {ctx} outside [0, {capacity}]")
        used = block_tables[s, : -(-ctx // block_size)]
        if used.numel() and (int(used.min()) < 0 or int(used.max()) >= num_blocks):
            raise KernelInputError(f"block_tables[{s}] names a block outside [0, {num_blocks})")


@dataclass(frozen=True, slots=True)
class TilePlan:
    """Block shapes and mode of one attention launch (see the module docstring)."""

    use_dot: bool
    block_g: int
    block_n: int
    block_d: int
    num_warps: int


def tile_plan(
    group: int, head_dim: int, use_dot: bool | None = None, *, element_size: int = 2
) -> TilePlan:
    """Tiles for ``group`` query heads per KV head: ``tl.dot`` from 4 heads per group up.

    The sizes keep every variant free of register spills on sm_80 and sm_90 according to
    ``python -m infernet_kernels.aot`` (the broadcast tile stays at 4096 float32 products;
    float32 caches take half as many tokens per tensor-core tile).
    """
    dot = (group >= 4 and head_dim >= 16) if use_dot is None else use_dot
    if dot:
        block_d = max(16, next_power_of_2(head_dim))
        block_n = 32 if element_size <= 2 else 16
        return TilePlan(True, max(16, next_power_of_2(group)), block_n, block_d, 4)
    block_g = next_power_of_2(group)
    block_d = next_power_of_2(head_dim)
    return TilePlan(False, block_g, max(16, min(64, 4096 // (block_g * block_d))), block_d, 4)


def _partitioning(
    q: torch.Tensor, num_kv_heads: int, capacity: int, partition_size: int | None, block_n: int
) -> tuple[int, int, int]:
    """(partitions, partition_size, BLOCK_N): a requested size, or a split only on CUDA when
    sequences x KV heads cannot fill twice the streaming multiprocessors."""
    if partition_size is None:
        size = DEFAULT_PARTITION
        if q.device.type != "cuda":
            return 1, size, block_n
        sms = int(torch.cuda.get_device_properties(q.device).multi_processor_count)
        if q.shape[0] * num_kv_heads >= 2 * sms:
            return 1, size, block_n
        return max(1, cdiv(capacity, size)), size, block_n
    if partition_size <= 0 or partition_size % 16:
        raise KernelInputError(
            f"partition_size must be a positive multiple of 16, got {partition_size}"
        )
    while partition_size % block_n:  # a tile never straddles two partitions
        block_n //= 2
    return max(1, cdiv(capacity, partition_size)), partition_size, block_n


@on_input_device
def paged_attention_decode(  # noqa: PLR0917 (positional signature fixed by the contract)
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float,
    *,
    partition_size: int | None = None,
    use_dot: bool | None = None,
    check_bounds: bool = False,
) -> torch.Tensor:
    """One decode step of attention over a paged KV cache -> (S, H, D) in ``q.dtype``.

    Spec/kernels.md §paged_attention_decode; same contract as
    :func:`infernet_kernels.reference.paged_attention_decode_reference`. ``partition_size``
    (tokens, a multiple of the tile) forces the split (flash-decoding) mode; by default it is
    chosen from the device. ``use_dot`` forces either product mode. ``check_bounds`` validates
    ``context_lens`` and ``block_tables`` on the host first (a device synchronization); without
    it out-of-range entries are the caller's fault and read undefined memory on a GPU.
    """
    _check(q, k_cache, v_cache, block_tables, context_lens)
    if not (math.isfinite(scale) and scale > 0.0):
        raise KernelInputError(f"scale must be a positive finite float, got {scale!r}")
    context_lens = context_lens.contiguous()
    check_launchable(_attention_kernel, q, k_cache, v_cache, block_tables, context_lens)
    if check_bounds:
        _check_bounds(k_cache, block_tables, context_lens)
    num_seqs, num_heads, head_dim = q.shape
    num_kv_heads = k_cache.shape[2]
    block_size = k_cache.shape[1]
    group = num_heads // num_kv_heads
    out = torch.empty((num_seqs, num_heads, head_dim), dtype=q.dtype, device=q.device)
    if num_seqs == 0:
        return out
    plan = tile_plan(group, head_dim, use_dot, element_size=q.element_size())
    capacity = block_tables.shape[1] * block_size
    n_parts, partition_size, block_n = _partitioning(
        q, num_kv_heads, capacity, partition_size, plan.block_n
    )
    split = n_parts > 1
    part_m = part_l = part_acc = out  # unused pointer arguments when SPLIT is off
    if split:
        part_m = torch.empty((num_seqs, num_heads, n_parts), dtype=torch.float32, device=q.device)
        part_l = torch.empty_like(part_m)
        part_acc = torch.empty(
            (num_seqs, num_heads, n_parts, head_dim), dtype=torch.float32, device=q.device
        )
    _attention_kernel[(num_seqs, num_kv_heads, n_parts)](
        out,
        part_m,
        part_l,
        part_acc,
        q,
        k_cache,
        v_cache,
        block_tables,
        context_lens,
        float(scale) * _LOG2E,
        q.stride(0),
        q.stride(1),
        k_cache.stride(0),
        k_cache.stride(1),
        k_cache.stride(2),
        block_tables.stride(0),
        num_heads,
        group,
        head_dim,
        block_size,
        partition_size,
        BLOCK_G=plan.block_g,
        BLOCK_N=block_n,
        BLOCK_D=plan.block_d,
        USE_DOT=plan.use_dot,
        SPLIT=split,
        INTERPRETED=is_interpreted(_attention_kernel),
        num_warps=plan.num_warps,
        enable_fp_fusion=True,
    )
    if split:
        _reduce_kernel[(num_seqs * num_heads,)](
            out,
            part_m,
            part_l,
            part_acc,
            n_parts,
            head_dim,
            BLOCK_P=min(next_power_of_2(n_parts), 32),
            BLOCK_D=next_power_of_2(head_dim),
            INTERPRETED=is_interpreted(_reduce_kernel),
            num_warps=4,
            enable_fp_fusion=True,
        )
    return out
