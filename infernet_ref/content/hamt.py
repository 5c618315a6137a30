"""HAMT-sharded UnixFS directories: build, parse, look up and list (spec/content.md §3.1).

Theory of operation. A directory too large for one flat node is a hash array mapped trie of
dag-pb nodes with UnixFS ``Type=HAMTShard``, ``hashType=0x22`` (murmur3-x64-64) and
``fanout=256``. An entry name's *hash stream* is the big-endian 64-bit ``hamt_hash`` of the
name, then of ``name || 0x01``, ``name || 0x02``... concatenated; a node at depth ``d`` places
the entry in bucket ``bits [8d, 8d+8)`` of the stream (most significant first). A bucket that
holds one entry is a link named ``"%02X" % bucket + name``; a bucket where several entries
collide is a link named ``"%02X" % bucket`` to a sub-shard one level deeper. Links are sorted
(so by bucket); the node's ``Data`` field is the bucket bitfield as a minimal big-endian
integer (bit ``i`` set when bucket ``i`` is used). This is what go-unixfs and the JS
``ipfs-unixfs-importer`` write, byte for byte.

Reading is sans-I/O: :func:`lookup_steps` and :func:`list_steps` are generators that yield the
CID of each block they need and receive its bytes; :func:`run_sync` drives them over a block
store, async callers drive them over the network (see ``safetensors_fetch``). The parser checks
everything a hostile shard could get wrong (hash type, fanout, bitfield against links, bucket
labels, entry names in the wrong bucket, depth, cycles) and raises :class:`UnixFsError`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from infernet_ref.content.cid import CID, Codec
from infernet_ref.content.dagpb import PBLink, PBNode, decode_node, encode_node
from infernet_ref.content.errors import UnixFsError
from infernet_ref.content.murmur3 import HAMT_HASH_CODE, hamt_hash
from infernet_ref.content.unixfs import DataType, UnixFSData, decode_unixfs, encode_unixfs

FANOUT = 256
MAX_FANOUT_BITS = 10  # readers accept fanouts 2..1024 (power of two); builders write 256
MAX_SHARD_DEPTH = 64  # spec/content.md §Limits: no DAG deeper than 64 levels
_HEX = frozenset("0123456789ABCDEF")

BlockSink = Callable[[CID, bytes], object]
T = TypeVar("T")


class HashStream:
    """The infinite bit stream an entry name hashes to (UnixFS HAMT, go-unixfs ``hashBits``)."""

    __slots__ = ("_key", "_rounds")

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._rounds: list[int] = []

    def _round(self, r: int) -> int:
        while len(self._rounds) <= r:
            k = len(self._rounds)
            data = self._key if k == 0 else self._key + bytes((k & 0xFF,))
            self._rounds.append(int.from_bytes(hamt_hash(data), "big"))
        return self._rounds[r]

    def index(self, depth: int, bits: int) -> int:
        """Bucket index at ``depth`` for a fanout of ``2**bits``."""
        start, end = depth * bits, (depth + 1) * bits
        r0, r1 = start // 64, (end - 1) // 64
        acc = 0
        for r in range(r0, r1 + 1):
            acc = (acc << 64) | self._round(r)
        total = (r1 - r0 + 1) * 64
        shift = total - (end - r0 * 64)
        return (acc >> shift) & ((1 << bits) - 1)


@dataclass(frozen=True, slots=True)
class ShardEntry:
    """One directory entry found in a HAMT: its name and the link to it (name unprefixed)."""

    name: str
    link: PBLink


def _label_width(fanout: int) -> int:
    return len(f"{fanout - 1:X}")


def shard_data(bitfield: int) -> bytes:
    """The UnixFS Data of a shard node with the given bucket bitfield."""
    raw = bitfield.to_bytes(max(1, (bitfield.bit_length() + 7) // 8), "big")
    return encode_unixfs(
        UnixFSData(DataType.HAMT_SHARD, data=raw, hash_type=HAMT_HASH_CODE, fanout=FANOUT)
    )


@dataclass(frozen=True, slots=True)
class Built:
    cid: CID
    tsize: int


def build_shard(
    entries: Sequence[tuple[str, CID, int]], sink: BlockSink | None = None, *, depth: int = 0
) -> Built:
    """Build the HAMT over ``(name, cid, tsize)`` entries; every node goes to ``sink``."""
    items = [(name, cid, tsize, HashStream(name.encode("utf-8"))) for name, cid, tsize in entries]
    return _build(items, sink, depth)


def _build(
    items: list[tuple[str, CID, int, HashStream]], sink: BlockSink | None, depth: int
) -> Built:
    if depth >= MAX_SHARD_DEPTH:
        raise UnixFsError(f"HAMT deeper than {MAX_SHARD_DEPTH} levels (duplicate names?)")
    buckets: dict[int, list[tuple[str, CID, int, HashStream]]] = {}
    for it in items:
        buckets.setdefault(it[3].index(depth, 8), []).append(it)
    links: list[PBLink] = []
    bitfield = 0
    for idx in sorted(buckets):
        group = buckets[idx]
        bitfield |= 1 << idx
        if len(group) == 1:
            name, cid, tsize, _ = group[0]
            links.append(PBLink(cid, f"{idx:02X}{name}", tsize))
        else:
            sub = _build(group, sink, depth + 1)
            links.append(PBLink(sub.cid, f"{idx:02X}", sub.tsize))
    block = encode_node(links=links, data=shard_data(bitfield))
    cid = CID.for_block(Codec.DAG_PB, block)
    if sink is not None:
        sink(cid, block)
    return Built(cid, len(block) + sum(lk.tsize or 0 for lk in links))


@dataclass(frozen=True, slots=True)
class ShardLink:
    """A parsed shard link: bucket index, then either an entry name or ``None`` (sub-shard)."""

    index: int
    name: str | None
    link: PBLink


def parse_shard(
    cid: CID, node: PBNode, fs: UnixFSData, *, fanout: int | None = None
) -> tuple[int, list[ShardLink]]:
    """Check one shard node; return ``(bits, links)``. ``fanout`` = the parent's, if any."""
    if fs.type != DataType.HAMT_SHARD:
        raise UnixFsError(f"{cid} is a UnixFS {fs.type.name}, not a HAMT shard")
    if fs.hash_type != HAMT_HASH_CODE:
        raise UnixFsError(f"HAMT shard {cid}: hashType {fs.hash_type} is not murmur3-x64-64")
    f = fs.fanout
    if f is None or f < 2 or f & (f - 1) or f > 1 << MAX_FANOUT_BITS:
        raise UnixFsError(f"HAMT shard {cid}: fanout {f} is not a power of two in 2..1024")
    if fanout is not None and f != fanout:
        raise UnixFsError(f"HAMT sub-shard {cid}: fanout {f} differs from its parent's {fanout}")
    bitfield = int.from_bytes(fs.data or b"", "big")
    if bitfield >> f:
        raise UnixFsError(f"HAMT shard {cid}: bitfield has bits beyond fanout {f}")
    width = _label_width(f)
    out: list[ShardLink] = []
    last = -1
    for link in node.links:
        label = link.name or ""
        prefix = label[:width]
        if len(prefix) != width or not set(prefix) <= _HEX:
            raise UnixFsError(f"HAMT shard {cid}: link name {label!r} lacks a bucket prefix")
        idx = int(prefix, 16)
        if idx >= f or idx <= last:
            raise UnixFsError(f"HAMT shard {cid}: bucket {prefix} out of range or out of order")
        if not (bitfield >> idx) & 1:
            raise UnixFsError(f"HAMT shard {cid}: bucket {prefix} is not in the bitfield")
        last = idx
        rest = label[width:]
        if rest in (".", "..") or "/" in rest or "\0" in rest:
            raise UnixFsError(f"HAMT shard {cid}: invalid entry name {rest!r}")
        out.append(ShardLink(idx, rest or None, link))
    if bitfield.bit_count() != len(out):
        raise UnixFsError(
            f"HAMT shard {cid}: bitfield names {bitfield.bit_count()} buckets, {len(out)} links"
        )
    return f.bit_length() - 1, out


def _shard_node(cid: CID, block: bytes, fanout: int | None) -> tuple[int, list[ShardLink]]:
    if cid.codec != Codec.DAG_PB:
        raise UnixFsError(f"HAMT sub-shard {cid} is not a dag-pb block")
    node = decode_node(block)
    if node.data is None:
        raise UnixFsError(f"HAMT shard {cid} has no UnixFS Data")
    return parse_shard(cid, node, decode_unixfs(node.data), fanout=fanout)


def _check_path(name: str, path: list[int], bits: int, cid: CID) -> None:
    hs = HashStream(name.encode("utf-8"))
    for depth, idx in enumerate(path):
        if hs.index(depth, bits) != idx:
            raise UnixFsError(f"HAMT shard {cid}: entry {name!r} sits in the wrong bucket")


def lookup_steps(root: CID, block: bytes, name: str) -> Generator[CID, bytes, PBLink | None]:
    """Find ``name`` in the HAMT rooted at ``root``; returns its link or ``None``."""
    hs = HashStream(name.encode("utf-8"))
    cid, fanout, seen = root, None, {root}
    for depth in range(MAX_SHARD_DEPTH):
        bits, links = _shard_node(cid, block, fanout)
        fanout = 1 << bits
        want = hs.index(depth, bits)
        hit = next((sl for sl in links if sl.index == want), None)
        if hit is None:
            return None
        if hit.name is not None:
            return hit.link if hit.name == name else None
        cid = hit.link.cid
        if cid in seen:
            raise UnixFsError(f"HAMT under {root} links to itself")
        seen.add(cid)
        block = yield cid
    raise UnixFsError(f"HAMT under {root} deeper than {MAX_SHARD_DEPTH} levels")


def list_steps(root: CID, block: bytes) -> Generator[CID, bytes, list[ShardEntry]]:
    """Every entry of the HAMT rooted at ``root``, sorted by name bytes."""
    out: list[ShardEntry] = []
    names: set[str] = set()
    seen = {root}
    stack: list[tuple[CID, bytes | None, list[int], int | None]] = [(root, block, [], None)]
    while stack:
        cid, blk, path, fanout = stack.pop()
        if len(path) >= MAX_SHARD_DEPTH:
            raise UnixFsError(f"HAMT under {root} deeper than {MAX_SHARD_DEPTH} levels")
        if blk is None:
            blk = yield cid
        bits, links = _shard_node(cid, blk, fanout)
        subs: list[tuple[CID, bytes | None, list[int], int | None]] = []
        for sl in links:
            if sl.name is None:
                if sl.link.cid in seen:
                    raise UnixFsError(f"HAMT under {root} reaches {sl.link.cid} twice")
                seen.add(sl.link.cid)
                subs.append((sl.link.cid, None, [*path, sl.index], 1 << bits))
                continue
            _check_path(sl.name, [*path, sl.index], bits, cid)
            if sl.name in names:
                raise UnixFsError(f"HAMT under {root} names {sl.name!r} twice")
            names.add(sl.name)
            out.append(ShardEntry(sl.name, sl.link))
        stack.extend(reversed(subs))
    out.sort(key=lambda e: e.name.encode("utf-8"))
    return out


def run_sync(steps: Generator[CID, bytes, T], get: Callable[[CID], bytes]) -> T:
    """Drive a lookup/list generator over a synchronous block getter."""
    try:
        cid = next(steps)
        while True:
            cid = steps.send(get(cid))
    except StopIteration as stop:
        result: T = stop.value
        return result


async def run_async(steps: Generator[CID, bytes, T], get: Callable[[CID], Awaitable[bytes]]) -> T:
    """Drive a lookup/list generator over an asynchronous block getter (e.g. the exchange)."""
    try:
        cid = next(steps)
        while True:
            cid = steps.send(await get(cid))
    except StopIteration as stop:
        result: T = stop.value
        return result
