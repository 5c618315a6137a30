"""Streaming UnixFS DAG builder for the IPFS ``unixfs-v1-2025`` profile (IPIP-499).

spec/content.md §File DAG and §Directories. Theory of operation: leaves are 1 MiB raw blocks
(CIDv1, codec raw). The balanced layout groups leaves 1024 at a time into a dag-pb File node,
then groups those nodes 1024 at a time, and so on until one node remains; at the end every
level's partial group is closed bottom-up, and a level whose single item is the only thing left
becomes the root. A file of one chunk is that raw leaf itself. We keep one list of at most 1024
pending links per level, so memory is constant in the file size (about 50 KiB per level plus
the hashing window). Every block goes to an optional ``sink(cid, bytes)`` (e.g. a block store).

Directories are flat dag-pb nodes with UnixFS type Directory and links sorted by name, unless
the JS importer's ``block-bytes`` size estimate crosses the profile's 256 KiB threshold while the
entries are added in walk order; then the directory is a HAMT (:mod:`infernet_ref.content.hamt`).
The estimate (spec/content.md §3.1) is the exact flat node size of the entries whose CID is known
when they are added: files, symlinks and empty directories. A directory with entries counts only
while it is the empty-directory placeholder the walk adds before its first entry.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from infernet_ref.content.chunker import CHUNK_SIZE, ByteSource, hashed_chunks, iter_chunks
from infernet_ref.content.cid import CID, Codec
from infernet_ref.content.dagpb import PBLink, encode_link, encode_node
from infernet_ref.content.errors import PathError
from infernet_ref.content.hamt import build_shard
from infernet_ref.content.unixfs import (
    DIRECTORY_DATA,
    DataType,
    UnixFSData,
    encode_unixfs,
    file_node_data,
)
from infernet_ref.content.varint import encode_uvarint

MAX_LINKS_PER_NODE = 1024
SHARD_THRESHOLD = 262_144  # unixfs-v1-2025: flat directories up to 256 KiB ("block-bytes")
EMPTY_DIR_BLOCK = encode_node(data=DIRECTORY_DATA)  # 4 bytes: the empty directory
EMPTY_DIR_CID = CID.for_block(Codec.DAG_PB, EMPTY_DIR_BLOCK)
DIR_DATA_FIELD_SIZE = 4  # PBNode.Data of a Directory without mode/mtime: 0a 02 08 01

BlockSink = Callable[[CID, bytes | bytearray | memoryview], object]


@dataclass(frozen=True, slots=True)
class DagEntry:
    """A built node: its CID, cumulative DAG size (Tsize) and content bytes under it.

    ``nonempty_dir`` marks a directory that has entries: the shard-size estimate of its parent
    counts it only as the empty-directory placeholder (spec/content.md §3.1).
    """

    cid: CID
    tsize: int
    filesize: int
    nonempty_dir: bool = False


class FileBuilder:
    """Incremental balanced-layout builder; feed leaves in order with :meth:`add_leaf`."""

    def __init__(self, sink: BlockSink | None = None, max_links: int = MAX_LINKS_PER_NODE) -> None:
        self._sink = sink
        self._max = max_links
        self._levels: list[list[DagEntry]] = [[]]
        self.leaves = 0
        self.bytes = 0

    def add_leaf(self, chunk: bytes | bytearray | memoryview, digest: bytes | None = None) -> None:
        """Add one raw leaf (a chunk of the file, in order)."""
        cid = CID.v1(Codec.RAW, digest) if digest is not None else CID.for_block(Codec.RAW, chunk)
        if self._sink is not None:
            self._sink(cid, chunk)
        self.leaves += 1
        self.bytes += len(chunk)
        self._push(0, DagEntry(cid, len(chunk), len(chunk)))

    def _push(self, level: int, entry: DagEntry) -> None:
        while True:
            if level == len(self._levels):
                self._levels.append([])
            items = self._levels[level]
            items.append(entry)
            if len(items) < self._max:
                return
            self._levels[level] = []
            entry = self._reduce(items)
            level += 1

    def _reduce(self, items: list[DagEntry]) -> DagEntry:
        kept = [e for e in items if e.filesize > 0]
        block = encode_node(
            links=[PBLink(e.cid, "", e.tsize) for e in kept],
            data=file_node_data([e.filesize for e in kept]),
        )
        cid = CID.for_block(Codec.DAG_PB, block)
        if self._sink is not None:
            self._sink(cid, block)
        return DagEntry(cid, len(block) + sum(e.tsize for e in kept), sum(e.filesize for e in kept))

    def finish(self) -> DagEntry:
        """Close every partial group bottom-up and return the root."""
        if self.leaves == 0:
            self.add_leaf(b"")
        level = 0
        while True:
            items = self._levels[level]
            higher = any(self._levels[j] for j in range(level + 1, len(self._levels)))
            if not higher and len(items) == 1:
                return items[0]
            if items:
                self._levels[level] = []
                self._push(level + 1, self._reduce(items))
            level += 1


def build_file(
    source: ByteSource, sink: BlockSink | None = None, *, workers: int | None = None
) -> DagEntry:
    """Build the file DAG of ``source`` (bytes, binary file or iterable of bytes) in constant memory."""
    fb = FileBuilder(sink)
    for chunk, digest in hashed_chunks(iter_chunks(source, CHUNK_SIZE), workers):
        fb.add_leaf(chunk, digest)
    return fb.finish()


def cid_for_bytes(data: bytes | bytearray | memoryview) -> str:
    """The profile's root CID of a byte string (``ipfs add --cid-version=1 --raw-leaves ...``)."""
    return str(build_file(data, workers=1 if len(data) <= 4 * CHUNK_SIZE else None).cid)


def cid_for_stream(source: ByteSource, *, workers: int | None = None) -> str:
    """The profile's root CID of a stream (file object or iterable of bytes)."""
    return str(build_file(source, workers=workers).cid)


def directory_node(entries: dict[str, DagEntry]) -> bytes:
    """Serialize a flat UnixFS directory of ``name -> entry`` (links sorted by name bytes)."""
    for name in entries:
        _check_entry_name(name)
    return encode_node(
        links=[PBLink(e.cid, name, e.tsize) for name, e in entries.items()],
        data=DIRECTORY_DATA,
    )


def _link_size(cid: CID, name: str, tsize: int) -> int:
    body = len(encode_link(PBLink(cid, name, tsize)))
    return 1 + len(encode_uvarint(body)) + body


def needs_shard(entries: dict[str, DagEntry], threshold: int = SHARD_THRESHOLD) -> bool:
    """Whether ``ipfs-unixfs-importer`` (``block-bytes``) shards these entries, added in order.

    spec/content.md §3.1: after each entry is added the estimate is compared with
    ``threshold``; a directory with entries is, at that moment, the empty-directory placeholder
    and is dropped from the estimate when its own first entry arrives.
    """
    estimate = DIR_DATA_FIELD_SIZE
    for name, e in entries.items():
        if e.nonempty_dir:
            if estimate + _link_size(EMPTY_DIR_CID, name, len(EMPTY_DIR_BLOCK)) > threshold:
                return True
            continue
        estimate += _link_size(e.cid, name, e.tsize)
        if estimate > threshold:
            return True
    return False


def _check_entry_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise PathError(f"invalid directory entry name {name!r}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise PathError(f"file name {name!r} is not valid UTF-8") from None


def build_directory(
    entries: dict[str, DagEntry],
    sink: BlockSink | None = None,
    *,
    threshold: int = SHARD_THRESHOLD,
) -> DagEntry:
    """Build a directory over already-built children (in the order given): flat or a HAMT."""
    if needs_shard(entries, threshold):
        for name in entries:
            _check_entry_name(name)
        built = build_shard([(n, e.cid, e.tsize) for n, e in entries.items()], sink)
        return DagEntry(built.cid, built.tsize, 0, nonempty_dir=True)
    block = directory_node(entries)
    cid = CID.for_block(Codec.DAG_PB, block)
    if sink is not None:
        sink(cid, block)
    tsize = len(block) + sum(e.tsize for e in entries.values())
    return DagEntry(cid, tsize, 0, nonempty_dir=bool(entries))


def build_symlink(target: str, sink: BlockSink | None = None) -> DagEntry:
    """A UnixFS symlink node (type Symlink, Data = target path bytes)."""
    data = encode_unixfs(UnixFSData(DataType.SYMLINK, data=os.fsencode(target)))
    block = encode_node(data=data)
    cid = CID.for_block(Codec.DAG_PB, block)
    if sink is not None:
        sink(cid, block)
    return DagEntry(cid, len(block), 0)


def build_path(
    path: str | os.PathLike[str],
    sink: BlockSink | None = None,
    *,
    include_hidden: bool = False,
    on_bytes: Callable[[int], None] | None = None,
    workers: int | None = None,
    shard_threshold: int = SHARD_THRESHOLD,
) -> DagEntry:
    """Build a file or a directory tree like ``ipfs add -r`` under the profile.

    ``shard_threshold`` is the importer's ``shardSplitThresholdBytes`` (the profile's 256 KiB
    unless a test asks for another).
    Dotfiles are skipped unless ``include_hidden`` (as ``ipfs add`` without ``--hidden``).
    Symbolic links become UnixFS symlink nodes; other special files are a :class:`PathError`.
    """
    p = Path(path)
    st = p.lstat()
    if stat.S_ISLNK(st.st_mode):
        return build_symlink(os.readlink(p), sink)
    if stat.S_ISREG(st.st_mode):
        with p.open("rb", buffering=0) as f:
            fb = FileBuilder(sink)
            small = st.st_size <= 4 * CHUNK_SIZE  # a hashing thread pool per small file costs more
            for chunk, digest in hashed_chunks(iter_chunks(f), 1 if small else workers):
                fb.add_leaf(chunk, digest)
                if on_bytes is not None:
                    on_bytes(len(chunk))
            return fb.finish()
    if stat.S_ISDIR(st.st_mode):
        children: dict[str, DagEntry] = {}
        for child in sorted(os.listdir(p)):
            if child.startswith(".") and not include_hidden:
                continue
            children[child] = build_path(
                p / child,
                sink,
                include_hidden=include_hidden,
                on_bytes=on_bytes,
                workers=workers,
                shard_threshold=shard_threshold,
            )
        return build_directory(children, sink, threshold=shard_threshold)
    raise PathError(f"{p} is neither a regular file, a directory nor a symlink")
