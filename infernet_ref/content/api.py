"""The content layer's public one-call API (notes/CONTRACTS.md §Content API).

``cid_for_bytes`` and ``add_path`` build DAGs; ``fetch`` pulls a whole DAG from providers into a
store; ``read_range`` reads bytes of a file from a store or from providers.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from infernet_ref.content.builder import build_path
from infernet_ref.content.cid import CID, parse_cid
from infernet_ref.content.exchange.client import ExchangeClient, FetchStats
from infernet_ref.content.rangefetch import BlockSource, StoreSource
from infernet_ref.content.rangefetch import read_range as _read_range
from infernet_ref.content.store import BlockStore


def add_path(
    path: str | os.PathLike[str],
    store: BlockStore,
    *,
    pin: bool = True,
    include_hidden: bool = False,
) -> str:
    """Add a file or folder to ``store`` (pinned by default); return its root CID."""
    root = build_path(path, store.sink, include_hidden=include_hidden).cid
    if pin:
        store.pin(root)
    return str(root)


async def fetch(
    cid: CID | str,
    providers: list[str],
    store: BlockStore,
    *,
    progress: Callable[[int], None] | None = None,
    on_bad_peer: Callable[[str, str], None] | None = None,
) -> FetchStats:
    """Fetch the whole DAG ``cid`` from ``providers`` (ws URLs of /content) into ``store``."""
    async with ExchangeClient(providers, store=store, on_bad_peer=on_bad_peer) as client:
        return await client.fetch_dag(parse_cid(cid), progress=progress)


async def read_range(
    cid: CID | str,
    start: int,
    end: int | None,
    *,
    store: BlockStore | None = None,
    providers: list[str] | None = None,
    source: BlockSource | None = None,
) -> bytes:
    """Bytes ``[start, end)`` of file ``cid``, from ``source``, ``store`` or ``providers``."""
    if source is not None:
        return await _read_range(cid, start, end, source)
    if providers:
        async with ExchangeClient(providers, store=store) as client:
            return await _read_range(cid, start, end, client)
    if store is None:
        raise ValueError("read_range needs a store, providers or a source")
    return await _read_range(cid, start, end, StoreSource(store))
