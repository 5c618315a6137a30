"""Fetch named tensors of a safetensors checkpoint by folder CID (spec/content.md §9).

A safetensors file is ``u64le(N) || header JSON (N bytes) || data``; the header maps each
tensor name to ``{dtype, shape, data_offsets: [begin, end]}`` relative to the data section.
We read the 8-byte length, then the header, then only the byte ranges of the requested tensors
through :func:`~.rangefetch.read_range`, so only the blocks those bytes live in are fetched and
verified. For a sharded checkpoint ``model.safetensors.index.json``'s ``weight_map`` says which
shard holds each tensor; without an index every ``*.safetensors`` header is read.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from infernet_ref.content.cid import CID, parse_cid
from infernet_ref.content.errors import ContentError, UnixFsError
from infernet_ref.content.hamt import list_steps, run_async
from infernet_ref.content.rangefetch import BlockSource, read_range, size_of
from infernet_ref.content.reader import unixfs_of
from infernet_ref.content.unixfs import DataType

MAX_HEADER = 100 * 1024 * 1024  # the safetensors format's own limit
MAX_INDEX = 64 * 1024 * 1024
INDEX_NAME = "model.safetensors.index.json"
DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8,
}  # fmt: skip
_LAYER = re.compile(r"\.layers\.(\d+)\.")


class SafetensorsError(ContentError):
    """A safetensors header is malformed or a requested tensor does not exist."""


@dataclass(frozen=True, slots=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute offsets in the file
    end: int


@dataclass(frozen=True, slots=True)
class Tensor:
    info: TensorInfo
    data: bytes

    def to_torch(self) -> Any:
        """The tensor as a ``torch.Tensor`` (imports torch lazily)."""
        import torch  # noqa: PLC0415

        dtypes = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64,
                  "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                  "BOOL": torch.bool}  # fmt: skip
        if self.info.dtype not in dtypes:
            raise SafetensorsError(f"dtype {self.info.dtype} has no torch mapping here")
        flat = torch.frombuffer(bytearray(self.data), dtype=dtypes[self.info.dtype])
        return flat.reshape(self.info.shape)


async def list_directory(cid: CID | str, source: BlockSource) -> dict[str, CID]:
    """Entries of a UnixFS directory (flat or HAMT-sharded)."""
    c = parse_cid(cid)
    block = await source.get_block(c)
    node, fs = unixfs_of(c, block)
    if fs.type == DataType.HAMT_SHARD:
        entries = await run_async(list_steps(c, block), source.get_block)
        return {e.name: e.link.cid for e in entries}
    if fs.type != DataType.DIRECTORY:
        raise UnixFsError(f"{c} is not a directory")
    return {link.name or "": link.cid for link in node.links}


def parse_header(raw: bytes, file_size: int) -> dict[str, TensorInfo]:
    """Check a safetensors header (``raw`` = the JSON bytes) against the file's size."""
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SafetensorsError(f"safetensors header is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise SafetensorsError("safetensors header must be an object")
    base = 8 + len(raw)
    out: dict[str, TensorInfo] = {}
    for name, meta in obj.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (b, e) = (
                meta["dtype"],
                tuple(int(x) for x in meta["shape"]),
                meta["data_offsets"],
            )
        except (KeyError, TypeError, ValueError):
            raise SafetensorsError(f"tensor {name!r}: malformed entry") from None
        if (
            dtype not in DTYPE_SIZES
            or not isinstance(b, int)
            or not isinstance(e, int)
            or any(d < 0 for d in shape)
        ):
            raise SafetensorsError(f"tensor {name!r}: bad dtype, shape or offsets")
        if (
            not 0 <= b <= e
            or base + e > file_size
            or e - b != math.prod(shape) * DTYPE_SIZES[dtype]
        ):
            raise SafetensorsError(
                f"tensor {name!r}: offsets [{b}, {e}) inconsistent with shape/file"
            )
        out[name] = TensorInfo(name, dtype, shape, base + b, base + e)
    return out


async def read_header(file_cid: CID | str, source: BlockSource) -> dict[str, TensorInfo]:
    """Read and check the header of one safetensors file (two small range reads)."""
    size = await size_of(file_cid, source)
    if size < 8:
        raise SafetensorsError("file too short for a safetensors header")
    n = int.from_bytes(await read_range(file_cid, 0, 8, source), "little")
    if n > MAX_HEADER or 8 + n > size:
        raise SafetensorsError(f"safetensors header length {n} out of range")
    return parse_header(await read_range(file_cid, 8, 8 + n, source), size)


async def tensor_locations(
    folder: CID | str, source: BlockSource
) -> dict[str, tuple[CID, TensorInfo]]:
    """Map every tensor name to (file CID, info), reading only the headers it must."""
    entries = await list_directory(folder, source)
    shards = sorted(n for n in entries if n.endswith(".safetensors"))
    if INDEX_NAME in entries:
        raw = await read_range(entries[INDEX_NAME], 0, MAX_INDEX, source)
        try:
            weight_map = json.loads(raw)["weight_map"]
            shards = sorted({str(v) for v in weight_map.values()})
        except (ValueError, KeyError, TypeError, AttributeError):
            raise SafetensorsError(f"{INDEX_NAME} has no valid weight_map") from None
    out: dict[str, tuple[CID, TensorInfo]] = {}
    for shard in shards:
        if shard not in entries:
            raise SafetensorsError(f"shard {shard!r} named by the index is not in the folder")
        for name, info in (await read_header(entries[shard], source)).items():
            out[name] = (entries[shard], info)
    return out


def layer_tensor_names(names: Iterable[str], start: int, end: int) -> list[str]:
    """Names of tensors of decoder layers ``[start, end)`` (``...layers.<i>....``)."""
    return sorted(n for n in names if (m := _LAYER.search(n)) and start <= int(m.group(1)) < end)


async def fetch_tensors(
    folder: CID | str, names: Iterable[str], source: BlockSource
) -> dict[str, Tensor]:
    """Fetch only the named tensors from a model folder's CID."""
    where = await tensor_locations(folder, source)
    out: dict[str, Tensor] = {}
    for name in names:
        if name not in where:
            raise SafetensorsError(f"no tensor named {name!r} in {folder}")
        file_cid, info = where[name]
        out[name] = Tensor(info, await read_range(file_cid, info.start, info.end, source))
    return out
