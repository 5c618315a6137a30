"""Hugging Face ``config.json`` parsing for the supported Llama family (spec/runtime.md §1).

Theory of operation: :func:`parse_config` takes the decoded JSON object of a checkpoint's
``config.json`` and returns a frozen :class:`ModelConfig`. Everything the runtime needs is
normalised here, once: head dimension, grouped-query ratio, the bias layout of the family
(Qwen2 biases q/k/v only; Llama's ``attention_bias`` biases q/k/v/o), the rotary embedding in
both the transformers 4 spelling (``rope_theta`` + ``rope_scaling``) and the transformers 5 one
(``rope_parameters``), and the usable context (a sliding window caps it, since attention inside
the window is ordinary causal attention). Anything outside the family raises
:class:`UnsupportedModel` naming what is supported; malformed values raise
:class:`CheckpointError` naming the field.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from infernet_ref.runtime.errors import CheckpointError, UnsupportedModel

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2")
SUPPORTED_ROPE_TYPES = ("default", "linear", "llama3")
MAX_CONFIG_BYTES = 1 << 20

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


@dataclass(frozen=True, slots=True)
class RopeConfig:
    """Rotary embedding parameters (HF ``rope_parameters``)."""

    theta: float = 10000.0
    rope_type: str = "default"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """The shape of one Llama-family model; ``num_*`` fields are the whole (unsharded) model."""

    model_type: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    rope: RopeConfig
    max_position_embeddings: int
    tie_word_embeddings: bool = False
    qkv_bias: bool = False
    o_bias: bool = False
    mlp_bias: bool = False
    torch_dtype: str = "float32"
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()

    @property
    def q_size(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_key_value_heads * self.head_dim

    def with_context(self, max_len: int) -> ModelConfig:
        return replace(self, max_position_embeddings=max_len)


def _field(raw: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = raw.get(name, default)
    if value is None and default is None:
        raise CheckpointError(f"config.json: required field {name!r} is missing")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise CheckpointError(f"config.json: field {name!r} must be {kind.__name__}, got {value!r}")
    return value


def _positive(raw: dict[str, Any], name: str, default: Any = None) -> int:
    value: int = _field(raw, name, int, default)
    if value <= 0:
        raise CheckpointError(f"config.json: field {name!r} must be positive, got {value}")
    return value


def _parse_rope(raw: dict[str, Any], max_pos: int) -> RopeConfig:
    params = raw.get("rope_parameters")
    if params is None:
        params = dict(raw.get("rope_scaling") or {})
        params.setdefault("rope_theta", raw.get("rope_theta", 10000.0))
    if not isinstance(params, dict):
        raise CheckpointError("config.json: rope_parameters must be an object")
    if "type" in params and "rope_type" not in params:
        params = {**params, "rope_type": params["type"]}
    rope_type = params.get("rope_type", "default")
    if rope_type not in SUPPORTED_ROPE_TYPES:
        raise UnsupportedModel(
            f"rope type {rope_type!r} is not supported; supported: {', '.join(SUPPORTED_ROPE_TYPES)}"
        )
    theta = _field(params, "rope_theta", float, 10000.0)
    factor = _field(params, "factor", float, 1.0)
    low = _field(params, "low_freq_factor", float, 1.0)
    high = _field(params, "high_freq_factor", float, 4.0)
    orig = _field(params, "original_max_position_embeddings", int, max_pos)
    if theta <= 0 or factor <= 0 or (rope_type == "llama3" and not low < high):
        raise CheckpointError(f"config.json: invalid rope parameters {params!r}")
    return RopeConfig(theta, rope_type, factor, low, high, orig)


def _eos_ids(raw: dict[str, Any]) -> tuple[int, ...]:
    eos = raw.get("eos_token_id")
    if eos is None:
        return ()
    ids = eos if isinstance(eos, list) else [eos]
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise CheckpointError(f"config.json: eos_token_id must be ids, got {eos!r}")
    return tuple(ids)


def parse_config(raw: object) -> ModelConfig:
    """Validate a decoded ``config.json`` (spec/runtime.md §1) and return its ModelConfig."""
    if not isinstance(raw, dict):
        raise CheckpointError("config.json must hold a JSON object")
    model_type = raw.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise UnsupportedModel(
            f"model_type {model_type!r} (architectures {raw.get('architectures')!r}) is not "
            f"supported; supported: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    act = raw.get("hidden_act", "silu")
    if act != "silu":
        raise UnsupportedModel(f"hidden_act {act!r} is not supported; only 'silu'")
    hidden = _positive(raw, "hidden_size")
    heads = _positive(raw, "num_attention_heads")
    kv_heads = _positive(raw, "num_key_value_heads", heads)
    head_dim = raw.get("head_dim") or hidden // heads
    if not isinstance(head_dim, int) or head_dim <= 0 or head_dim % 2:
        raise CheckpointError(
            f"config.json: head_dim must be a positive even int, got {head_dim!r}"
        )
    if heads % kv_heads:
        raise CheckpointError(
            f"config.json: num_attention_heads {heads} is not a multiple of "
            f"num_key_value_heads {kv_heads}"
        )
    if raw.get("pretraining_tp", 1) != 1:
        raise UnsupportedModel("pretraining_tp != 1 is not supported")
    max_pos = _positive(raw, "max_position_embeddings", 2048)
    window = raw.get("sliding_window")
    layer_types = raw.get("layer_types") or []
    sliding = window is not None and (
        model_type == "mistral"
        or raw.get("use_sliding_window", False)
        or "sliding_attention" in layer_types
    )
    if sliding:
        if not isinstance(window, int) or window <= 0:
            raise CheckpointError(
                f"config.json: sliding_window must be a positive int, got {window!r}"
            )
        # Inside the window, sliding-window attention is plain causal attention (§1.3).
        max_pos = min(max_pos, window)
    attention_bias = bool(raw.get("attention_bias", False))
    dtype = raw.get("dtype") or raw.get("torch_dtype") or "float32"
    if dtype not in DTYPES:
        raise UnsupportedModel(f"dtype {dtype!r} is not supported; supported: {', '.join(DTYPES)}")
    eps = _field(raw, "rms_norm_eps", float, 1e-6)
    if not (eps > 0 and math.isfinite(eps)):
        raise CheckpointError(f"config.json: rms_norm_eps must be positive, got {eps}")
    return ModelConfig(
        model_type=model_type,
        vocab_size=_positive(raw, "vocab_size"),
        hidden_size=hidden,
        intermediate_size=_positive(raw, "intermediate_size"),
        num_hidden_layers=_positive(raw, "num_hidden_layers"),
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim,
        rms_norm_eps=eps,
        rope=_parse_rope(raw, max_pos),
        max_position_embeddings=max_pos,
        tie_word_embeddings=bool(raw.get("tie_word_embeddings", False)),
        qkv_bias=model_type == "qwen2" or attention_bias,
        o_bias=model_type != "qwen2" and attention_bias,
        mlp_bias=model_type == "llama" and bool(raw.get("mlp_bias", False)),
        torch_dtype=dtype,
        bos_token_id=raw.get("bos_token_id") if isinstance(raw.get("bos_token_id"), int) else None,
        eos_token_ids=_eos_ids(raw),
    )


def load_config(model_dir: str | Path) -> ModelConfig:
    """Read and parse ``model_dir/config.json``."""
    path = Path(model_dir) / "config.json"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc.strerror}") from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{path} is larger than {MAX_CONFIG_BYTES} bytes")
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    return parse_config(raw)


def rope_inv_freq(config: ModelConfig) -> torch.Tensor:
    """Inverse frequencies of the rotary embedding, fp32, (head_dim // 2,) (spec §1.2)."""
    dim = config.head_dim
    rope = config.rope
    exponent = torch.arange(0, dim, 2, dtype=torch.int64).to(torch.float32) / dim
    inv_freq = 1.0 / (rope.theta**exponent)
    if rope.rope_type == "linear":
        return inv_freq / rope.factor
    if rope.rope_type == "llama3":
        low_wavelen = rope.original_max_position_embeddings / rope.low_freq_factor
        high_wavelen = rope.original_max_position_embeddings / rope.high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_wavelen, inv_freq / rope.factor, inv_freq)
        smooth = (rope.original_max_position_embeddings / wavelen - rope.low_freq_factor) / (
            rope.high_freq_factor - rope.low_freq_factor
        )
        smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
        return torch.where(medium, smoothed, scaled)
    return inv_freq
