"""asyncio adapter: a :class:`JobPeer` drives one :class:`~infernet_ref.node.protocol.JobConnection`
over one WebSocket of the ws layer (spec/job.md).

Theory of operation. A reader task feeds every frame into the sans-I/O core and writes what the
core queues; a timer task calls ``tick`` for heartbeats. Replies (messages with ``re``) resolve
the future of the matching :meth:`JobPeer.request`; ``sys.error`` and ``job.reject`` replies
raise :class:`~infernet_ref.node.errors.RemoteJobError` there. Other messages go through a
bounded inbox to a dispatcher task that awaits the ``on_message`` callback one message at a time,
in arrival order. The reader never waits for a handler (only for a full inbox), so heartbeats and
replies keep being read while a handler does long work such as starting a sandboxed worker; a
peer is never timed out because *we* were busy. All writes go through one lock, so an envelope
and its binary frame are always adjacent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from infernet_ref.errors import InfernetError
from infernet_ref.node.errors import ErrorCode, RemoteJobError
from infernet_ref.node.log import JsonLog
from infernet_ref.node.messages import DEFAULT_MAX_MESSAGE_SIZE, Message
from infernet_ref.node.protocol import (
    Authenticated,
    CloseRequested,
    JobConnection,
    MessageReceived,
    PeerTimedOut,
    ProtocolViolation,
    Side,
)

OnMessage = Callable[["JobPeer", Message, bytes | None], Awaitable[None]]
OnClose = Callable[["JobPeer"], Awaitable[None]]


#: Messages read but not yet handled; when full, the reader waits (backpressure to the peer).
INBOX_SIZE = 256


class PeerClosed(InfernetError):
    """The connection to the peer closed before the reply came."""


class JobPeer:
    """One job-protocol connection, either side (see the module docstring)."""

    def __init__(
        self,
        ws: Any,
        conn: JobConnection,
        *,
        log: JsonLog | None = None,
        on_message: OnMessage | None = None,
        on_close: OnClose | None = None,
    ) -> None:
        self.ws, self.conn, self.log = ws, conn, log or JsonLog(level="error")
        self.on_message, self.on_close = on_message, on_close
        self.authenticated = asyncio.Event()
        self.closed = asyncio.Event()
        self._pending: dict[str, asyncio.Future[tuple[Message, bytes | None]]] = {}
        self._write_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._inbox: asyncio.Queue[tuple[Message, bytes | None] | None] = asyncio.Queue(INBOX_SIZE)
        self._dispatcher: asyncio.Task[None] | None = None
        self.close_reason = ""

    @property
    def peer_pubkey(self) -> str | None:
        return self.conn.peer_pubkey

    def start(self) -> None:
        self._dispatcher = asyncio.create_task(self._dispatch())
        self._tasks = [
            asyncio.create_task(self._reader()),
            asyncio.create_task(self._timer()),
            self._dispatcher,
        ]

    async def _dispatch(self) -> None:
        """Hand queued messages to ``on_message`` in order until the sentinel after close."""
        while (item := await self._inbox.get()) is not None:
            if self.on_message is None:
                continue
            msg, payload = item
            try:
                await self.on_message(self, msg, payload)
            except (InfernetError, OSError) as exc:  # e.g. the reply hit a closed connection
                self.log.warning("job.handler_failed", type=msg.type, error=str(exc))

    async def _flush(self) -> None:
        async with self._write_lock:
            for frame in self.conn.data_to_send():
                await self.ws.send(frame)

    async def send(
        self,
        msg_type: str,
        body: dict[str, Any],
        *,
        re: str | None = None,
        payload: bytes | None = None,
    ) -> str:
        if self.closed.is_set():
            raise PeerClosed(f"connection closed: {self.close_reason}")
        async with self._write_lock:
            msg_id = self.conn.send(msg_type, body, re=re, payload=payload)
            for frame in self.conn.data_to_send():
                await self.ws.send(frame)
        return msg_id

    async def send_error(
        self, code: ErrorCode | int, message: str, *, re: str | None = None, **extra: Any
    ) -> None:
        if self.closed.is_set():
            return
        async with self._write_lock:
            self.conn.send_error(code, message, re=re, **extra)
            for frame in self.conn.data_to_send():
                await self.ws.send(frame)

    async def request(
        self,
        msg_type: str,
        body: dict[str, Any],
        *,
        payload: bytes | None = None,
        timeout: float = 30.0,
    ) -> tuple[Message, bytes | None]:
        """Send a request and wait for its reply; RemoteJobError for sys.error / job.reject."""
        fut: asyncio.Future[tuple[Message, bytes | None]] = (
            asyncio.get_running_loop().create_future()
        )
        async with self._write_lock:
            if self.closed.is_set():
                raise PeerClosed(f"connection closed: {self.close_reason}")
            msg_id = self.conn.send(msg_type, body, payload=payload)
            self._pending[msg_id] = fut
            for frame in self.conn.data_to_send():
                await self.ws.send(frame)
        try:
            async with asyncio.timeout(timeout):
                msg, data = await fut
        finally:
            self._pending.pop(msg_id, None)
        if msg.type in ("sys.error", "job.reject"):
            code = msg.body_dict["code"]
            raise RemoteJobError(
                code, msg.body_dict.get("message") or msg.body_dict.get("reason", "")
            )
        return msg, data

    async def _reader(self) -> None:
        try:
            async for frame in self.ws:
                now = time.time()
                events = (
                    self.conn.receive_binary(frame, now)
                    if isinstance(frame, bytes)
                    else self.conn.receive_text(frame, now)
                )
                await self._flush()
                for ev in events:
                    await self._handle(ev)
        except InfernetError as exc:  # ConnectionClosed and friends
            self.close_reason = str(exc)
        except (ConnectionError, OSError) as exc:
            self.close_reason = f"{type(exc).__name__}: {exc}"
        finally:
            await self._closed()

    async def _handle(self, ev: object) -> None:
        if isinstance(ev, Authenticated):
            self.authenticated.set()
        elif isinstance(ev, MessageReceived):
            fut = self._pending.get(ev.message.re) if ev.message.re else None
            if fut is not None and not fut.done():
                fut.set_result((ev.message, ev.payload))
            elif self.on_message is not None:
                await self._inbox.put((ev.message, ev.payload))
        elif isinstance(ev, ProtocolViolation):
            self.log.warning(
                "job.protocol_violation", peer=self.peer_pubkey, code=ev.code, reason=ev.reason
            )
        elif isinstance(ev, CloseRequested | PeerTimedOut):
            self.close_reason = getattr(ev, "reason", "peer silent")
            with contextlib.suppress(InfernetError, OSError):
                await self.ws.close(getattr(ev, "code", 1001), self.close_reason[:120])

    async def _timer(self) -> None:
        interval = max(0.05, self.conn.heartbeat_interval / 2)
        while not self.closed.is_set():
            await asyncio.sleep(interval)
            for ev in self.conn.tick(time.time()):
                await self._handle(ev)
            with contextlib.suppress(InfernetError, OSError):
                await self._flush()

    async def _closed(self) -> None:
        if self.closed.is_set():
            return
        self.conn.connection_lost()
        self.closed.set()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(
                    PeerClosed(f"connection closed: {self.close_reason or 'by peer'}")
                )
        if self.on_close is not None:
            await self.on_close(self)
        for task in self._tasks:
            if task is not asyncio.current_task() and task is not self._dispatcher:
                task.cancel()
        # The dispatcher finishes the message in hand and whatever was already queued, then stops.
        with contextlib.suppress(asyncio.QueueFull):
            self._inbox.put_nowait(None)

    async def close(self) -> None:
        with contextlib.suppress(InfernetError, OSError):
            await self.ws.close(1000, "")
        await self._closed()
        if self._dispatcher is not None:  # a local close does not wait for handlers in progress
            self._dispatcher.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, InfernetError):
                await task

    async def wait_closed(self) -> None:
        await self.closed.wait()


async def open_peer(
    url: str,
    secret_key: bytes,
    *,
    log: JsonLog | None = None,
    on_message: OnMessage | None = None,
    on_close: OnClose | None = None,
    heartbeat_interval: float = 15.0,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    timeout: float = 10.0,
    ssl: Any = None,
) -> JobPeer:
    """Connect to a job endpoint and authenticate (spec/job.md §Authentication)."""
    from infernet_ref.ws import connect  # noqa: PLC0415

    async with asyncio.timeout(timeout):
        ws = await connect(url, max_message_size=max_message_size + 1024, ssl=ssl)
    conn = JobConnection(
        Side.CLIENT,
        url,
        secret_key,
        time.time(),
        heartbeat_interval=heartbeat_interval,
        max_message_size=max_message_size,
        id_prefix="c",
    )
    peer = JobPeer(ws, conn, log=log, on_message=on_message, on_close=on_close)
    peer.start()
    try:
        async with asyncio.timeout(timeout):
            done = asyncio.create_task(peer.closed.wait())
            auth = asyncio.create_task(peer.authenticated.wait())
            await asyncio.wait({done, auth}, return_when=asyncio.FIRST_COMPLETED)
            done.cancel()
            auth.cancel()
    except TimeoutError:
        await peer.close()
        raise
    if not peer.authenticated.is_set():
        await peer.close()
        raise PeerClosed(f"authentication with {url} failed: {peer.close_reason}")
    return peer
