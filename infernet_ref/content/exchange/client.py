"""asyncio adapter: fetch blocks from several providers in parallel (spec/content.md §7.7).

Theory of operation. :class:`ExchangeClient` keeps one WebSocket and one :class:`ClientSession`
per provider. :meth:`ExchangeClient.get_block` registers a request (one future per CID, shared
by concurrent callers) in a priority queue; ``_pump`` assigns queued requests to the provider
with the lowest expected completion time, ``(outstanding + 1) / throughput``, among live
providers that have not answered dont_have for that CID, keeping at most ``window`` wants in
flight per provider. Each provider's reader parses frames on the loop, hashes blocks on a worker
thread, and resolves futures; a provider that sends a bad block, a malformed message, or makes no
progress for ``timeout`` seconds is dropped and reported, and its outstanding wants return to the
queue. :meth:`fetch_dag` walks a whole DAG, skipping blocks already in the store (resume).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import itertools
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from infernet_ref.content.cid import CID, Codec, parse_cid
from infernet_ref.content.dag import block_links
from infernet_ref.content.errors import ContentError, FetchError
from infernet_ref.content.exchange.session import (
    POLICY_VIOLATION,
    BlockReceived,
    ClientSession,
    DontHaveReceived,
    ErrorReceived,
)
from infernet_ref.content.exchange.wire import WantEntry
from infernet_ref.content.store import BlockStore
from infernet_ref.errors import InfernetError
from infernet_ref.ws import ConnectionClosed, WebSocket, connect

log = logging.getLogger("infernet.content.client")
MAX_MESSAGE = 4 * 1024 * 1024
PRIOR_RATE = 64e6  # bytes/s assumed before a provider has delivered anything
BLOCK_ESTIMATE = 1 << 20
OFFLOAD_MIN_CPUS = 2  # A/B on a loaded 2-core box: threads +12-15% client, +15-30% server


@dataclass
class _Provider:
    url: str
    ws: WebSocket
    session: ClientSession = field(default_factory=ClientSession)
    rate: float = PRIOR_RATE
    last_progress: float = 0.0
    alive: bool = True
    received: int = 0
    outq: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def cost(self) -> float:
        return (len(self.session.inflight) + 1) * BLOCK_ESTIMATE / max(self.rate, 1.0)


@dataclass
class _Request:
    cid: CID
    priority: int
    future: asyncio.Future[bytes]
    tried: set[str] = field(default_factory=set)
    assigned: str | None = None


@dataclass
class FetchStats:
    blocks_fetched: int = 0
    blocks_local: int = 0
    bytes_fetched: int = 0
    per_provider: dict[str, int] = field(default_factory=dict)


class ExchangeClient:
    """Parallel, verified block fetching from ``providers`` (``ws://.../content`` URLs)."""

    def __init__(
        self,
        providers: list[str],
        *,
        store: BlockStore | None = None,
        window: int = 32,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        on_bad_peer: Callable[[str, str], None] | None = None,
        cache_bytes: int = 64 * 1024 * 1024,
        offload: bool | None = None,
    ) -> None:
        self.urls = list(dict.fromkeys(providers))
        self.store = store
        self.window = window
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.on_bad_peer = on_bad_peer
        self.bad_peers: list[tuple[str, str]] = []
        self.providers: dict[str, _Provider] = {}
        self._requests: dict[CID, _Request] = {}
        self._queue: list[tuple[int, int, CID]] = []
        self._seq = itertools.count()
        self._watchdog: asyncio.Task[None] | None = None
        self.stats = FetchStats()
        self.cache_bytes = cache_bytes
        # Hash and write blocks on worker threads (hashlib and file writes release the GIL)
        # whenever there is a second core; on one core the hand-off only costs.
        self.offload = (os.cpu_count() or 1) >= OFFLOAD_MIN_CPUS if offload is None else offload
        self._cache: OrderedDict[CID, bytes] = OrderedDict()
        self._cached = 0

    def _remember(self, cid: CID, data: bytes) -> None:
        """Keep recently fetched blocks (LRU, bounded) so range reads reuse roots and leaves."""
        if self.store is not None or len(data) > self.cache_bytes or cid in self._cache:
            return
        self._cache[cid] = data
        self._cached += len(data)
        while self._cached > self.cache_bytes:
            _, old = self._cache.popitem(last=False)
            self._cached -= len(old)

    async def __aenter__(self) -> ExchangeClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect to every provider; providers that fail to connect are reported and skipped."""
        results = await asyncio.gather(
            *(self._connect(u) for u in self.urls), return_exceptions=True
        )
        for url, res in zip(self.urls, results, strict=True):
            if isinstance(res, BaseException):
                self._report(url, f"connect failed: {res}")
        if not self.providers:
            raise FetchError(f"no provider reachable among {self.urls}")
        self._watchdog = asyncio.create_task(self._watch())

    async def _connect(self, url: str) -> None:
        ws = await asyncio.wait_for(
            connect(
                url,
                compression=False,
                max_message_size=MAX_MESSAGE,
                open_timeout=self.connect_timeout,
            ),
            self.connect_timeout,
        )
        p = _Provider(url, ws, last_progress=time.monotonic())
        p.tasks = [asyncio.create_task(self._reader(p)), asyncio.create_task(self._writer(p))]
        self.providers[url] = p

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        for p in list(self.providers.values()):
            await self._drop(p, None, code=1000)
        for req in list(self._requests.values()):
            if not req.future.done():
                req.future.set_exception(FetchError("exchange client closed"))
        self._requests.clear()

    # -- requests --------------------------------------------------------------------------
    async def get_block(self, cid: CID | str, priority: int = 1) -> bytes:
        """The verified bytes of ``cid`` (from the store if present, else from a provider)."""
        c = parse_cid(cid).to_v1()
        local = self._local(c)
        if local is not None:
            return local
        hit = self._cache.get(c)
        if hit is not None:
            self._cache.move_to_end(c)
            return hit
        req = self._requests.get(c)
        if req is None:
            fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            req = _Request(c, priority, fut)
            self._requests[c] = req
            heapq.heappush(self._queue, (-priority, next(self._seq), c))
            self._pump()
        return await asyncio.shield(req.future)

    def _local(self, c: CID) -> bytes | None:
        """The block from the store; a corrupt or missing stored copy is dropped (refetched)."""
        if self.store is None or not self.store.has(c):
            return None
        try:
            return self.store.get(c)
        except ContentError as exc:
            log.warning("dropping bad stored copy of %s: %s", c, exc)
            self.store.delete(c)
            return None

    def cancel(self, cids: list[CID]) -> None:
        """Give up on ``cids``: fail their waiters and send content.cancel to their providers."""
        by_provider: dict[str, list[CID]] = {}
        for c in cids:
            req = self._requests.pop(c, None)
            if req is None:
                continue
            if not req.future.done():
                req.future.cancel()
            p = self.providers.get(req.assigned or "")
            if p is not None and p.alive and c in p.session.inflight:
                by_provider.setdefault(p.url, []).append(c)
        for url, cs in by_provider.items():
            p = self.providers[url]
            for i in range(0, len(cs), 1024):
                p.outq.put_nowait(p.session.cancel(cs[i : i + 1024]))
        self._pump()

    def _alive(self) -> list[_Provider]:
        return [p for p in self.providers.values() if p.alive]

    def _pump(self) -> None:
        """Assign queued requests to providers (lowest expected completion time first)."""
        alive = self._alive()
        if not alive:
            self._fail_all("every provider failed or was dropped")
            return
        batches: dict[str, list[WantEntry]] = {}
        deferred: list[tuple[int, int, CID]] = []
        # Refill a provider only once half its window has drained, so wants go out in batches
        # (fewer, larger content.want messages for the server to validate).
        room = {
            p.url: self.window - len(p.session.inflight)
            if len(p.session.inflight) <= self.window // 2
            else 0
            for p in alive
        }
        while self._queue and any(len(batches.get(u, ())) < r for u, r in room.items()):
            item = heapq.heappop(self._queue)
            req = self._requests.get(item[2])
            if req is None or req.future.done() or req.assigned is not None:
                continue
            candidates = [p for p in alive if p.url not in req.tried]
            if not candidates:
                self._requests.pop(req.cid, None)
                req.future.set_exception(
                    FetchError(f"no provider has {req.cid} (tried {sorted(req.tried)})")
                )
                continue
            free = [p for p in candidates if len(batches.get(p.url, ())) < room[p.url]]
            if not free:
                deferred.append(item)  # only providers it has not tried are busy: wait
                continue
            best = min(
                free, key=lambda p: p.cost() + len(batches.get(p.url, ())) * BLOCK_ESTIMATE / p.rate
            )
            req.assigned = best.url
            batches.setdefault(best.url, []).append(WantEntry(req.cid, req.priority))
        for item in deferred:
            heapq.heappush(self._queue, item)
        for url, entries in batches.items():
            p = self.providers[url]
            for i in range(0, len(entries), 1024):
                p.outq.put_nowait(p.session.want(entries[i : i + 1024]))

    def _requeue(self, cid: CID, tried: str | None) -> None:
        req = self._requests.get(cid)
        if req is None or req.future.done():
            return
        req.assigned = None
        if tried is not None:
            req.tried.add(tried)
        heapq.heappush(self._queue, (-req.priority, next(self._seq), cid))

    def _fail_all(self, why: str) -> None:
        for req in list(self._requests.values()):
            if not req.future.done():
                req.future.set_exception(FetchError(why))
        self._requests.clear()
        self._queue.clear()

    # -- per-provider tasks ----------------------------------------------------------------
    async def _writer(self, p: _Provider) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await p.ws.send(await p.outq.get())

    async def _reader(self, p: _Provider) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for msg in p.ws:
                if isinstance(msg, str):
                    self._on_text(p, msg)
                    continue
                parsed = p.session.parse_block(msg)
                if parsed is None:
                    continue
                if self.offload:
                    digest = await loop.run_in_executor(None, _sha256, parsed[1])
                else:
                    digest = _sha256(parsed[1])
                ev = p.session.finish_block(parsed[0], parsed[1], digest)
                if ev is not None:
                    await self._on_block(p, ev)
            await self._drop(p, None if not p.session.inflight else "provider closed mid-transfer")
        except (ContentError, InfernetError) as exc:
            await self._drop(p, f"protocol violation: {exc}")
        except ConnectionClosed:
            await self._drop(p, None if not p.session.inflight else "connection lost mid-transfer")

    def _on_text(self, p: _Provider, text: str) -> None:
        for ev in p.session.receive_text(text):
            if isinstance(ev, DontHaveReceived):
                p.last_progress = time.monotonic()
                for c in ev.cids:
                    self._requeue(c, p.url)
                self._pump()
            elif isinstance(ev, ErrorReceived) and ev.fatal:
                raise FetchError(f"provider error {ev.code}: {ev.message}")

    async def _on_block(self, p: _Provider, ev: BlockReceived) -> None:
        now = time.monotonic()
        dt = max(now - p.last_progress, 1e-4)
        p.rate = 0.7 * p.rate + 0.3 * (len(ev.data) / dt)
        p.last_progress = now
        p.received += len(ev.data)
        if self.store is not None:
            if self.offload:
                await asyncio.get_running_loop().run_in_executor(None, self._put, ev.cid, ev.data)
            else:
                self._put(ev.cid, ev.data)
        self._remember(ev.cid, ev.data)
        req = self._requests.pop(ev.cid, None)
        self.stats.blocks_fetched += 1
        self.stats.bytes_fetched += len(ev.data)
        self.stats.per_provider[p.url] = self.stats.per_provider.get(p.url, 0) + len(ev.data)
        if req is not None and not req.future.done():
            req.future.set_result(ev.data)
        self._pump()

    def _put(self, cid: CID, data: bytes) -> None:
        assert self.store is not None
        self.store.put(cid, data, verify=False)  # hashed by finish_block

    def _report(self, url: str, reason: str) -> None:
        log.warning("dropping provider %s: %s", url, reason)
        self.bad_peers.append((url, reason))
        if self.on_bad_peer is not None:
            self.on_bad_peer(url, reason)

    async def _drop(
        self, p: _Provider, reason: str | None, *, code: int = POLICY_VIOLATION
    ) -> None:
        if not p.alive:
            return
        p.alive = False
        if reason is not None:
            self._report(p.url, reason)
        for cid in list(p.session.inflight):
            self._requeue(cid, None)
        p.session.inflight.clear()
        current = asyncio.current_task()
        for t in p.tasks:
            if t is not current:
                t.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(p.ws.close(code, (reason or "done")[:100]), 2.0)
        if self._requests:
            self._pump()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.timeout / 4))
            now = time.monotonic()
            for p in self._alive():
                if p.session.inflight and now - p.last_progress > self.timeout:
                    await self._drop(p, f"no progress for {self.timeout:.0f}s")

    # -- whole DAGs ------------------------------------------------------------------------
    async def fetch_dag(
        self,
        root: CID | str,
        *,
        progress: Callable[[int], None] | None = None,
        concurrency: int | None = None,
    ) -> FetchStats:
        """Fetch every block under ``root`` into the store (blocks already there are reused)."""
        if self.store is None:
            raise FetchError("fetch_dag needs a block store (local error)")
        store = self.store
        sem = asyncio.Semaphore(concurrency or self.window * max(1, len(self.providers)) * 2)
        mine: set[CID] = set()

        async def visit(cid: CID, tg: asyncio.TaskGroup) -> None:
            async with sem:
                local = self._local(cid)
                if local is not None:
                    block = local
                    self.stats.blocks_local += 1
                else:
                    mine.add(cid)
                    block = await self.get_block(cid, 10 if cid.codec == Codec.DAG_PB else 1)
                    mine.discard(cid)
            if progress is not None and cid.codec == Codec.RAW:
                progress(len(block))
            for child in block_links(cid, block):
                tg.create_task(visit(child.to_v1(), tg))

        try:
            await _walk_group(root, visit)
        except asyncio.CancelledError:
            self.cancel(list(mine))  # interrupted: tell providers to stop sending
            raise
        store.pin(parse_cid(root))
        return self.stats


async def _walk_group(
    root: CID | str, visit: Callable[[CID, asyncio.TaskGroup], Coroutine[Any, Any, None]]
) -> None:
    try:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(visit(parse_cid(root).to_v1(), tg))
    except* FetchError as eg:
        raise eg.exceptions[0] from None
    except* ContentError as eg:
        raise eg.exceptions[0] from None


def _sha256(view: memoryview) -> bytes:
    return hashlib.sha256(view).digest()
