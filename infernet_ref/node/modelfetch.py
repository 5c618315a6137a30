"""Fetching a pipeline stage's weights through the content layer (spec/node.md §Models).

Theory of operation. A provider that serves layers [a, b) of a model it does not hold locally
asks the DHT for nodes providing the model folder's CID (kind-38201 records, spec/content.md),
reads the folder listing and ``config.json``, and fetches *only* the tensors its stage needs —
the decoder layers [a, b), plus the embedding on the first stage and the final norm and LM head
(or the tied embedding) on the last — as byte ranges of the safetensors files. Every block is
verified against its CID by the exchange client. The tensors are written to a new
``model.safetensors`` in ``data_dir/models/<cid>-<a>-<b>/`` next to the model's ``config.json``
(and ``tokenizer.json`` when present), which the runtime loader reads like any checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from infernet_ref.errors import InfernetError

SMALL_FILES = ("config.json", "generation_config.json", "tokenizer.json")
MAX_SMALL = 64 << 20


class ModelFetchError(InfernetError):
    """The model could not be fetched (no providers, missing files or tensors)."""


def stage_tensor_names(
    names: list[str], *, start: int, end: int, num_layers: int, tied: bool
) -> list[str]:
    """The tensors a stage over layers [start, end) needs (HF Llama-family names)."""
    from infernet_ref.content.safetensors_fetch import layer_tensor_names  # noqa: PLC0415

    want = set(layer_tensor_names(names, start, end))
    if start == 0 or (end == num_layers and tied):
        want |= {n for n in names if n.endswith("embed_tokens.weight")}
    if end == num_layers:
        want |= {n for n in names if n.endswith("model.norm.weight") or n.startswith("lm_head.")}
    return sorted(want)


def write_safetensors(path: Path, tensors: dict[str, Any]) -> None:
    """Write fetched tensors (raw little-endian bytes + dtype/shape) as one safetensors file."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        header[name] = {
            "dtype": t.info.dtype,
            "shape": list(t.info.shape),
            "data_offsets": [offset, offset + len(t.data)],
        }
        offset += len(t.data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)
        for name in sorted(tensors):
            f.write(tensors[name].data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


async def fetch_stage(
    cid: str,
    providers: list[str],
    dest_root: Path,
    *,
    start: int,
    end: int | None,
    store_dir: Path | None = None,
) -> tuple[Path, int, int]:
    """Fetch layers [start, end) of model ``cid``; returns (folder, num_layers, bytes of tensors)."""
    from infernet_ref.content.exchange.client import ExchangeClient  # noqa: PLC0415
    from infernet_ref.content.rangefetch import read_range  # noqa: PLC0415
    from infernet_ref.content.safetensors_fetch import (  # noqa: PLC0415
        fetch_tensors,
        list_directory,
        tensor_locations,
    )
    from infernet_ref.content.store import BlockStore  # noqa: PLC0415

    if not providers:
        raise ModelFetchError(f"no content providers known for {cid}")
    store = BlockStore(store_dir) if store_dir is not None else None
    async with ExchangeClient(providers, store=store) as client:
        entries = await list_directory(cid, client)
        if "config.json" not in entries:
            raise ModelFetchError(f"{cid} has no config.json")
        small = {}
        for name in SMALL_FILES:
            if name in entries:
                small[name] = await read_range(entries[name], 0, None, client)
        cfg = json.loads(small["config.json"])
        n = int(cfg["num_hidden_layers"])
        stop = n if end is None else end
        if not 0 <= start < stop <= n:
            raise ModelFetchError(f"layers [{start}, {stop}) are not inside [0, {n})")
        where = await tensor_locations(cid, client)
        names = stage_tensor_names(
            list(where),
            start=start,
            end=stop,
            num_layers=n,
            tied=bool(cfg.get("tie_word_embeddings")),
        )
        tensors = await fetch_tensors(cid, names, client)
    dest = dest_root / f"{cid}-{start}-{stop}"
    dest.mkdir(parents=True, exist_ok=True)
    for name, data in small.items():
        (dest / name).write_bytes(data)
    write_safetensors(dest / "model.safetensors", tensors)
    return dest, n, sum(len(t.data) for t in tensors.values())


async def fetch_config(cid: str, providers: list[str]) -> dict[str, Any]:
    """Only ``config.json`` of model folder ``cid`` (what an aggregator needs to plan)."""
    from infernet_ref.content.exchange.client import ExchangeClient  # noqa: PLC0415
    from infernet_ref.content.rangefetch import read_range  # noqa: PLC0415
    from infernet_ref.content.safetensors_fetch import list_directory  # noqa: PLC0415
    from infernet_ref.encoding import json_decode  # noqa: PLC0415

    if not providers:
        raise ModelFetchError(f"no content providers known for {cid}")
    async with ExchangeClient(providers) as client:
        entries = await list_directory(cid, client)
        if "config.json" not in entries:
            raise ModelFetchError(f"{cid} has no config.json")
        cfg = json_decode(
            await read_range(entries["config.json"], 0, None, client), max_size=1 << 20
        )
    if not isinstance(cfg, dict):
        raise ModelFetchError(f"{cid}/config.json is not an object")
    return cfg
