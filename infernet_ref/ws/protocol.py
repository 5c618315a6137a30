"""The asyncio adapter over the sans-I/O core: the :class:`WebSocket` object handlers use.

Theory of operation. :class:`WebSocket` *is* the ``asyncio.Protocol`` (one object per
connection, no extra hop per message). ``data_received`` feeds the core and writes its automatic
replies at once (a plain ``Protocol``: measured here, a ``BufferedProtocol`` reading into one
reused buffer was 10-25% slower at 64 KiB on both loops); complete messages go to a ``deque``
and wake the one pending ``recv()`` through a plain future. Reading pauses when ``max_queue``
messages (or ``max_queue_bytes``) wait unread, and when automatic replies (pongs) meet a write
buffer above its high-water mark (so a peer that floods pings without reading cannot grow our
buffers); it resumes below the low-water marks. ``send()`` writes each frame with one
``transport.write`` (a large unmasked payload goes with its header through ``writelines``, one
writev where the loop has it) and awaits drain only when the transport asked to pause. Timers
(keepalive ping/pong, close timeout) are ``loop.call_later`` handles owned here, never in the
core.

Closing (RFC 6455 §7.1): the server closes TCP first once both close frames crossed; a client
waits ``close_timeout`` for that, then closes itself. After a protocol violation the close frame
is sent, our side half-closes, and incoming bytes are discarded until the peer's EOF or the
timeout, so the close frame is not lost to a TCP reset.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import os
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import cast

from infernet_ref.ws.connection import Connection, State
from infernet_ref.ws.errors import ConnectionClosed, ConnectionClosedOK, InvalidState, closed_error
from infernet_ref.ws.events import CloseReceived, Message, Pong, ProtocolFailed
from infernet_ref.ws.frames import CloseCode
from infernet_ref.ws.http import Headers, HttpRequest
from infernet_ref.ws.keepalive import Keepalive

logger = logging.getLogger("infernet_ref.ws")

DataLike = str | bytes | bytearray | memoryview


class WebSocket(asyncio.Protocol, metaclass=abc.ABCMeta):
    """One WebSocket connection (client or server side) in the asyncio API."""

    is_server = False

    def __init__(
        self,
        *,
        max_queue: int = 16,
        max_queue_bytes: int = 32 * 1024 * 1024,
        write_limit: int = 64 * 1024,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 10.0,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._max_queue = max_queue
        self._max_queue_bytes = max_queue_bytes
        self._queued_bytes = 0
        self._write_limit = write_limit
        self.close_timeout = close_timeout
        self._conn: Connection | None = None
        self._transport: asyncio.Transport | None = None
        self._messages: deque[str | bytes] = deque()
        self._recv_waiter: asyncio.Future[str | bytes] | None = None
        self._queue_paused = False
        self._write_paused = False
        self._reply_paused = False  # reading paused because pongs cannot be written out
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._fragmenting: asyncio.Future[None] | None = None
        self._pings: dict[bytes, tuple[asyncio.Future[float], float]] = {}
        self._keepalive = Keepalive(
            self._loop,
            ping_interval,
            ping_timeout,
            self._send_keepalive_ping,
            self._keepalive_expired,
        )
        self._close_handle: asyncio.TimerHandle | None = None
        self._lost = False
        self._closed_waiter: asyncio.Future[None] = self._loop.create_future()
        self.close_code: int | None = None
        self.close_reason: str = ""
        self.subprotocol: str | None = None
        self.remote_address: tuple[str, int] | None = None
        self.path: str = "/"
        self.request: HttpRequest | None = None
        self.request_headers: Headers = Headers()
        self.response_headers: Headers = Headers()

    # -- transport callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's transports are not subclasses
        self._transport = transport
        transport.set_write_buffer_limits(self._write_limit, self._write_limit // 4)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.remote_address = (str(peer[0]), int(peer[1]))

    def _open(self, conn: Connection, leftover: bytes) -> None:
        """Enter the OPEN state (§4.1, §4.2.2) and feed bytes that followed the handshake."""
        self._conn = conn
        self._keepalive.start()
        if leftover:
            self._feed(leftover)

    def data_received(self, data: bytes) -> None:
        if self._conn is None:
            self._handshake_data(data)
        else:
            self._feed(data)

    @abc.abstractmethod
    def _handshake_data(self, data: bytes) -> None:
        """Bytes before the opening handshake completed (the server and client sides differ)."""

    def _feed(self, data: bytes) -> None:
        conn = self._conn
        assert conn is not None
        assert self._transport is not None
        events = conn.receive_data(data)
        out = conn.data_to_send()
        if out:
            self._transport.write(out)
            if self._write_paused and not self._reply_paused:
                # Our automatic replies (pongs) pile up: the peer sends without reading.
                self._reply_paused = True
                self._update_reading()
        for ev in events:
            if type(ev) is Message:
                self._deliver(ev.data)
            elif type(ev) is Pong:
                self._on_pong(ev.payload)
            elif type(ev) is CloseReceived:
                self._on_close_received(ev)
            elif type(ev) is ProtocolFailed:
                logger.warning(
                    "closing WebSocket with %s: %s: %s", self.remote_address, ev.code, ev.reason
                )
                self._on_failed()

    def _deliver(self, data: str | bytes) -> None:
        waiter = self._recv_waiter
        if waiter is not None and not self._messages and not waiter.done():
            self._recv_waiter = None
            waiter.set_result(data)
            return
        self._messages.append(data)
        self._queued_bytes += len(data)
        if not self._queue_paused and (
            len(self._messages) >= self._max_queue or self._queued_bytes >= self._max_queue_bytes
        ):
            self._queue_paused = True
            self._update_reading()

    def _update_reading(self) -> None:
        t = self._transport
        if t is None or t.is_closing():
            return
        if self._queue_paused or self._reply_paused:
            if t.is_reading():
                t.pause_reading()
        elif not t.is_reading():
            t.resume_reading()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._reply_paused:
            self._reply_paused = False
            self._update_reading()
        waiters, self._drain_waiters = self._drain_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def eof_received(self) -> bool | None:
        if self._conn is not None:
            self._conn.receive_eof()
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        conn = self._conn
        if self.close_code is None:
            received = conn.close_received if conn is not None else None
            self.close_code, self.close_reason = received or (CloseCode.ABNORMAL, "")
        if conn is not None and conn.state is not State.CLOSED:
            conn.receive_eof()
            conn.state = State.CLOSED
        self._keepalive.stop()
        if self._close_handle is not None:
            self._close_handle.cancel()
        err = self._closed_exception()
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(err)
        self._recv_waiter = None
        for w in self._drain_waiters:
            if not w.done():
                w.set_result(None)
        self._drain_waiters = []
        for fut, _ in self._pings.values():
            if not fut.done():
                fut.set_exception(self._closed_exception())
        self._pings.clear()
        if not self._closed_waiter.done():
            self._closed_waiter.set_result(None)

    # -- closing ---------------------------------------------------------------------------

    def _closed_exception(self) -> ConnectionClosed:
        conn = self._conn
        if self.close_code is not None:
            return closed_error(self.close_code, self.close_reason)
        received = conn.close_received if conn is not None else None
        if received is not None:
            return closed_error(*received)
        if conn is not None and conn.failure is not None:
            return closed_error(CloseCode.ABNORMAL, str(conn.failure))
        return closed_error(CloseCode.ABNORMAL, "")

    def _on_close_received(self, ev: CloseReceived) -> None:
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(closed_error(ev.code, ev.reason))
            self._recv_waiter = None
        self._handshake_complete()

    def _handshake_complete(self) -> None:
        """Both close frames crossed (§7.1.1): the server closes TCP, a client waits for it."""
        assert self._transport is not None
        if self.is_server:
            self._transport.close()
        else:
            self._arm_close_timer(self._transport.close)

    def _on_failed(self) -> None:
        """We failed the connection (§7.1.7): half-close, drain input until EOF or timeout."""
        t = self._transport
        assert t is not None
        if t.can_write_eof():
            t.write_eof()
        self._queue_paused = self._reply_paused = False
        self._update_reading()
        self._arm_close_timer(t.abort)
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(self._closed_exception())
            self._recv_waiter = None

    def _arm_close_timer(self, action: Callable[[], None]) -> None:
        if self._close_handle is not None:
            self._close_handle.cancel()
        self._close_handle = self._loop.call_later(self.close_timeout, action)

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Start the closing handshake (§7.1.2) and wait until the connection is closed."""
        conn = self._conn
        t = self._transport
        if conn is not None and t is not None and not self._lost and conn.close_sent is None:
            t.write(conn.send_close(code, reason))
            if conn.close_received is not None:
                self._handshake_complete()
            else:
                self._arm_close_timer(t.abort)
        elif t is not None and conn is None:
            t.close()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is closed."""
        await asyncio.shield(self._closed_waiter)

    @property
    def closed(self) -> bool:
        """Whether the data phase is over (a close frame crossed or the transport is gone)."""
        conn = self._conn
        return self._lost or (conn is not None and conn.state is not State.OPEN)

    # -- receiving -------------------------------------------------------------------------

    async def recv(self) -> str | bytes:
        """The next message: ``str`` for text, ``bytes`` for binary (RFC 6455 §5.6).

        Raises :class:`ConnectionClosed` once the connection is closed and no message is left.
        """
        if self._messages:
            data = self._messages.popleft()
            self._queued_bytes -= len(data)
            if (
                self._queue_paused
                and len(self._messages) <= self._max_queue // 4
                and self._queued_bytes <= self._max_queue_bytes // 4
            ):
                self._queue_paused = False
                self._update_reading()
            return data
        conn = self._conn
        if (
            self._lost
            or conn is None
            or conn.close_received is not None
            or conn.failure is not None
        ):
            raise self._closed_exception()
        if self._recv_waiter is not None:
            raise InvalidState("recv() is already waiting on this connection in another task")
        waiter: asyncio.Future[str | bytes] = self._loop.create_future()
        self._recv_waiter = waiter
        try:
            return await waiter
        finally:
            if self._recv_waiter is waiter:
                self._recv_waiter = None

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[str | bytes]:
        """Messages until the connection closes; stops quietly on 1000/1001, raises otherwise."""
        while True:
            try:
                yield await self.recv()
            except ConnectionClosedOK:
                return

    # -- sending ---------------------------------------------------------------------------

    def _writable(self) -> Connection:
        conn = self._conn
        if conn is None or self._lost or conn.state is not State.OPEN:
            raise self._closed_exception()
        return conn

    async def send(self, message: DataLike | Iterable[DataLike] | AsyncIterable[DataLike]) -> None:
        """Send a message: ``str`` as text, bytes-like as binary, an (async) iterable as fragments."""
        while self._fragmenting is not None:
            await asyncio.shield(self._fragmenting)
        if isinstance(message, (str, bytes, bytearray, memoryview)):
            conn = self._writable()
            transport = self._transport
            assert transport is not None
            parts = conn.send_message_parts(message)
            if len(parts) == 1:
                transport.write(parts[0])
            else:  # header and payload: one writev/sendmsg where the transport has it
                transport.writelines(parts)
            if self._write_paused:
                await self._drain()
            return
        if isinstance(message, dict):
            raise TypeError("send() takes str, bytes or an iterable of them, not a dict")
        done: asyncio.Future[None] = self._loop.create_future()
        self._fragmenting = done
        try:
            await self._send_fragments(message)
        finally:
            self._fragmenting = None
            done.set_result(None)

    async def _send_fragments(self, chunks: Iterable[DataLike] | AsyncIterable[DataLike]) -> None:
        """Send each chunk as one frame of a fragmented message (§5.4); the last has FIN."""
        previous: DataLike | None = None
        if isinstance(chunks, AsyncIterable):
            async for chunk in chunks:
                if previous is not None:
                    await self._write_fragment(previous, fin=False)
                previous = chunk
        else:
            for chunk in chunks:
                if previous is not None:
                    await self._write_fragment(previous, fin=False)
                previous = chunk
        if previous is not None:
            await self._write_fragment(previous, fin=True)

    async def _write_fragment(self, chunk: DataLike, *, fin: bool) -> None:
        conn = self._writable()
        assert self._transport is not None
        self._transport.writelines(conn.send_fragment_parts(chunk, fin=fin))
        if self._write_paused:
            await self._drain()

    async def _drain(self) -> None:
        if self._lost:
            raise self._closed_exception()
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter
        if self._lost:
            raise self._closed_exception()

    async def ping(self, data: bytes | None = None) -> float:
        """Send a ping (§5.5.2) and wait for its pong; return the round-trip time in seconds."""
        conn = self._writable()
        payload = os.urandom(4) if data is None else bytes(data)
        if payload in self._pings:
            raise InvalidState("a ping with this payload is already waiting for its pong")
        assert self._transport is not None
        self._transport.write(conn.send_ping(payload))
        fut: asyncio.Future[float] = self._loop.create_future()
        self._pings[payload] = (fut, self._loop.time())
        return await fut

    async def pong(self, data: bytes = b"") -> None:
        """Send an unsolicited pong (§5.5.3)."""
        conn = self._writable()
        assert self._transport is not None
        self._transport.write(conn.send_pong(data))

    def _on_pong(self, payload: bytes) -> None:
        entry = self._pings.pop(payload, None)
        if entry is not None and not entry[0].done():
            entry[0].set_result(self._loop.time() - entry[1])
        self._keepalive.pong(payload)

    def _send_keepalive_ping(self, payload: bytes) -> bool:
        conn = self._conn
        if conn is None or conn.state is not State.OPEN or self._transport is None:
            return False
        self._transport.write(conn.send_ping(payload))
        return True

    def _keepalive_expired(self) -> None:
        """No pong within ping_timeout (spec/ws.md §5.1): close 1011 if possible, then abort."""
        conn = self._conn
        if conn is None or self._transport is None:
            return
        logger.warning("WebSocket peer %s did not answer a keepalive ping", self.remote_address)
        if conn.close_sent is None:
            self._transport.write(
                conn.send_close(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
            )
        self.close_code, self.close_reason = CloseCode.ABNORMAL, "keepalive ping timeout"
        self._transport.abort()
