"""Config parsing, the strict safetensors reader and the loader's typed errors on bad input."""

from __future__ import annotations

import contextlib
import json
import shutil
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from infernet_ref.runtime.config import load_config, parse_config, rope_inv_freq
from infernet_ref.runtime.errors import (
    CheckpointError,
    MissingTensor,
    RequestError,
    TensorShapeMismatch,
    TruncatedCheckpoint,
    UnsupportedModel,
)
from infernet_ref.runtime.loader import load_model
from infernet_ref.runtime.safetensors_io import SafetensorsFile, encode_tensors, parse_header

BASE = {
    "model_type": "llama",
    "hidden_size": 32,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 40,
    "num_hidden_layers": 2,
    "vocab_size": 50,
}


def copy_ckpt(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_config_families_and_rope_spellings() -> None:
    cfg = parse_config(
        {**BASE, "rope_theta": 500000.0, "rope_scaling": {"type": "linear", "factor": 2.0}}
    )
    assert cfg.rope.rope_type == "linear"
    assert cfg.rope.theta == 500000.0
    assert cfg.head_dim == 8
    assert not cfg.qkv_bias
    q = parse_config({**BASE, "model_type": "qwen2", "attention_bias": False})
    assert q.qkv_bias
    assert not q.o_bias
    m = parse_config(
        {**BASE, "model_type": "mistral", "sliding_window": 64, "max_position_embeddings": 4096}
    )
    assert m.max_position_embeddings == 64  # the window caps the usable context


def test_rope_frequencies_equal_transformers() -> None:
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    for params in (
        {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 32,
        },
        {"rope_type": "linear", "factor": 4.0},
    ):
        hf_cfg = LlamaConfig(
            **{k: v for k, v in BASE.items() if k != "model_type"}, rope_scaling=params
        )
        ref, _ = ROPE_INIT_FUNCTIONS[params["rope_type"]](hf_cfg, "cpu")
        ours = rope_inv_freq(parse_config(json.loads(hf_cfg.to_json_string())))
        assert torch.equal(ours, ref)


@pytest.mark.parametrize(
    ("raw", "error", "match"),
    [
        ({**BASE, "model_type": "gpt2"}, UnsupportedModel, "supported: llama, mistral, qwen2"),
        ({**BASE, "hidden_act": "gelu"}, UnsupportedModel, "silu"),
        ({**BASE, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, UnsupportedModel, "yarn"),
        ({**BASE, "dtype": "float8_e4m3fn"}, UnsupportedModel, "dtype"),
        ({**BASE, "num_key_value_heads": 3}, CheckpointError, "multiple"),
        ({**BASE, "hidden_size": -1}, CheckpointError, "positive"),
        ({**BASE, "hidden_size": "32"}, CheckpointError, "must be int"),
        ({k: v for k, v in BASE.items() if k != "vocab_size"}, CheckpointError, "vocab_size"),
        ([1, 2], CheckpointError, "object"),
    ],
)
def test_bad_configs(raw: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        parse_config(raw)


def test_reader_agrees_with_the_safetensors_library(tmp_path: Path) -> None:
    tensors = {
        "a": torch.randn(3, 5),
        "b": torch.arange(7, dtype=torch.int64),
        "c": torch.randn(2, 2, 2).to(torch.bfloat16),
        "d": torch.zeros(0, 4),
    }
    save_file(tensors, tmp_path / "x.safetensors", metadata={"k": "v"})
    with SafetensorsFile(tmp_path / "x.safetensors") as f:
        assert f.header.metadata == {"k": "v"}
        for name, t in tensors.items():
            out = torch.empty_like(t, dtype=torch.float64)
            f.copy_into(name, out)
            assert torch.equal(out, t.double())
        cols = torch.empty(3, 2)
        f.copy_into("a", cols, dim=1, start=2, stop=4)
        assert torch.equal(cols, tensors["a"][:, 2:4])
    blob = encode_tensors(tensors, {"k": "v"})
    (tmp_path / "ours.safetensors").write_bytes(blob)
    back = load_file(tmp_path / "ours.safetensors")
    assert all(torch.equal(back[n], t) for n, t in tensors.items())


def test_windowed_copy_spans_many_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import infernet_ref.runtime.safetensors_io as sio

    monkeypatch.setattr(sio, "WINDOW_BYTES", 1000)  # 25 rows of 10 fp32 per window
    t = torch.randn(333, 10)
    save_file({"w": t}, tmp_path / "w.safetensors")
    with SafetensorsFile(tmp_path / "w.safetensors") as f:
        rows = torch.empty(100, 10, dtype=torch.float16)
        f.copy_into("w", rows, dim=0, start=200, stop=300)
        assert torch.equal(rows, t[200:300].half())
        cols = torch.empty(333, 3)
        f.copy_into("w", cols, dim=1, start=7, stop=10)
        assert torch.equal(cols, t[:, 7:10])


def _blob(header: dict[str, Any], data: bytes) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


@pytest.mark.parametrize(
    ("blob", "match"),
    [
        (
            _blob({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4),
            "shorter|ends",
        ),
        (
            _blob({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4),
            "needs 8",
        ),
        (_blob({"a": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8), "dtype"),
        (_blob({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8), "hole"),
        (
            _blob({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 8),
            "trailing",
        ),
        (_blob({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4), "shape"),
        (struct.pack("<Q", 1 << 40) + b"{}", "limit"),
        (b"\x02\x00\x00\x00\x00\x00\x00\x00{}" + b"", ""),
        (b'\x0f\x00\x00\x00\x00\x00\x00\x00{"a":1,"a":2}  ', "duplicate|exactly"),
    ],
)
def test_header_violations(blob: bytes, match: str) -> None:
    if match == "":  # an empty header with no tensors is valid
        assert parse_header(blob, len(blob)).tensors == {}
        return
    with pytest.raises(CheckpointError, match=match):
        parse_header(blob, len(blob))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_header_fuzz_only_checkpoint_errors(data: bytes) -> None:
    with contextlib.suppress(CheckpointError):
        parse_header(data, len(data))


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 200))
def test_any_truncation_of_a_real_file_is_detected(cut: int) -> None:
    blob = encode_tensors({"w": torch.ones(4, 4), "b": torch.ones(4)}, {})
    if cut >= len(blob):
        return
    with pytest.raises(CheckpointError):
        parse_header(blob[:cut], cut)


def test_loader_bad_checkpoints(checkpoints: dict[str, tuple[Path, Any]], tmp_path: Path) -> None:
    src = checkpoints["llama-gqa3"][0]
    # truncated weights file
    d = copy_ckpt(src, tmp_path / "trunc")
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(TruncatedCheckpoint):
        load_model(d)
    # a missing tensor
    d = copy_ckpt(src, tmp_path / "missing")
    t = load_file(d / "model.safetensors")
    del t["model.layers.1.mlp.up_proj.weight"]
    save_file(t, d / "model.safetensors")
    with pytest.raises(MissingTensor, match=r"layers\.1\.mlp\.up_proj"):
        load_model(d)
    load_model(d, layer_range=(0, 1))  # the stage without layer 1 does not need it
    # a mis-shaped tensor, found before anything is copied
    t = load_file(src / "model.safetensors")
    t["model.layers.0.self_attn.k_proj.weight"] = torch.zeros(7, 48)
    save_file(t, d / "model.safetensors")
    with pytest.raises(TensorShapeMismatch, match=r"k_proj.weight.*\[7, 48\].*\[16, 48\]"):
        load_model(d)
    # an unsupported architecture
    d = copy_ckpt(src, tmp_path / "arch")
    raw = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**raw, "model_type": "falcon"}))
    with pytest.raises(UnsupportedModel, match="falcon"):
        load_model(d)
    # config that is not JSON, and no weights at all
    (d / "config.json").write_text("{")
    with pytest.raises(CheckpointError, match="JSON"):
        load_config(d)
    d = tmp_path / "empty"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match=r"no \*\.safetensors"):
        load_model(d)
    with pytest.raises(RequestError, match="layer range"):
        load_model(src, layer_range=(2, 5))
    with pytest.raises(RequestError, match="tensor-parallel size 4"):
        load_model(src, tp_rank=0, tp_size=4)


def test_index_naming_a_missing_shard(
    checkpoints: dict[str, tuple[Path, Any]], tmp_path: Path
) -> None:
    d = copy_ckpt(checkpoints["llama-gqa3"][0], tmp_path / "idx")
    (d / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}})
    )
    with pytest.raises(CheckpointError, match="missing shard"):
        load_model(d)
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"x": "../etc"}}))
    with pytest.raises(CheckpointError, match="local"):
        load_model(d)


def test_loader_fills_every_parameter(checkpoints: dict[str, tuple[Path, Any]]) -> None:
    path, hf = checkpoints["llama3-tied"]
    ours = load_model(path)
    ref = hf.state_dict()
    for name, p in ours.state_dict().items():
        assert torch.equal(p, ref[name]), name
    assert ours.lm_head is not None
    assert ours.model.embed_tokens is not None
    assert ours.lm_head.weight is ours.model.embed_tokens.weight  # tied: one tensor
    attn = ours.model.layers["0"].self_attn
    assert attn.q_proj.weight.data_ptr() == attn.qkv_weight.data_ptr()  # fused storage views
