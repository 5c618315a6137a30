"""Tensor parallelism as a separate pass over an unsharded model (spec/runtime.md §6).

Theory of operation (Megatron-style, as in gpt-fast): q/k/v and gate/up are column-parallel —
rank ``r`` of ``w`` keeps output rows ``[r n/w, (r+1) n/w)``, i.e. whole attention heads and a
slice of the MLP — so attention and the SiLU product run locally. o and down are row-parallel:
each rank multiplies its slice of the input features and the partial sums are added with one
explicit ``all_reduce`` in :meth:`RowParallelLinear.forward`, after which the (replicated) bias is
added once. Embeddings, norms and ``lm_head`` are replicated, so every rank ends with identical
logits. The model module never sees any of this: a sharded model is a narrower model (its
config has ``H/w`` heads and ``I/w`` intermediate features) whose two row-parallel projections
were swapped for :class:`RowParallelLinear`. The same slice rule (:func:`shard_dim`) serves the
loader, which reads only its rank's bytes, and :func:`shard_model`, which slices a model that
is already in memory.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from infernet_ref.runtime.config import ModelConfig
from infernet_ref.runtime.errors import RequestError
from infernet_ref.runtime.model import Linear, Transformer

COLUMN = ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj")
ROW = ("o_proj", "down_proj")


def shard_dim(name: str) -> int | None:
    """The dimension along which parameter ``name`` is split, None when replicated."""
    parts = name.split(".")
    if len(parts) < 2:
        return None
    module, leaf = parts[-2], parts[-1]
    if module in COLUMN:
        return 0
    if module in ROW and leaf == "weight":
        return 1
    return None


def local_config(cfg: ModelConfig, world: int, rank: int = 0) -> ModelConfig:
    """The config of one rank's shard; raises RequestError for an impossible world size."""
    if world < 1 or not 0 <= rank < world:
        raise RequestError(f"tensor-parallel rank {rank} of world size {world} is impossible")
    if world == 1:
        return cfg
    bad = [
        f"{field}={value}"
        for field, value in (
            ("num_attention_heads", cfg.num_attention_heads),
            ("num_key_value_heads", cfg.num_key_value_heads),
            ("intermediate_size", cfg.intermediate_size),
        )
        if value % world
    ]
    if bad:
        raise RequestError(
            f"tensor-parallel size {world} must divide {', '.join(bad)} of this model"
        )
    return replace(
        cfg,
        num_attention_heads=cfg.num_attention_heads // world,
        num_key_value_heads=cfg.num_key_value_heads // world,
        intermediate_size=cfg.intermediate_size // world,
    )


class RowParallelLinear(Linear):
    """A row-parallel projection: local matmul, explicit all-reduce, then the bias once."""

    def __init__(self, src: Linear, group: Any) -> None:
        torch.nn.Module.__init__(self)
        self.weight = src.weight
        self.bias = src.bias
        self.group = group

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight)  # partial sum over this rank's input features
        dist.all_reduce(y, op=dist.ReduceOp.SUM, group=self.group)
        return y if self.bias is None else y + self.bias


def parallelize(model: Transformer, group: Any = None) -> Transformer:
    """Swap the row-parallel projections of a rank-local model for all-reducing ones."""
    for layer in model.decoder_layers():
        o_proj, down_proj = layer.self_attn.o_proj, layer.mlp.down_proj
        assert isinstance(o_proj, Linear)
        assert isinstance(down_proj, Linear)
        layer.self_attn.o_proj = RowParallelLinear(o_proj, group)
        layer.mlp.down_proj = RowParallelLinear(down_proj, group)
    return model


def _world(group: Any) -> tuple[int, int]:
    if not dist.is_initialized():
        raise RequestError("tensor parallelism needs torch.distributed to be initialised")
    return dist.get_rank(group), dist.get_world_size(group)


def shard_model(model: Transformer, group: Any = None) -> Transformer:
    """Return this rank's shard of an unsharded, loaded ``model`` (spec §6.2)."""
    rank, world = _world(group)
    cfg = local_config(model.config, world, rank)
    dev = next(model.parameters()).device
    local = Transformer(cfg, model.layer_range, dtype=model.dtype, device=dev)
    source = dict(model.named_parameters())
    with torch.no_grad():
        for name, param in local.named_parameters():
            dim = shard_dim(name)
            size = param.shape[dim] if dim is not None else 0
            full = source[name]
            param.copy_(full if dim is None else full.narrow(dim, rank * size, size))
    return parallelize(local, group)


def load_sharded(model_dir: str | Path, group: Any = None, **kwargs: Any) -> Transformer:
    """Load only this rank's slices of a checkpoint and parallelize them (spec §6.3)."""
    from infernet_ref.runtime.loader import load_model  # noqa: PLC0415 (loader imports tp)

    rank, world = _world(group)
    model = load_model(model_dir, tp_rank=rank, tp_size=world, **kwargs)
    return parallelize(model, group) if world > 1 else model
