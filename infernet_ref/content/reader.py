"""Reading files and directories out of a UnixFS DAG (spec/content.md §Reading).

The core is :func:`plan_range`: given one verified block and a byte range relative to the file
that block roots, it returns either the bytes (a leaf, or inline Data) or the children to visit
with their sub-ranges, checking the UnixFS sizes for consistency. A sync driver reads from the
local block store; :mod:`infernet_ref.content.rangefetch` drives the same core over the network.
Exporting a directory checks every entry name so nothing escapes the output directory.
Directories are flat nodes or HAMT shards (:mod:`infernet_ref.content.hamt`); both are read
through :func:`directory_entries` and :func:`lookup_entry`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from infernet_ref.content.cid import CID, Codec
from infernet_ref.content.dag import MAX_DEPTH
from infernet_ref.content.dagpb import PBLink, PBNode, decode_node
from infernet_ref.content.errors import UnixFsError, UnsafePathError
from infernet_ref.content.hamt import list_steps, lookup_steps, run_sync
from infernet_ref.content.store import BlockStore
from infernet_ref.content.unixfs import DataType, UnixFSData, decode_unixfs


@dataclass(frozen=True, slots=True)
class Span:
    """Visit ``cid`` for its bytes ``[start, end)``; ``size`` is what the parent says it holds."""

    cid: CID
    start: int
    end: int
    size: int


def unixfs_of(cid: CID, block: bytes) -> tuple[PBNode, UnixFSData]:
    node = decode_node(block)
    if node.data is None:
        raise UnixFsError(f"dag-pb node {cid} has no UnixFS Data")
    return node, decode_unixfs(node.data)


def file_size(cid: CID, block: bytes) -> int:
    """Content bytes of the file rooted at ``cid`` (from its root block alone)."""
    if cid.codec == Codec.RAW:
        return len(block)
    _, fs = unixfs_of(cid, block)
    if fs.type not in (DataType.FILE, DataType.RAW):
        raise UnixFsError(f"{cid} is a UnixFS {fs.type.name}, not a file")
    return fs.file_size()


def plan_range(
    cid: CID, block: bytes, start: int, end: int, expect: int | None = None
) -> bytes | list[Span]:
    """Bytes ``[start, end)`` of the file node ``block``: either the bytes, or children to visit."""
    if cid.codec == Codec.RAW:
        if expect is not None and len(block) != expect:
            raise UnixFsError(f"leaf {cid} holds {len(block)} bytes, its parent says {expect}")
        return block[start:end]
    node, fs = unixfs_of(cid, block)
    if fs.type not in (DataType.FILE, DataType.RAW):
        raise UnixFsError(f"{cid} is a UnixFS {fs.type.name}, not a file")
    if expect is not None and fs.file_size() != expect:
        raise UnixFsError(f"node {cid} holds {fs.file_size()} bytes, its parent says {expect}")
    if len(fs.blocksizes) != len(node.links):
        raise UnixFsError(
            f"node {cid}: {len(node.links)} links but {len(fs.blocksizes)} blocksizes"
        )
    data = fs.data or b""
    if not node.links:
        return data[start:end]
    spans: list[Span] = []
    head = data[start:end] if start < len(data) else b""
    off = len(data)
    for link, size in zip(node.links, fs.blocksizes, strict=True):
        lo, hi = max(start, off), min(end, off + size)
        if lo < hi:
            spans.append(Span(link.cid, lo - off, hi - off, size))
        off += size
    if head:
        raise UnixFsError(f"node {cid} mixes inline Data with links (unsupported layout)")
    return spans


def read_range_local(store: BlockStore, root: CID, start: int, end: int) -> bytes:
    """Bytes ``[start, end)`` of a file whose blocks are all in ``store``."""
    out = bytearray()
    for piece in _iter_range(store, root, start, end, expect=None, depth=0):
        out += piece
    return bytes(out)


def _iter_range(
    store: BlockStore, cid: CID, start: int, end: int, *, expect: int | None, depth: int
) -> Iterator[bytes]:
    if depth > MAX_DEPTH:
        raise UnixFsError("file DAG too deep")
    plan = plan_range(cid, store.get(cid), start, end, expect)
    if isinstance(plan, bytes):
        yield plan
        return
    for s in plan:
        yield from _iter_range(store, s.cid, s.start, s.end, expect=s.size, depth=depth + 1)


def iter_file(store: BlockStore, root: CID) -> Iterator[bytes]:
    """The whole file's bytes, in order, one leaf at a time."""
    size = file_size(root, store.get(root))
    return _iter_range(store, root, 0, size, expect=None, depth=0)


def safe_join(base: Path, name: str) -> Path:
    """``base / name`` for one directory-entry name from a DAG; refuse anything that escapes."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise UnsafePathError(f"directory entry name {name!r} would escape the output directory")
    return base / name


def export_to_path(store: BlockStore, root: CID, out: str | os.PathLike[str]) -> None:
    """Write the file or directory tree ``root`` to ``out`` (written to a temp name, then renamed)."""
    _export(store, root, Path(out), 0)


def directory_entries(store: BlockStore, cid: CID) -> list[tuple[str, PBLink]]:
    """``(name, link)`` of every entry of a flat or HAMT-sharded directory."""
    block = store.get(cid)
    node, fs = unixfs_of(cid, block)
    if fs.type == DataType.DIRECTORY:
        return [(link.name or "", link) for link in node.links]
    if fs.type == DataType.HAMT_SHARD:
        return [(e.name, e.link) for e in run_sync(list_steps(cid, block), store.get)]
    raise UnixFsError(f"{cid} is a UnixFS {fs.type.name}, not a directory")


def lookup_entry(store: BlockStore, cid: CID, name: str) -> PBLink | None:
    """The link named ``name`` in a flat or HAMT-sharded directory, or ``None``."""
    block = store.get(cid)
    node, fs = unixfs_of(cid, block)
    if fs.type == DataType.DIRECTORY:
        return next((link for link in node.links if link.name == name), None)
    if fs.type == DataType.HAMT_SHARD:
        return run_sync(lookup_steps(cid, block, name), store.get)
    raise UnixFsError(f"{cid} is a UnixFS {fs.type.name}, not a directory")


def _export(store: BlockStore, cid: CID, out: Path, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise UnixFsError("directory tree too deep")
    block = store.get(cid)
    if depth > 0 and (out.is_symlink() or out.exists()):
        raise UnsafePathError(f"{out} already exists (duplicate entry name or link in the DAG)")
    if cid.codec == Codec.DAG_PB:
        _, fs = unixfs_of(cid, block)
        if fs.type in (DataType.DIRECTORY, DataType.HAMT_SHARD):
            if out.is_symlink():
                raise UnsafePathError(f"{out} is a symbolic link; refusing to write through it")
            out.mkdir(parents=False, exist_ok=True)
            entries = directory_entries(store, cid)
            names = [name for name, _ in entries]
            if len(set(names)) != len(names):
                raise UnsafePathError(f"directory {cid} has duplicate entry names")
            for name, link in entries:
                _export(store, link.cid, safe_join(out, name), depth + 1)
            return
        if fs.type == DataType.SYMLINK:
            out.symlink_to(os.fsdecode(fs.data or b""))
            return
    tmp = out.with_name(out.name + ".part")
    try:
        with open(tmp, "wb") as f:
            for piece in iter_file(store, cid):
                f.write(piece)
        os.replace(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def resolve_path(store: BlockStore, root: CID, path: str) -> CID:
    """Follow ``a/b/c`` through flat or HAMT-sharded directory nodes from ``root``."""
    cid = root
    for part in [p for p in path.split("/") if p]:
        link = lookup_entry(store, cid, part)
        if link is None:
            raise UnixFsError(f"no entry {part!r} in directory {cid}")
        cid = link.cid
    return cid
