"""The four hot operations, dispatched to Triton on CUDA and to PyTorch elsewhere (spec §3.3).

On a CUDA tensor, when :mod:`infernet_kernels` is importable and ``available()``, the Triton
kernels run (the kernel layer owns them, CONTRACTS.md "Runtime API"). Everywhere else the
functions below run: plain PyTorch written to match Hugging Face's arithmetic order, so fp32
greedy decoding is token-identical with ``transformers``. tests/runtime/test_ops.py checks them
against the kernel layer's ``*_reference`` twins when that package is present.

Shapes follow the kernel contract: ``q (T, H, D)``, ``k (T, Hkv, D)``, ``cos/sin (T, D/2)``,
paged caches ``(num_blocks, block_size, Hkv, D)``.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType

import torch
import torch.nn.functional as F


@functools.cache
def triton_kernels() -> ModuleType | None:
    """The :mod:`infernet_kernels` module when it can run here, else None (looked up once)."""
    try:
        mod = importlib.import_module("infernet_kernels")
    except ImportError:
        return None
    return mod if getattr(mod, "available", lambda: False)() else None


def _cuda_kernels(x: torch.Tensor) -> ModuleType | None:
    return triton_kernels() if x.is_cuda else None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm over the last dim, accumulated in fp32 (HF LlamaRMSNorm order)."""
    k = _cuda_kernels(x)
    if k is not None:
        out: torch.Tensor = k.rms_norm(x, weight, eps)
        return out
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def rotary_embedding(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate-half RoPE; q (T, H, D), k (T, Hkv, D), cos/sin (T, D/2) in q's dtype."""
    kern = _cuda_kernels(q)
    if kern is not None:
        qo, ko = kern.rotary_embedding(q, k, cos, sin)
        return qo, ko
    cos = cos.unsqueeze(1)  # (T, 1, D/2)
    sin = sin.unsqueeze(1)
    return _rotate(q, cos, sin), _rotate(k, cos, sin)


def rope_rotate_half(
    x: torch.Tensor, cos_full: torch.Tensor, sin_signed: torch.Tensor
) -> torch.Tensor:
    """CPU fast path of rotate-half RoPE on x (N, heads, D) with (N, 1, D) tables.

    ``cos_full = cos|cos`` and ``sin_signed = -sin|sin``, so ``x*cos_full + roll(x)*sin_signed``
    equals HF's ``x*cos + rotate_half(x)*sin`` bit for bit (negation is exact).
    """
    half = x.shape[-1] // 2
    return x * cos_full + torch.roll(x, half, dims=-1) * sin_signed


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)  # (T, H, D/2) each
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """``silu(gate) * up`` for x (..., 2I) holding gate then up."""
    k = _cuda_kernels(x)
    if k is not None:
        out: torch.Tensor = k.silu_and_mul(x)
        return out
    gate, up = x.chunk(2, dim=-1)
    return F.silu(gate) * up


def paged_attention_decode(  # noqa: PLR0917 (signature fixed by CONTRACTS.md)
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float,
    *,
    max_context: int | None = None,
) -> torch.Tensor:
    """One query token per sequence against its paged cache; q (S, H, D) -> (S, H, D).

    ``max_context`` (the largest ``context_lens`` entry, known to the caller without a device
    sync) lets the CPU path gather only the blocks in use.
    """
    kern = _cuda_kernels(q)
    if kern is not None:
        out: torch.Tensor = kern.paged_attention_decode(
            q, k_cache, v_cache, block_tables, context_lens, scale
        )
        return out
    num_seqs, num_heads, head_dim = q.shape
    block_size, num_kv = k_cache.shape[1], k_cache.shape[2]
    length = max_context if max_context is not None else int(context_lens.max())
    nblocks = -(-length // block_size)
    table = block_tables[:, :nblocks].long()  # (S, nb)
    k = k_cache[table].view(num_seqs, nblocks * block_size, num_kv, head_dim)[:, :length]
    v = v_cache[table].view(num_seqs, nblocks * block_size, num_kv, head_dim)[:, :length]
    mask = None
    if num_seqs > 1:
        pos = torch.arange(length, device=q.device)
        mask = (pos[None, :] < context_lens[:, None]).view(num_seqs, 1, 1, length)
    out = F.scaled_dot_product_attention(
        q.unsqueeze(2),  # (S, H, 1, D)
        k.transpose(1, 2),  # (S, Hkv, L, D)
        v.transpose(1, 2),
        attn_mask=mask,
        scale=scale,
        enable_gqa=num_heads != num_kv,
    )
    return out.squeeze(2)  # (S, H, D)
