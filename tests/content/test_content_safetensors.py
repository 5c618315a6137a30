"""Tensor fetch from a sharded safetensors folder CID, checked against the safetensors library."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from infernet_ref.content.builder import build_path
from infernet_ref.content.cid import CID
from infernet_ref.content.exchange import ExchangeClient, serve_content
from infernet_ref.content.rangefetch import StoreSource
from infernet_ref.content.safetensors_fetch import (
    SafetensorsError,
    fetch_tensors,
    layer_tensor_names,
    parse_header,
    tensor_locations,
)
from infernet_ref.content.store import BlockStore


def _model(tmp_path: Path, layers: int = 6) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    g = torch.Generator().manual_seed(0)
    tensors = {"model.embed_tokens.weight": torch.randn(64, 256, generator=g)}
    for i in range(layers):
        tensors[f"model.layers.{i}.mlp.up_proj.weight"] = torch.randn(1024, 1024, generator=g)
        tensors[f"model.layers.{i}.input_layernorm.weight"] = torch.randn(256, generator=g).to(
            torch.bfloat16
        )
    names = sorted(tensors)
    half = len(names) // 2
    shards = {
        "model-00001-of-00002.safetensors": names[:half],
        "model-00002-of-00002.safetensors": names[half:],
    }
    weight_map = {}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(d / shard))
        weight_map.update(dict.fromkeys(keys, shard))
    (d / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map})
    )
    (d / "config.json").write_text(json.dumps({"num_hidden_layers": layers}))
    return d


def _expected(d: Path, name: str) -> torch.Tensor:
    index = json.loads((d / "model.safetensors.index.json").read_text())
    with safe_open(str(d / index["weight_map"][name]), "pt") as f:
        return f.get_tensor(name)


async def test_fetch_stage_tensors_over_network(tmp_path: Path) -> None:
    d = _model(tmp_path)
    store = BlockStore(tmp_path / "s", fsync=False)
    root = build_path(d, store.put).cid
    srv, cs = await serve_content(store)
    async with ExchangeClient([f"ws://127.0.0.1:{srv.port}/content"]) as client:
        where = await tensor_locations(root, client)
        stage = layer_tensor_names(where, 2, 4)
        assert len(stage) == 4
        got = await fetch_tensors(root, stage, client)
    for name, t in got.items():
        assert torch.equal(t.to_torch(), _expected(d, name)), name
    total = sum(store.size(c) for c in store.cids())
    assert cs.stats.bytes_sent < total / 2  # only the blocks the stage touches
    await srv.close()


async def test_local_fetch_and_missing_tensor(tmp_path: Path) -> None:
    d = _model(tmp_path, layers=2)
    store = BlockStore(tmp_path / "s", fsync=False)
    root: CID = build_path(d, store.put).cid
    src = StoreSource(store)
    got = await fetch_tensors(root, ["model.embed_tokens.weight"], src)
    assert torch.equal(
        got["model.embed_tokens.weight"].to_torch(), _expected(d, "model.embed_tokens.weight")
    )
    with pytest.raises(SafetensorsError):
        await fetch_tensors(root, ["nope"], src)


@pytest.mark.parametrize(
    "header",
    [
        b"[]",
        b"not json",
        b'{"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}',
        b'{"t": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 4]}}',
        b'{"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 400]}}',
        b'{"t": {"dtype": "F32", "shape": [1]}}',
    ],
)
def test_bad_headers(header: bytes) -> None:
    with pytest.raises(SafetensorsError):
        parse_header(header, 8 + len(header) + 8)
