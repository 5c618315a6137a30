"""A Llama-family decoder in the style of gpt-fast (spec/runtime.md §3).

Theory of operation: :class:`Transformer` is the whole model or one contiguous slice of its
layers (a pipeline stage, ``layer_range=(a, b)``). Module attribute paths equal the Hugging Face
checkpoint keys (``model.layers.3.self_attn.q_proj.weight``), so ``state_dict()`` names are what
the loader looks up. Parameters are created with ``torch.empty`` in the target dtype and device
and filled by the loader; nothing is initialised twice.

q/k/v and gate/up projections share one fused storage each (``qkv_weight``, ``gate_up_weight``)
and the checkpoint-named parameters are *views* into it: the loader writes ``q_proj.weight``,
the forward runs one matmul. The model is given its own (possibly narrower) head and MLP sizes
through its :class:`ModelConfig`; it knows nothing about distribution — tensor parallelism is a
separate pass (:mod:`infernet_ref.runtime.tp`). The KV cache is not owned by the model either:
each forward receives the paged cache of every local layer and a :class:`Batch` describing where
this step's tokens go (spec §4).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from infernet_ref.runtime import ops
from infernet_ref.runtime.config import ModelConfig, rope_inv_freq

KVCache = tuple[torch.Tensor, torch.Tensor]  # (num_blocks, block_size, Hkv, D) each


@dataclass(slots=True)
class Batch:
    """Where the ``T`` new tokens of ``S`` sequences sit (spec §4.3); every row has T tokens."""

    positions: torch.Tensor  # (S, T) int64, absolute positions
    slots: torch.Tensor  # (S*T,) int64, flat cache slot (block * block_size + offset)
    block_tables: torch.Tensor  # (S, max_blocks) int32
    context_lens: torch.Tensor  # (S,) int32, cached tokens including these T
    max_context: int  # max(context_lens), as a Python int (no device sync)
    from_start: bool  # every sequence starts at position 0 (a fresh prefill)


def _empty(*shape: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device=device)


class Linear(nn.Module):
    """``y = x W^T + b`` with uninitialised parameters (the loader fills them)."""

    def __init__(
        self, in_f: int, out_f: int, bias: bool, dtype: torch.dtype, device: torch.device
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(_empty(out_f, in_f, dtype=dtype, device=device), False)
        self.bias = nn.Parameter(_empty(out_f, dtype=dtype, device=device), False) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


class ProjView(nn.Module):
    """A checkpoint-named projection whose parameters are rows of a fused storage."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight, False)
        self.bias = nn.Parameter(bias, False) if bias is not None else None


def _fused(
    sizes: Sequence[int], in_f: int, bias: bool, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor | None, list[ProjView]]:
    weight = _empty(sum(sizes), in_f, dtype=dtype, device=device)
    fused_bias = _empty(sum(sizes), dtype=dtype, device=device) if bias else None
    views, start = [], 0
    for size in sizes:
        b = fused_bias[start : start + size] if fused_bias is not None else None
        views.append(ProjView(weight[start : start + size], b))
        start += size
    return weight, fused_bias, views


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(_empty(dim, dtype=dtype, device=device), False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.rms_norm(x, self.weight, self.eps)


class Embedding(nn.Module):
    def __init__(self, num: int, dim: int, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__()
        self.weight = nn.Parameter(_empty(num, dim, dtype=dtype, device=device), False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight)


class Attention(nn.Module):
    qkv_weight: torch.Tensor  # (q + 2 kv, C): q_proj, k_proj, v_proj rows
    qkv_bias: torch.Tensor | None

    def __init__(self, cfg: ModelConfig, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        )
        self.scale = cfg.head_dim**-0.5
        q, kv = cfg.q_size, cfg.kv_size
        self.split = [q, kv, kv]
        weight, bias, (self.q_proj, self.k_proj, self.v_proj) = _fused(
            self.split, cfg.hidden_size, cfg.qkv_bias, dtype, device
        )
        self.register_buffer("qkv_weight", weight, persistent=False)
        self.register_buffer("qkv_bias", bias, persistent=False)
        self.o_proj: nn.Module = Linear(q, cfg.hidden_size, cfg.o_bias, dtype, device)

    def forward(
        self, x: torch.Tensor, batch: Batch, cache: KVCache, cos: torch.Tensor, sin: torch.Tensor
    ) -> torch.Tensor:
        s, t, _ = x.shape  # (S, T, C)
        h, hkv, d = self.n_heads, self.n_kv_heads, self.head_dim
        qkv = F.linear(x, self.qkv_weight, self.qkv_bias)  # (S, T, (H + 2 Hkv) D)
        q, k, v = torch.split(qkv, self.split, dim=-1)
        q, k = ops.rotary_embedding(
            q.reshape(s * t, h, d), k.reshape(s * t, hkv, d), cos, sin
        )  # (S*T, H, D), (S*T, Hkv, D)
        v = v.reshape(s * t, hkv, d)
        k_cache, v_cache = cache
        k_cache.view(-1, hkv, d).index_copy_(0, batch.slots, k)
        v_cache.view(-1, hkv, d).index_copy_(0, batch.slots, v)
        if t == 1:
            out = ops.paged_attention_decode(
                q,
                k_cache,
                v_cache,
                batch.block_tables,
                batch.context_lens,
                self.scale,
                max_context=batch.max_context,
            )  # (S, H, D)
        elif batch.from_start:
            out = F.scaled_dot_product_attention(
                q.view(s, t, h, d).transpose(1, 2),  # (S, H, T, D)
                k.view(s, t, hkv, d).transpose(1, 2),  # (S, Hkv, T, D)
                v.view(s, t, hkv, d).transpose(1, 2),
                is_causal=True,
                scale=self.scale,
                enable_gqa=h != hkv,
            ).transpose(1, 2)  # (S, T, H, D)
        else:
            out = self._attend_cached(q.view(s, t, h, d), batch, k_cache, v_cache)
        return self.o_proj(out.reshape(s, t, h * d))  # type: ignore[no-any-return]

    def _attend_cached(
        self, q: torch.Tensor, batch: Batch, k_cache: torch.Tensor, v_cache: torch.Tensor
    ) -> torch.Tensor:
        """T > 1 new tokens after earlier context: gather the blocks, mask by position."""
        s, _, h, d = q.shape
        block_size = k_cache.shape[1]
        length = batch.max_context
        nblocks = -(-length // block_size)
        table = batch.block_tables[:, :nblocks].long()  # (S, nb)
        k = k_cache[table].view(s, nblocks * block_size, self.n_kv_heads, d)[:, :length]
        v = v_cache[table].view(s, nblocks * block_size, self.n_kv_heads, d)[:, :length]
        keys = torch.arange(length, device=q.device)
        mask = keys.view(1, 1, length) <= batch.positions.unsqueeze(-1)  # (S, T, L)
        out = F.scaled_dot_product_attention(
            q.transpose(1, 2),  # (S, H, T, D)
            k.transpose(1, 2),  # (S, Hkv, L, D)
            v.transpose(1, 2),
            attn_mask=mask.unsqueeze(1),  # (S, 1, T, L)
            scale=self.scale,
            enable_gqa=h != self.n_kv_heads,
        )
        return out.transpose(1, 2)  # (S, T, H, D)


class MLP(nn.Module):
    gate_up_weight: torch.Tensor  # (2 I, C): gate_proj then up_proj rows
    gate_up_bias: torch.Tensor | None

    def __init__(self, cfg: ModelConfig, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__()
        inter = cfg.intermediate_size
        weight, bias, (self.gate_proj, self.up_proj) = _fused(
            (inter, inter), cfg.hidden_size, cfg.mlp_bias, dtype, device
        )
        self.register_buffer("gate_up_weight", weight, persistent=False)
        self.register_buffer("gate_up_bias", bias, persistent=False)
        self.down_proj: nn.Module = Linear(inter, cfg.hidden_size, cfg.mlp_bias, dtype, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate_up = F.linear(x, self.gate_up_weight, self.gate_up_bias)  # (S, T, 2I)
        return self.down_proj(ops.silu_and_mul(gate_up))  # type: ignore[no-any-return]


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype, device)
        self.self_attn = Attention(cfg, dtype, device)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype, device)
        self.mlp = MLP(cfg, dtype, device)

    def forward(
        self, x: torch.Tensor, batch: Batch, cache: KVCache, cos: torch.Tensor, sin: torch.Tensor
    ) -> torch.Tensor:
        h = x + self.self_attn(self.input_layernorm(x), batch, cache, cos, sin)
        return h + self.mlp(self.post_attention_layernorm(h))  # type: ignore[no-any-return]


class Body(nn.Module):
    """The ``model.`` prefix of the checkpoint: embeddings, layers [a, b), final norm."""

    def __init__(
        self, cfg: ModelConfig, a: int, b: int, dtype: torch.dtype, device: torch.device
    ) -> None:
        super().__init__()
        self.embed_tokens = (
            Embedding(cfg.vocab_size, cfg.hidden_size, dtype, device) if a == 0 else None
        )
        self.layers = nn.ModuleDict({str(i): DecoderLayer(cfg, dtype, device) for i in range(a, b)})
        last = b == cfg.num_hidden_layers
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, dtype, device) if last else None


class Transformer(nn.Module):
    """Layers ``[a, b)`` of a Llama-family model; the whole model when ``(0, n)``."""

    inv_freq: torch.Tensor  # (D/2,) fp32

    def __init__(
        self,
        cfg: ModelConfig,
        layer_range: tuple[int, int] | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        dev = torch.device(device)
        a, b = layer_range or (0, cfg.num_hidden_layers)
        self.config, self.layer_range, self.dtype = cfg, (a, b), dtype
        self.is_first, self.is_last = a == 0, b == cfg.num_hidden_layers
        self.model = Body(cfg, a, b, dtype, dev)
        self.lm_head: Linear | None = None
        if self.is_last:
            self.lm_head = Linear(cfg.hidden_size, cfg.vocab_size, False, dtype, dev)
            if cfg.tie_word_embeddings and self.model.embed_tokens is not None:
                self.lm_head.weight = self.model.embed_tokens.weight
        self.register_buffer("inv_freq", rope_inv_freq(cfg).to(dev), persistent=False)
        self._cos = torch.empty(0, cfg.head_dim // 2, device=dev)
        self._sin = torch.empty(0, cfg.head_dim // 2, device=dev)

    @property
    def num_local_layers(self) -> int:
        return self.layer_range[1] - self.layer_range[0]

    def _rope(self, positions: torch.Tensor, need: int) -> tuple[torch.Tensor, torch.Tensor]:
        if need > self._cos.shape[0]:
            n = max(need, 2 * self._cos.shape[0], 256)
            t = torch.arange(n, device=self.inv_freq.device, dtype=torch.float32)
            freqs = t[:, None] * self.inv_freq[None, :]  # (n, D/2), fp32 as in HF
            self._cos, self._sin = freqs.cos(), freqs.sin()
        flat = positions.reshape(-1)
        return self._cos[flat].to(self.dtype), self._sin[flat].to(self.dtype)  # (S*T, D/2)

    def decoder_layers(self) -> list[DecoderLayer]:
        return [layer for layer in self.model.layers.values() if isinstance(layer, DecoderLayer)]

    def forward(
        self,
        x: torch.Tensor,
        batch: Batch,
        caches: Sequence[KVCache],
        *,
        all_logits: bool = False,
    ) -> torch.Tensor:
        """ids (S, T) on the first stage, hidden (S, T, C) otherwise.

        Returns hidden (S, T, C) before the last stage; on the last stage fp32 logits of the
        last token (S, V), or of every token (S, T, V) with ``all_logits``.
        """
        if self.model.embed_tokens is not None:
            x = self.model.embed_tokens(x)  # (S, T, C)
        cos, sin = self._rope(batch.positions, batch.max_context)
        for i, layer in enumerate(self.model.layers.values()):
            x = layer(x, batch, caches[i], cos, sin)
        if self.model.norm is None or self.lm_head is None:
            return x
        if not all_logits:
            x = x[:, -1:]  # (S, 1, C)
        logits: torch.Tensor = self.lm_head(self.model.norm(x)).float()  # (S, T', V)
        return logits if all_logits else logits[:, 0]
