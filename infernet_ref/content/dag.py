"""DAG navigation shared by the store (GC), CAR export, the exchange client and range reads.

spec/content.md §DAG. A raw block has no links; a dag-pb block's links are its PBLinks. Walks
are iterative with a seen-set, so shared sub-DAGs are visited once and depth is bounded by
``MAX_DEPTH`` (a hostile DAG cannot exhaust the stack). Hashes make true cycles impossible,
but a walk over blocks that were *not* verified could still see one; the seen-set covers that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from infernet_ref.content.cid import CID, Codec
from infernet_ref.content.dagpb import decode_node
from infernet_ref.content.errors import UnixFsError

MAX_DEPTH = 64
MAX_BLOCK_SIZE = 2 * 1024 * 1024  # spec/content.md §Limits


def block_links(cid: CID, block: bytes) -> list[CID]:
    """The CIDs a block links to (none for raw blocks)."""
    if cid.codec == Codec.RAW:
        return []
    return [link.cid for link in decode_node(block).links]


def walk(root: CID, get: Callable[[CID], bytes | None]) -> Iterator[tuple[CID, bytes | None]]:
    """Depth-first pre-order walk from ``root``; ``get`` returns a block or ``None`` if absent.

    Yields ``(cid, block_or_None)``; absent blocks are yielded once and not descended into.
    """
    seen: set[CID] = set()
    stack: list[tuple[CID, int]] = [(root.to_v1(), 0)]
    while stack:
        cid, depth = stack.pop()
        if cid in seen:
            continue
        seen.add(cid)
        if depth > MAX_DEPTH:
            raise UnixFsError(f"DAG deeper than {MAX_DEPTH} levels under {root}")
        block = get(cid)
        yield cid, block
        if block is not None:
            children = block_links(cid, block)
            stack.extend((c.to_v1(), depth + 1) for c in reversed(children))
