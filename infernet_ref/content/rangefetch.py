"""Byte-range reads over any block source, fetching and verifying only the blocks they touch.

spec/content.md §Range fetch. A :class:`BlockSource` returns *verified* blocks by CID (the
local store, or the exchange client, which hashes every block before handing it over).
:func:`read_range` walks the file DAG from the root with :func:`~.reader.plan_range`, visiting
only the children whose byte span overlaps ``[start, end)``, siblings concurrently (bounded).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from infernet_ref.content.cid import CID, parse_cid
from infernet_ref.content.dag import MAX_DEPTH
from infernet_ref.content.errors import UnixFsError
from infernet_ref.content.reader import file_size, plan_range
from infernet_ref.content.store import BlockStore
from infernet_ref.errors import LocalProtocolError

MAX_PARALLEL = 64


class BlockSource(Protocol):
    """Anything that returns the verified bytes of a block."""

    async def get_block(self, cid: CID) -> bytes: ...


class StoreSource:
    """A :class:`BlockSource` over a local :class:`BlockStore` (blocks re-hashed on read)."""

    def __init__(self, store: BlockStore) -> None:
        self.store = store

    async def get_block(self, cid: CID) -> bytes:
        return self.store.get(cid)


async def size_of(cid: CID | str, source: BlockSource) -> int:
    """Content bytes of the file ``cid``."""
    c = parse_cid(cid)
    return file_size(c, await source.get_block(c))


async def read_range(cid: CID | str, start: int, end: int | None, source: BlockSource) -> bytes:
    """Bytes ``[start, end)`` of file ``cid`` (``end=None``: to the end; clipped to the size)."""
    c = parse_cid(cid)
    root = await source.get_block(c)
    size = file_size(c, root)
    stop = size if end is None else min(end, size)
    if start < 0 or (end is not None and end < start):
        raise LocalProtocolError(f"bad range [{start}, {end})")
    if start >= stop:
        return b""
    sem = asyncio.Semaphore(MAX_PARALLEL)
    return await _read(c, root, start, stop, expect=None, source=source, sem=sem, depth=0)


async def _read(
    cid: CID,
    block: bytes,
    start: int,
    end: int,
    *,
    expect: int | None,
    source: BlockSource,
    sem: asyncio.Semaphore,
    depth: int,
) -> bytes:
    if depth > MAX_DEPTH:
        raise UnixFsError("file DAG too deep")
    plan = plan_range(cid, block, start, end, expect)
    if isinstance(plan, bytes):
        return plan

    async def child(span_cid: CID, s: int, e: int, size: int) -> bytes:
        async with sem:
            b = await source.get_block(span_cid)
        return await _read(span_cid, b, s, e, expect=size, source=source, sem=sem, depth=depth + 1)

    parts = await asyncio.gather(*(child(sp.cid, sp.start, sp.end, sp.size) for sp in plan))
    return b"".join(parts)
