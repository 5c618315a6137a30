"""WebSocket layer (RFC 6455 + RFC 7692 permessage-deflate), written from scratch.

Sans-I/O core: :mod:`.frames` (wire format), :mod:`.connection` (state machine),
:mod:`.handshake` (opening handshake), :mod:`.extensions.deflate`, :mod:`.utf8`, :mod:`.masking`.
asyncio adapter: :func:`serve`, :func:`connect`, :class:`WebSocket`. Profile: ``spec/ws.md``.
"""

from infernet_ref.ws.client import connect
from infernet_ref.ws.connection import Connection, Role, State
from infernet_ref.ws.errors import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    HandshakeError,
    InvalidState,
    WebSocketError,
    WebSocketProtocolError,
)
from infernet_ref.ws.extensions.deflate import DeflateConfig
from infernet_ref.ws.frames import CloseCode, Opcode
from infernet_ref.ws.http import HandshakeLimits, Headers, HttpRequest, HttpResponse
from infernet_ref.ws.loop import new_event_loop, run
from infernet_ref.ws.protocol import WebSocket
from infernet_ref.ws.server import Server, serve

SUBPROTOCOL = "infernet.v1"

__all__ = [
    "SUBPROTOCOL",
    "CloseCode",
    "Connection",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "DeflateConfig",
    "HandshakeError",
    "HandshakeLimits",
    "Headers",
    "HttpRequest",
    "HttpResponse",
    "InvalidState",
    "Opcode",
    "Role",
    "Server",
    "State",
    "WebSocket",
    "WebSocketError",
    "WebSocketProtocolError",
    "connect",
    "new_event_loop",
    "run",
    "serve",
]
