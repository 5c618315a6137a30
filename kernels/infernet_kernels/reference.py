"""Pure-PyTorch references for every kernel: the contracts in executable form (spec/kernels.md).

Each function is the mathematically straightforward version of its op, written in the order of
operations Hugging Face ``transformers`` uses for the Llama family, so that the runtime, which calls
these on CPU, produces the same numbers as the oracle model. The Triton kernels are tested against
these with the tolerance table in :mod:`infernet_kernels.tolerances`; these in turn are tested
against independent implementations (``transformers`` modules, dense SDPA).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm over the last dimension (spec/kernels.md §rms_norm; Llama ``LlamaRMSNorm``).

    ``x * rsqrt(mean(x**2) + eps)`` computed in float32, rounded to ``x.dtype``, then scaled by
    ``weight``; the result has dtype ``promote_types(x.dtype, weight.dtype)``.
    """
    hidden = x.to(torch.float32)
    variance = hidden.pow(2).mean(dim=-1, keepdim=True)
    hidden = hidden * torch.rsqrt(variance + eps)
    return weight * hidden.to(x.dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rotary_embedding_reference(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary position embedding, "rotate_half" (GPT-NeoX / HF Llama) layout (spec/kernels.md §rotary).

    ``q`` (T, H, D), ``k`` (T, Hkv, D), ``cos``/``sin`` (T, D//2) for each token's position. The
    half-width tables are duplicated to width D, cast to the query dtype, and applied as
    ``x * cos + rotate_half(x) * sin`` in the input dtype. Returns new tensors.
    """
    cos_full = torch.cat((cos, cos), dim=-1).unsqueeze(1)  # (T, 1, D)
    sin_full = torch.cat((sin, sin), dim=-1).unsqueeze(1)  # (T, 1, D)
    q_out = q * cos_full.to(q.dtype) + _rotate_half(q) * sin_full.to(q.dtype)
    k_out = k * cos_full.to(k.dtype) + _rotate_half(k) * sin_full.to(k.dtype)
    return q_out, k_out


def silu_and_mul_reference(x: torch.Tensor) -> torch.Tensor:
    """``silu(gate) * up`` where ``x`` (..., 2*I) holds gate in its first half, up in its second.

    Spec/kernels.md §silu_and_mul; the Llama MLP's ``act_fn(gate_proj(x)) * up_proj(x)``.
    """
    inter = x.shape[-1] // 2
    return F.silu(x[..., :inter]) * x[..., inter:]


def gather_kv(cache: torch.Tensor, block_table: torch.Tensor, context_len: int) -> torch.Tensor:
    """The first ``context_len`` tokens of one sequence from a paged cache, as (ctx, Hkv, D)."""
    block_size = cache.shape[1]
    n_blocks = -(-context_len // block_size)
    blocks = cache[block_table[:n_blocks].long()]  # (n_blocks, block_size, Hkv, D)
    return blocks.reshape(n_blocks * block_size, *cache.shape[2:])[:context_len]


def paged_attention_decode_reference(  # noqa: PLR0917 (positional signature fixed by the contract)
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """One decode step of attention over a paged KV cache (spec/kernels.md §paged_attention_decode).

    ``q`` (S, H, D); caches (num_blocks, block_size, Hkv, D); ``block_tables`` int32 (S, max_blocks);
    ``context_lens`` int32 (S,). Query head ``h`` attends to KV head ``h // (H // Hkv)`` over the
    sequence's first ``context_lens[s]`` cached tokens: ``softmax(scale * q k^T) v`` in float32,
    cast to ``q.dtype``. A sequence with ``context_lens[s] == 0`` (a padding slot) yields zeros.
    """
    num_seqs, num_heads, head_dim = q.shape
    group = num_heads // k_cache.shape[2]
    out = torch.zeros(num_seqs, num_heads, head_dim, dtype=q.dtype, device=q.device)
    for s in range(num_seqs):
        ctx = int(context_lens[s])
        if ctx == 0:
            continue
        keys = gather_kv(k_cache, block_tables[s], ctx).to(torch.float32)  # (ctx, Hkv, D)
        values = gather_kv(v_cache, block_tables[s], ctx).to(torch.float32)  # (ctx, Hkv, D)
        keys = keys.repeat_interleave(group, dim=1).transpose(0, 1)  # (H, ctx, D)
        values = values.repeat_interleave(group, dim=1).transpose(0, 1)  # (H, ctx, D)
        query = q[s].to(torch.float32).unsqueeze(1)  # (H, 1, D)
        scores = torch.matmul(query, keys.transpose(1, 2)) * scale  # (H, 1, ctx)
        probs = torch.softmax(scores, dim=-1)
        out[s] = torch.matmul(probs, values).squeeze(1).to(q.dtype)  # (H, D)
    return out
