"""Helpers shared by the kernel tests: tolerance checks, paged-cache construction, test device.

By default the kernels run on CPU tensors through Triton's interpreter. With
``INFERNET_TEST_DEVICE=cuda`` (and a CUDA device) conftest.py leaves ``TRITON_INTERPRET`` unset,
so the kernels are *compiled*, and wraps the four public kernels with :func:`run_on_device`: the
tests still build their inputs on CPU (seeded CPU generators), every tensor argument is copied to
the GPU with its strides and storage offset intact, the compiled kernel runs there, and its
output comes back to CPU to be compared with the CPU reference. The same tests thus check the
GPU code (including strided and padded inputs) against an oracle that never touched the GPU.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from infernet_kernels import tolerance

#: "cpu" (interpreted kernels, the CI default) or "cuda" (compiled kernels on the GPU).
DEVICE = "cuda" if os.environ.get("INFERNET_TEST_DEVICE", "").strip().lower() == "cuda" else "cpu"

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
DTYPE_IDS = ("fp32", "fp16", "bf16")


def to_device(t: torch.Tensor, device: str | torch.device) -> torch.Tensor:
    """Copy ``t`` to ``device`` keeping its shape, strides and storage offset (its whole storage
    travels, so padding between strided rows keeps its values, NaN included)."""
    storage = t.untyped_storage()
    flat = torch.empty(0, dtype=t.dtype, device=t.device).set_(storage)  # the whole storage
    return flat.to(device).as_strided(t.shape, t.stride(), t.storage_offset())


def _move(value: Any, device: str | torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return to_device(value, device)
    if isinstance(value, tuple):
        return tuple(_move(v, device) for v in value)
    return value


def run_on_device(fn: Callable[..., Any], device: str = "cuda") -> Callable[..., Any]:
    """``fn`` with its tensor arguments on ``device`` and its tensor results back on CPU."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        out = fn(*_move(args, device), **{k: _move(v, device) for k, v in kwargs.items()})
        outs = out if isinstance(out, tuple) else (out,)
        for o in outs:  # the kernel really ran on the GPU
            assert o.device.type == torch.device(device).type, f"output on {o.device}"
        return _move(out, "cpu")

    return wrapper


def assert_matches(op: str, actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Kernel output equals the reference within the tolerance table row for ``op``."""
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    atol, rtol = tolerance(op, expected.dtype)
    torch.testing.assert_close(actual.float(), expected.float(), atol=atol, rtol=rtol)


@dataclass
class PagedCase:
    """A paged KV cache built by scattering dense per-sequence K/V into shuffled blocks."""

    q: torch.Tensor  # (S, H, D)
    k_cache: torch.Tensor  # (num_blocks, block_size, Hkv, D)
    v_cache: torch.Tensor
    block_tables: torch.Tensor  # int32 (S, max_blocks)
    context_lens: torch.Tensor  # int32 (S,)
    dense_k: list[torch.Tensor]  # per sequence (ctx, Hkv, D)
    dense_v: list[torch.Tensor]
    scale: float


def make_paged_case(
    *,
    num_heads: int,
    num_kv_heads: int,
    head_dim: int,
    block_size: int,
    context_lens: list[int],
    dtype: torch.dtype,
    seed: int = 0,
    spare_blocks: int = 3,
    extra_table_columns: int = 1,
) -> PagedCase:
    """Dense K/V per sequence scattered into randomly permuted physical blocks.

    Unused slots and blocks hold NaN and unused block-table entries name blocks that do not
    exist, so a kernel that reads past a context or dereferences a padding entry fails.
    """
    gen = torch.Generator().manual_seed(seed)
    blocks_per_seq = [-(-c // block_size) for c in context_lens]
    num_blocks = sum(blocks_per_seq) + spare_blocks
    max_blocks = max(blocks_per_seq, default=0) + extra_table_columns
    k_cache = torch.full(
        (num_blocks, block_size, num_kv_heads, head_dim), float("nan"), dtype=dtype
    )
    v_cache = torch.full_like(k_cache, float("nan"))
    tables = torch.full((len(context_lens), max_blocks), num_blocks + 1000, dtype=torch.int32)
    physical = torch.randperm(num_blocks, generator=gen).tolist()
    dense_k, dense_v = [], []
    for s, ctx in enumerate(context_lens):
        k = torch.randn(ctx, num_kv_heads, head_dim, generator=gen).to(dtype)
        v = torch.randn(ctx, num_kv_heads, head_dim, generator=gen).to(dtype)
        dense_k.append(k)
        dense_v.append(v)
        for j in range(blocks_per_seq[s]):
            blk = physical.pop()
            tables[s, j] = blk
            rows = slice(j * block_size, min((j + 1) * block_size, ctx))
            n = rows.stop - rows.start
            k_cache[blk, :n] = k[rows]
            v_cache[blk, :n] = v[rows]
    q = torch.randn(len(context_lens), num_heads, head_dim, generator=gen).to(dtype)
    return PagedCase(
        q=q,
        k_cache=k_cache,
        v_cache=v_cache,
        block_tables=tables,
        context_lens=torch.tensor(context_lens, dtype=torch.int32),
        dense_k=dense_k,
        dense_v=dense_v,
        scale=head_dim**-0.5,
    )
