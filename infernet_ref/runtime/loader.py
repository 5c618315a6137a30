"""Checkpoint loading: config + (sharded) safetensors into a Transformer (spec/runtime.md §2).

Theory of operation: :func:`load_model` builds an *empty* :class:`Transformer` for the requested
layer range and tensor-parallel rank (``torch.empty`` pages are not touched until written), then
plans every copy before doing any: each parameter is matched with a checkpoint tensor (a tied
``lm_head`` reads ``model.embed_tokens.weight``), its global shape is checked against the
configuration and its rank slice is computed. Only when the whole plan holds does the copy run,
tensor by tensor, through bounded mmap windows that convert the dtype on the way — so peak memory
is the model plus one window, never two copies of the weights, and a bad checkpoint fails before
any work is wasted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from infernet_ref.runtime import tp
from infernet_ref.runtime.config import DTYPES, ModelConfig, load_config
from infernet_ref.runtime.errors import (
    CheckpointError,
    MissingTensor,
    RequestError,
    TensorShapeMismatch,
)
from infernet_ref.runtime.model import Transformer
from infernet_ref.runtime.safetensors_io import SafetensorsFile

INDEX_NAME = "model.safetensors.index.json"
MAX_INDEX_BYTES = 64 << 20


@dataclass(frozen=True, slots=True)
class Copy:
    """One planned copy: checkpoint tensor ``source`` (slice along ``dim``) into ``target``."""

    target: str
    source: str
    dim: int | None
    start: int
    stop: int


class Checkpoint:
    """The safetensors files of a model folder, with a name -> file map (spec §2.2)."""

    def __init__(self, model_dir: str | Path) -> None:
        self.dir = Path(model_dir)
        self.files: dict[str, SafetensorsFile] = {}
        self.where: dict[str, SafetensorsFile] = {}
        try:
            for fname in self._file_names():
                f = SafetensorsFile(self.dir / fname)
                self.files[fname] = f
                for name in f.header.tensors:
                    if name in self.where:
                        raise CheckpointError(f"tensor {name!r} appears in two safetensors files")
                    self.where[name] = f
        except BaseException:
            self.close()
            raise

    def _file_names(self) -> list[str]:
        index = self.dir / INDEX_NAME
        if index.exists():
            if index.stat().st_size > MAX_INDEX_BYTES:
                raise CheckpointError(f"{index} exceeds {MAX_INDEX_BYTES} bytes")
            try:
                weight_map = json.loads(index.read_bytes())["weight_map"]
            except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
                raise CheckpointError(f"{index} is not a valid index: {exc!r}") from None
            if not isinstance(weight_map, dict) or not all(
                isinstance(v, str) and "/" not in v and v.endswith(".safetensors")
                for v in weight_map.values()
            ):
                raise CheckpointError(
                    f"{index}: weight_map must map names to local .safetensors files"
                )
            names = sorted(set(weight_map.values()))
            missing = [n for n in names if not (self.dir / n).is_file()]
            if missing:
                raise CheckpointError(f"{index} names missing shard files: {missing}")
            return names
        names = sorted(p.name for p in self.dir.glob("*.safetensors"))
        if not names:
            raise CheckpointError(f"{self.dir} holds no *.safetensors file")
        return names

    def shape(self, name: str) -> tuple[int, ...] | None:
        f = self.where.get(name)
        return f.header.tensors[name].shape if f else None

    def close(self) -> None:
        for f in self.files.values():
            f.close()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def plan_copies(model: Transformer, ckpt: Checkpoint, tp_rank: int, tp_size: int) -> list[Copy]:
    """Match every parameter with its checkpoint tensor and slice; raise before copying."""
    cfg: ModelConfig = model.config
    plan: list[Copy] = []
    for name, param in model.named_parameters():  # tied parameters are listed once
        source = name
        if name == "lm_head.weight" and cfg.tie_word_embeddings and ckpt.shape(name) is None:
            source = "model.embed_tokens.weight"
        shape = ckpt.shape(source)
        if shape is None:
            raise MissingTensor(f"{ckpt.dir}: tensor {source!r} is missing from the checkpoint")
        dim = tp.shard_dim(name) if tp_size > 1 else None
        expected = list(param.shape)
        if dim is not None:
            expected[dim] *= tp_size
        if tuple(expected) != shape:
            raise TensorShapeMismatch(
                f"{ckpt.dir}: tensor {source!r} has shape {list(shape)}, the config needs {expected}"
            )
        start = tp_rank * param.shape[dim] if dim is not None else 0
        stop = start + param.shape[dim] if dim is not None else 0
        plan.append(Copy(name, source, dim, start, stop))
    return plan


def resolve_dtype(name: str | torch.dtype | None, cfg: ModelConfig) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    key = name or cfg.torch_dtype
    if key not in DTYPES:
        raise RequestError(f"dtype {key!r} is not supported; supported: {', '.join(DTYPES)}")
    return DTYPES[key]


def load_model(
    model_dir: str | Path,
    *,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device = "cpu",
    layer_range: tuple[int, int] | None = None,
    tp_rank: int = 0,
    tp_size: int = 1,
) -> Transformer:
    """Load layers ``[a, b)`` (all by default) of rank ``tp_rank``'s slice (spec §2.3)."""
    cfg = load_config(model_dir)
    n = cfg.num_hidden_layers
    a, b = layer_range or (0, n)
    if not 0 <= a < b <= n:
        raise RequestError(f"layer range [{a}, {b}) is not inside the model's [0, {n})")
    local_cfg = tp.local_config(cfg, tp_size, tp_rank)
    torch_dtype = resolve_dtype(dtype, cfg)
    with Checkpoint(model_dir) as ckpt:
        model = Transformer(local_cfg, (a, b), dtype=torch_dtype, device=device)
        plan = plan_copies(model, ckpt, tp_rank, tp_size)
        params = dict(model.named_parameters())
        with torch.no_grad():
            for c in plan:
                ckpt.where[c.source].copy_into(c.source, params[c.target], c.dim, c.start, c.stop)
    return model
