"""Errors of the WebSocket layer (RFC 6455), split by who is at fault.

- :class:`WebSocketProtocolError` — the *peer* broke RFC 6455/7692; ``code`` is the close code
  that goes on the wire (1002 protocol error, 1007 invalid payload, 1009 too big, ...).
- :class:`HandshakeError` — the opening handshake failed (§4); ``status`` is the HTTP status a
  server answers with (400, 403, 426 ...) or the status a client received.
- :class:`InvalidState` — *our* caller used the API in a state that does not allow it.
- :class:`ConnectionClosed` — raised by the asyncio API on ``recv``/``send`` after the connection
  closed; ``code``/``reason`` are those of the close frame received (1006 when none was).
"""

from __future__ import annotations

from infernet_ref.errors import InfernetError, LocalProtocolError, RemoteProtocolError


class WebSocketError(InfernetError):
    """Base class of the WebSocket layer's errors."""


class WebSocketProtocolError(RemoteProtocolError, WebSocketError):
    """The peer violated RFC 6455 or RFC 7692; ``code`` is the close code to send (§7.4.1)."""

    def __init__(self, message: str, code: int = 1002) -> None:
        super().__init__(message, code)
        self.code: int = code


class HandshakeError(RemoteProtocolError, WebSocketError):
    """The opening handshake (RFC 6455 §4) failed; ``status`` is the HTTP status involved."""

    def __init__(
        self, message: str, status: int = 400, headers: tuple[tuple[str, str], ...] = ()
    ) -> None:
        super().__init__(message, status)
        self.status = status
        self.headers = headers


class InvalidState(LocalProtocolError, WebSocketError):
    """The local caller asked for something the connection's state does not allow."""


class ConnectionClosed(WebSocketError):
    """The WebSocket connection is closed; ``code``/``reason`` come from the peer's close frame.

    ``code`` is 1006 (RFC 6455 §7.1.5) when the connection ended without a close frame.
    """

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"WebSocket connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class ConnectionClosedOK(ConnectionClosed):
    """Closed with 1000 (normal) or 1001 (going away)."""


class ConnectionClosedError(ConnectionClosed):
    """Closed with an error code, or without a close handshake."""


def closed_error(code: int, reason: str = "") -> ConnectionClosed:
    """The :class:`ConnectionClosed` subclass matching ``code``."""
    if code in (1000, 1001):
        return ConnectionClosedOK(code, reason)
    return ConnectionClosedError(code, reason)
