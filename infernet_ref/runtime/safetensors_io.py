"""Strict safetensors reader and writer (spec/runtime.md §2 and §5.1).

Theory of operation: a safetensors blob is ``u64le N`` + ``N`` bytes of a JSON header + a data
buffer. :func:`parse_header` checks every promise the header makes before any tensor byte is
touched: known dtypes, shapes whose byte size equals ``data_offsets``, offsets that tile the
data buffer exactly (no holes, no overlaps, no trailing bytes — the rule the reference
``safetensors`` library enforces), no duplicate keys, a size limit on the header, and a data
buffer that is really there (a short file is a :class:`TruncatedCheckpoint`). The same parser
serves checkpoint files (errors are :class:`CheckpointError`) and activation frames from peers
(errors are :class:`FrameError`), so hostile bytes can only produce those typed errors.

:class:`SafetensorsFile` copies tensors, or one tensor-parallel slice of them, straight from a
memory map into a destination tensor, converting the dtype on the way and mapping at most
``WINDOW_BYTES`` of the file at a time: the loader never holds a second full copy of a weight.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from infernet_ref.runtime.errors import (
    CheckpointError,
    FrameError,
    RuntimeLayerError,
    TruncatedCheckpoint,
)

MAX_HEADER_BYTES = 100 << 20
WINDOW_BYTES = 8 << 20

# safetensors dtype codes (format README, "dtype") -> torch dtype.
ST_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
TORCH_TO_ST = {v: k for k, v in ST_DTYPES.items()}


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One header entry; ``start``/``end`` are absolute offsets in the blob."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def torch_dtype(self) -> torch.dtype:
        return ST_DTYPES[self.dtype]


@dataclass(frozen=True, slots=True)
class Header:
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]
    data_start: int


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _entry(name: str, raw: object, data_start: int, fail: type[RuntimeLayerError]) -> TensorInfo:
    if not isinstance(raw, dict) or set(raw) != {"dtype", "shape", "data_offsets"}:
        raise fail(f"safetensors entry {name!r} must have exactly dtype, shape, data_offsets")
    dtype, shape, offsets = raw["dtype"], raw["shape"], raw["data_offsets"]
    if dtype not in ST_DTYPES:
        raise fail(f"safetensors entry {name!r}: unsupported dtype {dtype!r}")
    if not isinstance(shape, list) or not all(type(d) is int and 0 <= d < 1 << 40 for d in shape):
        raise fail(f"safetensors entry {name!r}: bad shape {shape!r}")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(type(o) is int and 0 <= o < 1 << 50 for o in offsets)
    ):
        raise fail(f"safetensors entry {name!r}: bad data_offsets {offsets!r}")
    numel = 1
    for d in shape:
        numel *= d
    itemsize = ST_DTYPES[dtype].itemsize
    if offsets[1] - offsets[0] != numel * itemsize:
        raise fail(
            f"safetensors entry {name!r}: data_offsets {offsets} span {offsets[1] - offsets[0]} "
            f"bytes but {dtype}{shape} needs {numel * itemsize}"
        )
    return TensorInfo(name, dtype, tuple(shape), data_start + offsets[0], data_start + offsets[1])


def parse_header(
    prefix: bytes,
    total_size: int,
    *,
    fail: type[RuntimeLayerError] = CheckpointError,
    max_header: int = MAX_HEADER_BYTES,
) -> Header:
    """Parse and check a safetensors header (spec §2.1); ``prefix`` holds at least the header.

    ``total_size`` is the length of the whole blob. Raises ``fail`` (or
    :class:`TruncatedCheckpoint` for a short checkpoint file) on any violation.
    """
    if total_size < 8 or len(prefix) < 8:
        raise (TruncatedCheckpoint if fail is CheckpointError else fail)(
            "safetensors blob shorter than its 8-byte header length"
        )
    (size,) = struct.unpack_from("<Q", prefix)
    if size > max_header:
        raise fail(f"safetensors header of {size} bytes exceeds the {max_header}-byte limit")
    if 8 + size > total_size or len(prefix) < 8 + size:
        raise (TruncatedCheckpoint if fail is CheckpointError else fail)(
            f"safetensors blob of {total_size} bytes is shorter than its {size}-byte header"
        )
    try:
        raw = json.loads(
            bytes(prefix[8 : 8 + size]).decode("utf-8"), object_pairs_hook=_no_duplicates
        )
    except (ValueError, RecursionError) as exc:
        raise fail(f"safetensors header is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise fail("safetensors header must be a JSON object")
    metadata = raw.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise fail("safetensors __metadata__ must map strings to strings")
    data_start = 8 + size
    tensors = {name: _entry(name, entry, data_start, fail) for name, entry in raw.items()}
    end = data_start
    for info in sorted(tensors.values(), key=lambda t: (t.start, t.end)):
        if info.start != end:
            raise fail(f"safetensors entry {info.name!r} leaves a hole or overlaps at offset {end}")
        end = info.end
    if end > total_size:
        raise (TruncatedCheckpoint if fail is CheckpointError else fail)(
            f"safetensors data ends at byte {end} but the blob has only {total_size} bytes"
        )
    if end != total_size:
        raise fail(f"safetensors blob has {total_size - end} trailing bytes after its data")
    return Header(tensors, metadata, data_start)


class SafetensorsFile:
    """A checked safetensors file on disk whose tensors are copied out through mmap windows."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise CheckpointError(f"cannot open {self.path}: {exc.strerror}") from exc
        try:
            total = os.fstat(self._fd).st_size
            head = os.pread(self._fd, 8, 0)
            size = struct.unpack("<Q", head)[0] if len(head) == 8 else 0
            prefix = head + os.pread(self._fd, min(size, MAX_HEADER_BYTES + 1), 8)
            self.header = parse_header(prefix, total)
        except (RuntimeLayerError, OSError) as exc:
            os.close(self._fd)
            if isinstance(exc, OSError):
                raise CheckpointError(f"cannot read {self.path}: {exc.strerror}") from exc
            raise type(exc)(f"{self.path.name}: {exc}") from None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> SafetensorsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def copy_into(
        self, name: str, dest: torch.Tensor, dim: int | None = None, start: int = 0, stop: int = 0
    ) -> None:
        """Copy tensor ``name`` (or its slice ``[start, stop)`` along ``dim`` 0 or 1) into dest.

        The dtype is converted by ``copy_``; at most ``WINDOW_BYTES`` (or one row) is mapped
        at a time.
        """
        info = self.header.tensors[name]
        shape = info.shape
        rows = shape[0] if shape else 1
        row_elems = 1
        for d in shape[1:]:
            row_elems *= d
        r0, r1 = (start, stop) if dim == 0 else (0, rows)
        dest_rows = dest.reshape(r1 - r0, -1) if dest.numel() else dest
        if dest.numel() == 0:
            return
        row_bytes = row_elems * info.torch_dtype.itemsize
        step = max(1, WINDOW_BYTES // max(row_bytes, 1))
        for lo in range(r0, r1, step):
            hi = min(r1, lo + step)
            src_off = info.start + lo * row_bytes
            aligned = src_off - src_off % mmap.ALLOCATIONGRANULARITY
            length = src_off - aligned + (hi - lo) * row_bytes
            with mmap.mmap(self._fd, length, access=mmap.ACCESS_COPY, offset=aligned) as mm:
                src = torch.frombuffer(
                    mm,
                    dtype=info.torch_dtype,
                    count=(hi - lo) * row_elems,
                    offset=src_off - aligned,
                ).view(hi - lo, row_elems)
                if dim == 1:
                    inner = row_elems // shape[1]
                    src = src[:, start * inner : stop * inner]
                dest_rows[lo - r0 : hi - r0].copy_(src)
                del src


def encode_tensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """Serialize tensors as a safetensors blob (spec §5.1): names sorted, header 8-aligned."""
    entries: dict[str, object] = {"__metadata__": dict(sorted(metadata.items()))}
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        if t.dtype not in TORCH_TO_ST:
            raise RuntimeLayerError(f"cannot serialize dtype {t.dtype}")
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        entries[name] = {
            "dtype": TORCH_TO_ST[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    header = json.dumps(entries, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + b"".join(chunks)


def decode_tensors(
    data: bytes, *, max_size: int, max_header: int = 1 << 16
) -> tuple[dict[str, torch.Tensor], dict[str, str], dict[str, object]]:
    """Parse a safetensors blob received from a peer; raises only :class:`FrameError`.

    Returns the tensors, the metadata and the header as JSON data (for schema validation).
    """
    if len(data) > max_size:
        raise FrameError(f"activation frame of {len(data)} bytes exceeds the {max_size}-byte limit")
    header = parse_header(data, len(data), fail=FrameError, max_header=max_header)
    out: dict[str, torch.Tensor] = {}
    for name, info in header.tensors.items():
        buf = bytearray(data[info.start : info.end])
        flat = (
            torch.frombuffer(buf, dtype=info.torch_dtype)
            if buf
            else torch.empty(0, dtype=info.torch_dtype)
        )
        out[name] = flat.view(info.shape)
    as_json: dict[str, object] = {"__metadata__": header.metadata}
    for name, info in header.tensors.items():
        begin = info.start - header.data_start
        as_json[name] = {
            "dtype": info.dtype,
            "shape": list(info.shape),
            "data_offsets": [begin, begin + info.end - info.start],
        }
    return out, header.metadata, as_json
