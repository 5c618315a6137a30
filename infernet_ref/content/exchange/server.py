"""asyncio adapter: serve the content exchange from a :class:`BlockStore` on a WebSocket.

spec/content.md §7. :meth:`ContentServer.handle` drives one :class:`ServerSession` per
connection: a reader task feeds text messages to the session, a sender loop pops the
highest-priority want, reads (and re-hashes) the block on a worker thread, and sends the block
frame or the have/dont_have answer. Backpressure comes from ``await ws.send``. A node mounts
``handle`` on its ``/content`` path; :func:`serve_content` runs a standalone server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from infernet_ref.content.cid import CID
from infernet_ref.content.errors import ContentError
from infernet_ref.content.exchange.client import OFFLOAD_MIN_CPUS
from infernet_ref.content.exchange.session import Fatal, SendText, ServerSession
from infernet_ref.content.exchange.wire import block_frame_prefix
from infernet_ref.content.store import BlockStore
from infernet_ref.ws import ConnectionClosed, Server, WebSocket, serve

log = logging.getLogger("infernet.content.server")
CONTENT_PATH = "/content"
MAX_MESSAGE = 4 * 1024 * 1024


@dataclass
class ServerStats:
    connections: int = 0
    blocks_sent: int = 0
    bytes_sent: int = 0
    dont_have: int = 0
    refused: int = 0


class ContentServer:
    """Serves blocks of ``store`` to exchange clients."""

    def __init__(
        self,
        store: BlockStore,
        *,
        max_wants: int = 4096,
        on_send: Callable[[CID, int], None] | None = None,
        offload: bool | None = None,
    ) -> None:
        self.store = store
        self.max_wants = max_wants
        self.on_send = on_send
        self.stats = ServerStats()
        self.offload = (os.cpu_count() or 1) >= OFFLOAD_MIN_CPUS if offload is None else offload

    def _load(self, cid: CID) -> tuple[bytearray, int] | None:
        """``(frame, block size)`` for ``cid`` (the block read in place after its header)."""
        sizes: list[int] = []

        def prefix(size: int) -> bytes:
            sizes.append(size)
            return block_frame_prefix(cid, size)

        try:  # re-hashed: never pass on a corrupt block
            return self.store.get_framed(cid, prefix), sizes[0]
        except ContentError as exc:
            log.warning("not serving %s: %s", cid, exc)
            return None

    async def handle(self, ws: WebSocket) -> None:
        """Serve one exchange connection until it closes."""
        self.stats.connections += 1
        session = ServerSession(self.max_wants)
        wake = asyncio.Event()
        done = asyncio.Event()

        async def reader() -> None:
            try:
                async for msg in ws:
                    events = (
                        session.receive_binary()
                        if isinstance(msg, bytes)
                        else session.receive_text(msg)
                    )
                    for ev in events:
                        if isinstance(ev, SendText):
                            await ws.send(ev.text)
                        elif isinstance(ev, Fatal):
                            self.stats.refused += 1
                            await ws.send(ev.text)
                            await ws.close(ev.close_code, ev.reason)
                            return
                    wake.set()
            except ConnectionClosed:
                pass
            finally:
                done.set()
                wake.set()

        task = asyncio.create_task(reader())
        try:
            await self._send_loop(ws, session, wake, done)
        except ConnectionClosed:
            pass
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await task

    async def _send_loop(
        self, ws: WebSocket, session: ServerSession, wake: asyncio.Event, done: asyncio.Event
    ) -> None:
        loop = asyncio.get_running_loop()
        while not done.is_set():
            entry = session.next_want()
            if entry is None:
                wake.clear()
                await wake.wait()
                continue
            if self.offload:
                loaded = await loop.run_in_executor(None, self._load, entry.cid)
            else:
                loaded = self._load(entry.cid)
            if loaded is None or not entry.want_block:
                text = session.answer(entry, loaded is not None)
                if loaded is None:
                    self.stats.dont_have += 1
                if text is not None:
                    await ws.send(text)
                continue
            frame, size = loaded
            await ws.send(frame)
            self.stats.blocks_sent += 1
            self.stats.bytes_sent += size
            if self.on_send is not None:
                self.on_send(entry.cid, size)


async def serve_content(
    store: BlockStore, host: str = "127.0.0.1", port: int = 0, **kw: object
) -> tuple[Server, ContentServer]:
    """Run a standalone exchange server; clients connect to ``ws://host:port/content``."""
    cs = ContentServer(store, **kw)  # type: ignore[arg-type]

    async def handler(ws: WebSocket) -> None:
        if ws.path.split("?")[0] != CONTENT_PATH:
            await ws.close(1008, "unknown path")
            return
        await cs.handle(ws)

    server = await serve(handler, host, port, compression=False, max_message_size=MAX_MESSAGE)
    return server, cs
