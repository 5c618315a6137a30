"""asyncio WebSocket server: ``serve(handler, host, port, ...)`` (RFC 6455 §4.2) and plain GETs.

Theory of operation. Each accepted TCP (or TLS) connection gets a :class:`ServerConnection`
protocol. It collects the request head under a handshake timeout, hands it to the optional
``http_handler`` (which may answer a plain GET such as ``/.well-known/infernet``), then either
rejects the upgrade with an HTTP error whose body states the reason, or answers ``101`` and runs
``handler(ws)`` in a task. When the handler returns the connection closes with 1000 (1011 if it
raised). :meth:`Server.close` stops accepting, closes open connections with 1001 and waits for
their handlers — a graceful shutdown bounded by ``close_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any

from infernet_ref.ws.connection import DEFAULT_MAX_MESSAGE_SIZE, Connection, Role
from infernet_ref.ws.errors import ConnectionClosed, HandshakeError
from infernet_ref.ws.extensions.deflate import DeflateConfig, PerMessageDeflate
from infernet_ref.ws.frames import CloseCode
from infernet_ref.ws.handshake import OriginPolicy, ServerHandshake
from infernet_ref.ws.http import HandshakeLimits, HttpRequest, HttpResponse
from infernet_ref.ws.protocol import WebSocket

logger = logging.getLogger("infernet_ref.ws")

Handler = Callable[[WebSocket], Awaitable[None]]
HttpHandler = Callable[[HttpRequest], Awaitable[HttpResponse | None]]


class ServerConnection(WebSocket):
    """Server side of one connection: handshake phase, then :class:`WebSocket`."""

    is_server = True

    def __init__(self, server: Server) -> None:
        o = server.options
        super().__init__(
            max_queue=o["max_queue"],
            max_queue_bytes=o["max_queue_bytes"],
            write_limit=o["write_limit"],
            ping_interval=o["ping_interval"],
            ping_timeout=o["ping_timeout"],
            close_timeout=o["close_timeout"],
        )
        self._server = server
        self._handshake: ServerHandshake | None = None
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        o = self._server.options
        self._handshake = ServerHandshake(
            subprotocols=o["subprotocols"],
            deflate=o["deflate"],
            origins=o["origins"],
            limits=o["limits"],
            remote_address=self.remote_address,
        )
        self._handshake_timer = self._loop.call_later(o["open_timeout"], self._handshake_expired)
        self._server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        self._server._connections.discard(self)

    def _handshake_expired(self) -> None:
        """Slow-loris guard: the handshake did not finish within ``open_timeout``."""
        if self._conn is None and self._transport is not None:
            logger.info("WebSocket handshake from %s timed out", self.remote_address)
            self._transport.abort()

    def _handshake_data(self, data: bytes) -> None:
        if self._handshake is None or self._task is not None:
            return  # the request is being answered; ignore pipelined bytes
        try:
            request = self._handshake.receive_data(data)
        except HandshakeError as exc:
            self._reject(exc)
            return
        if request is not None:
            assert self._transport is not None
            self._transport.pause_reading()
            self._task = self._loop.create_task(self._run(request))
            self._server._tasks.add(self._task)
            self._task.add_done_callback(self._server._tasks.discard)

    def _reject(self, exc: HandshakeError) -> None:
        logger.info(
            "rejecting WebSocket handshake from %s: %s %s", self.remote_address, exc.status, exc
        )
        assert self._transport is not None
        self._transport.write(ServerHandshake.reject(exc))
        self._transport.close()

    async def _run(self, request: HttpRequest) -> None:
        assert self._transport is not None
        assert self._handshake is not None
        http_handler = self._server.options["http_handler"]
        if http_handler is not None:
            try:
                response = await http_handler(request)
            except Exception:
                logger.exception("http_handler failed for %s %s", request.method, request.path)
                response = HttpResponse(500, (("Content-Type", "text/plain"),), b"internal error\n")
            if response is not None:
                self._transport.write(response.to_bytes())
                self._transport.close()
                return
        try:
            raw, accepted = self._handshake.accept(request)
        except HandshakeError as exc:
            self._reject(exc)
            return
        if self._transport.is_closing():
            return
        self._transport.write(raw)
        if self._handshake_timer is not None:
            self._handshake_timer.cancel()
        o = self._server.options
        deflate = None
        if accepted.deflate is not None:
            deflate = PerMessageDeflate(accepted.deflate, o["deflate"])
        conn = Connection(
            Role.SERVER,
            max_message_size=o["max_message_size"],
            max_frame_size=o["max_frame_size"],
            deflate=deflate,
        )
        self.subprotocol = accepted.subprotocol
        self.request = request
        self.path = request.path
        self.request_headers = request.headers
        self._open(conn, self._handshake.trailing_data)
        self._handshake = None
        self._transport.resume_reading()
        await self._run_handler()

    async def _run_handler(self) -> None:
        code: int = CloseCode.NORMAL
        try:
            await self._server.handler(self)
        except asyncio.CancelledError:
            code = CloseCode.GOING_AWAY
            raise
        except ConnectionClosed:
            pass  # the peer closed or broke the protocol; already logged by the adapter
        except Exception:
            logger.exception("WebSocket handler failed for %s", self.remote_address)
            code = CloseCode.INTERNAL_ERROR
        finally:
            if not self._lost:
                await self.close(code)


class Server:
    """A listening WebSocket server; ``async with`` closes it gracefully."""

    def __init__(self, handler: Handler, options: dict[str, Any]) -> None:
        self.handler = handler
        self.options = options
        self._server: asyncio.Server | None = None
        self._connections: set[ServerConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._address: tuple[str, int] = ("", 0)

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) of the first listening socket (kept after :meth:`close`)."""
        return self._address

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def connections(self) -> frozenset[WebSocket]:
        """Connections currently open (handshake done or in progress)."""
        return frozenset(self._connections)

    async def close(
        self, code: int = CloseCode.GOING_AWAY, reason: str = "server shutting down"
    ) -> None:
        """Stop accepting, close every connection with ``code`` (1001) and wait for handlers."""
        if self._server is not None:
            self._server.close()
        closers = []
        for ws in list(self._connections):
            if ws._conn is None:
                if ws._transport is not None:
                    ws._transport.close()
            else:
                closers.append(asyncio.ensure_future(ws.close(code, reason)))
        timeout = self.options["close_timeout"] + 1.0
        pending = set(closers) | set(self._tasks)
        if pending:
            _, still = await asyncio.wait(pending, timeout=timeout)
            for task in still:
                task.cancel()
            if still:
                await asyncio.wait(still, timeout=1.0)
        for ws in list(self._connections):
            if ws._transport is not None:
                ws._transport.abort()
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def serve(
    handler: Handler,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    ssl: ssl_module.SSLContext | None = None,
    subprotocols: Sequence[str] = ("infernet.v1",),
    compression: bool | DeflateConfig = True,
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    max_frame_size: int | None = None,
    http_handler: HttpHandler | None = None,
    origins: OriginPolicy = None,
    max_queue: int = 16,
    max_queue_bytes: int = 32 * 1024 * 1024,
    write_limit: int = 64 * 1024,
    open_timeout: float = 10.0,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
    close_timeout: float = 10.0,
    limits: HandshakeLimits | None = None,
    backlog: int = 128,
) -> Serving:
    """Listen for WebSocket connections (RFC 6455 §4.2) and run ``handler(ws)`` for each.

    ``server = await serve(...)`` or ``async with serve(...) as server:`` (closed on exit).
    """
    deflate = DeflateConfig() if compression is True else (compression or None)
    options: dict[str, Any] = {
        "subprotocols": tuple(subprotocols),
        "deflate": deflate,
        "max_message_size": max_message_size,
        "max_frame_size": max_frame_size,
        "http_handler": http_handler,
        "origins": origins,
        "max_queue": max_queue,
        "max_queue_bytes": max_queue_bytes,
        "write_limit": write_limit,
        "open_timeout": open_timeout,
        "ping_interval": ping_interval,
        "ping_timeout": ping_timeout,
        "close_timeout": close_timeout,
        "limits": limits or HandshakeLimits(),
    }
    return Serving(Server(handler, options), host, port, ssl, backlog)


class Serving:
    """What :func:`serve` returns: awaitable (the started :class:`Server`) and an async context."""

    def __init__(
        self, server: Server, host: str, port: int, ssl: ssl_module.SSLContext | None, backlog: int
    ) -> None:
        self._server = server
        self._args = (host, port, ssl, backlog)

    async def _start(self) -> Server:
        host, port, ssl, backlog = self._args
        server = self._server
        loop = asyncio.get_running_loop()
        server._server = await loop.create_server(
            lambda: ServerConnection(server), host, port, ssl=ssl, backlog=backlog
        )
        sockname = server._server.sockets[0].getsockname()
        server._address = (str(sockname[0]), int(sockname[1]))
        return server

    def __await__(self) -> Generator[Any, None, Server]:
        return self._start().__await__()

    async def __aenter__(self) -> Server:
        return await self._start()

    async def __aexit__(self, *exc: object) -> None:
        await self._server.close()
