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


@dataclass(slots=True)
class Step:
    """Per-forward tensors shared by every layer, built once by :meth:`Transformer.forward`."""

    batch: Batch
    seqs: int  # S
    tokens: int  # T (new tokens per sequence)
    triton: bool  # CUDA tensors and infernet_kernels available
    cos: torch.Tensor  # (N, D/2) for the rotary kernel, or (N, 1, D) cos|cos on the CPU path
    sin: torch.Tensor  # (N, D/2), or (N, 1, D) -sin|sin on the CPU path
    gather: torch.Tensor | None  # (S, L) int64: cache slot of every context token
    mask: torch.Tensor | None  # (S, 1, T, L) bool, None when every key is visible


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

    def forward(self, x: torch.Tensor, step: Step, cache: KVCache) -> torch.Tensor:
        n = x.shape[0]  # x (N, C), N = S*T
        h, hkv, d = self.n_heads, self.n_kv_heads, self.head_dim
        qkv = F.linear(x, self.qkv_weight, self.qkv_bias)  # (N, (H + 2 Hkv) D)
        if step.triton:
            q, k, v = torch.split(qkv, self.split, dim=-1)
            q, k = ops.rotary_embedding(q.view(n, h, d), k.view(n, hkv, d), step.cos, step.sin)
        else:  # rotate q and k heads together: one pass instead of two
            qk = ops.rope_rotate_half(
                qkv[:, : (h + hkv) * d].view(n, h + hkv, d), step.cos, step.sin
            )
            q, k = qk[:, :h], qk[:, h:]  # (N, H, D), (N, Hkv, D)
            v = qkv[:, (h + hkv) * d :]
        v = v.reshape(n, hkv, d)
        k_cache, v_cache = cache
        k_cache.view(-1, hkv, d).index_copy_(0, step.batch.slots, k)
        v_cache.view(-1, hkv, d).index_copy_(0, step.batch.slots, v)
        s, t = step.seqs, step.tokens
        if step.triton and t == 1:
            b = step.batch
            out = ops.paged_attention_decode(
                q, k_cache, v_cache, b.block_tables, b.context_lens, self.scale
            )  # (S, H, D)
        elif step.gather is None:  # fresh prefill: causal attention over the new tokens only
            out = F.scaled_dot_product_attention(
                q.reshape(s, t, h, d).transpose(1, 2),  # (S, H, T, D)
                k.reshape(s, t, hkv, d).transpose(1, 2),  # (S, Hkv, T, D)
                v.view(s, t, hkv, d).transpose(1, 2),
                is_causal=True,
                scale=self.scale,
                enable_gqa=h != hkv,
            ).transpose(1, 2)  # (S, T, H, D)
        else:  # decode or continued prefill: attend to the gathered context
            keys = k_cache.view(-1, hkv, d)[step.gather]  # (S, L, Hkv, D)
            values = v_cache.view(-1, hkv, d)[step.gather]
            out = F.scaled_dot_product_attention(
                q.reshape(s, t, h, d).transpose(1, 2),  # (S, H, T, D)
                keys.transpose(1, 2),  # (S, Hkv, L, D)
                values.transpose(1, 2),
                attn_mask=step.mask,
                scale=self.scale,
                enable_gqa=h != hkv,
            ).transpose(1, 2)  # (S, T, H, D)
        return self.o_proj(out.reshape(n, h * d))  # type: ignore[no-any-return]


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

    def forward(self, x: torch.Tensor, step: Step, cache: KVCache) -> torch.Tensor:
        h: torch.Tensor = self.self_attn(self.input_layernorm(x), step, cache)
        h += x  # the projection's output is fresh: add the residual in place
        out: torch.Tensor = self.mlp(self.post_attention_layernorm(h))
        out += h
        return out


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
        self._cos = self._sin = torch.empty(0, cfg.head_dim // 2, device=dev)
        self._cos_full = self._sin_signed = torch.empty(0, cfg.head_dim, device=dev)

    @property
    def num_local_layers(self) -> int:
        return self.layer_range[1] - self.layer_range[0]

    def _rope_tables(self, need: int) -> None:
        if need > self._cos.shape[0]:
            n = max(need, 2 * self._cos.shape[0], 256)
            t = torch.arange(n, device=self.inv_freq.device, dtype=torch.float32)
            freqs = t[:, None] * self.inv_freq[None, :]  # (n, D/2), fp32 as in HF
            self._cos, self._sin = freqs.cos(), freqs.sin()
            self._cos_full = torch.cat((self._cos, self._cos), -1).to(self.dtype)  # (n, D)
            self._sin_signed = torch.cat((-self._sin, self._sin), -1).to(self.dtype)

    def _step(self, batch: Batch, block_size: int, triton: bool) -> Step:
        s, t = batch.positions.shape
        self._rope_tables(batch.max_context)
        flat = batch.positions.reshape(-1)
        if triton:
            cos, sin = self._cos[flat].to(self.dtype), self._sin[flat].to(self.dtype)
        else:
            cos, sin = self._cos_full[flat].unsqueeze(1), self._sin_signed[flat].unsqueeze(1)
        gather = mask = None
        if not (batch.from_start and t > 1) and not (triton and t == 1):
            pos = torch.arange(batch.max_context, device=flat.device)  # (L,)
            table = batch.block_tables.long()
            gather = table[:, pos // block_size] * block_size + pos % block_size  # (S, L)
            if t > 1:
                mask = (pos.view(1, 1, -1) <= batch.positions.unsqueeze(-1)).unsqueeze(1)
            elif s > 1:
                mask = (pos.view(1, -1) < batch.context_lens.view(-1, 1)).view(s, 1, 1, -1)
        return Step(batch, s, t, triton, cos, sin, gather, mask)

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
        s, t = batch.positions.shape
        if self.model.embed_tokens is not None:
            x = self.model.embed_tokens(x)  # (S, T, C)
        x = x.reshape(s * t, -1)  # (N, C): every token is a row
        triton = x.is_cuda and ops.triton_kernels() is not None
        step = self._step(batch, caches[0][0].shape[1], triton)
        for i, layer in enumerate(self.model.layers.values()):
            x = layer(x, step, caches[i])
        if self.model.norm is None or self.lm_head is None:
            return x.view(s, t, -1)
        if not all_logits:
            x = x.view(s, t, -1)[:, -1]  # (S, C)
        logits: torch.Tensor = self.lm_head(self.model.norm(x)).float()  # (S, V) or (N, V)
        return logits.view(s, t, -1) if all_logits else logits
