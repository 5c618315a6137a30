"""asyncio WebSocket client: ``connect(url, ...)`` (RFC 6455 §4.1), awaitable or ``async with``.

The client opens TCP (TLS for ``wss://``, with the standard :mod:`ssl` module), sends the
upgrade request, and checks the ``101`` response within ``open_timeout``. Bytes the server sent
right after its response are fed to the connection, not lost.
"""

from __future__ import annotations

import asyncio
import functools
import ssl as ssl_module
from collections.abc import Generator, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from infernet_ref.ws.connection import DEFAULT_MAX_MESSAGE_SIZE, Connection, Role
from infernet_ref.ws.errors import HandshakeError, InvalidState
from infernet_ref.ws.extensions.deflate import DeflateConfig, PerMessageDeflate
from infernet_ref.ws.handshake import ClientHandshake
from infernet_ref.ws.protocol import WebSocket


class ClientConnection(WebSocket):
    """Client side of one connection: handshake phase, then :class:`WebSocket`."""

    def __init__(self, handshake: ClientHandshake, options: dict[str, Any], **kw: Any) -> None:
        super().__init__(**kw)
        self._handshake = handshake
        self._options = options
        self.opened: asyncio.Future[None] = self._loop.create_future()
        self.request_headers = options["request_headers"]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        assert self._transport is not None
        self._transport.write(self._handshake.request_bytes)

    def _handshake_data(self, data: bytes) -> None:
        try:
            accepted = self._handshake.receive_data(data)
        except HandshakeError as exc:
            if not self.opened.done():
                self.opened.set_exception(exc)
            assert self._transport is not None
            self._transport.close()
            return
        if accepted is None:
            return
        o = self._options
        deflate = None
        if accepted.deflate is not None:
            deflate = PerMessageDeflate(accepted.deflate, o["deflate"])
        conn = Connection(
            Role.CLIENT,
            max_message_size=o["max_message_size"],
            max_frame_size=o["max_frame_size"],
            deflate=deflate,
        )
        self.subprotocol = accepted.subprotocol
        self.response_headers = accepted.headers
        if not self.opened.done():
            self.opened.set_result(None)
        self._open(conn, self._handshake.trailing_data)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.opened.done():
            self.opened.set_exception(
                HandshakeError(
                    f"connection closed during the WebSocket handshake: {exc or 'EOF'}", 502
                )
            )


class connect:
    """Open a WebSocket connection to ``url`` (``ws://`` or ``wss://``), RFC 6455 §4.1."""

    def __init__(
        self,
        url: str,
        *,
        ssl: ssl_module.SSLContext | None = None,
        subprotocols: Sequence[str] = ("infernet.v1",),
        compression: bool | DeflateConfig = True,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_frame_size: int | None = None,
        origin: str | None = None,
        extra_headers: Sequence[tuple[str, str]] = (),
        max_queue: int = 16,
        max_queue_bytes: int = 32 * 1024 * 1024,
        write_limit: int = 64 * 1024,
        open_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 10.0,
        server_hostname: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise InvalidState(f"not a ws:// or wss:// URL: {url!r}")
        secure = parts.scheme == "wss"
        if ssl is not None and not secure:
            raise InvalidState("an SSL context needs a wss:// URL")
        self._host = parts.hostname
        self._port = parts.port or (443 if secure else 80)
        self._ssl = (ssl or ssl_module.create_default_context()) if secure else None
        self._server_hostname = (server_hostname or self._host) if secure else None
        host_header = f"[{self._host}]" if ":" in self._host else self._host
        if parts.port is not None:
            host_header += f":{parts.port}"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._deflate = DeflateConfig() if compression is True else (compression or None)
        self._make_handshake = functools.partial(
            ClientHandshake,
            host_header,
            path,
            subprotocols=subprotocols,
            deflate=self._deflate,
            origin=origin,
            extra_headers=extra_headers,
        )
        self._path = path
        self._open_timeout = open_timeout
        self._options: dict[str, Any] = {
            "deflate": self._deflate,
            "max_message_size": max_message_size,
            "max_frame_size": max_frame_size,
        }
        self._kw = {
            "max_queue": max_queue,
            "max_queue_bytes": max_queue_bytes,
            "write_limit": write_limit,
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "close_timeout": close_timeout,
        }
        self._ws: ClientConnection | None = None

    async def _create(self) -> ClientConnection:
        loop = asyncio.get_running_loop()
        handshake = self._make_handshake()
        options = {**self._options, "request_headers": handshake.headers}
        async with asyncio.timeout(self._open_timeout):
            _, proto = await loop.create_connection(
                lambda: ClientConnection(handshake, options, **self._kw),
                self._host,
                self._port,
                ssl=self._ssl,
                server_hostname=self._server_hostname,
            )
            try:
                await proto.opened
            except BaseException:
                if proto._transport is not None:
                    proto._transport.abort()
                raise
        proto.path = self._path
        return proto

    def __await__(self) -> Generator[Any, None, ClientConnection]:
        return self._create().__await__()

    async def __aenter__(self) -> ClientConnection:
        self._ws = await self._create()
        return self._ws

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._ws is not None:
            await self._ws.close()
