"""The opening handshake (RFC 6455 §4), client and server side, sans-I/O.

Theory of operation. A head (request or response) is collected in a buffer until the blank
line, with our own bounds on the first line and the whole head (414/431 rather than an
unbounded read), then parsed by h11. The server side validates the upgrade request (§4.2.1),
negotiates the subprotocol (§1.9) and permessage-deflate (RFC 7692 §7.1), and answers
``101`` or an error response whose body names the reason. The client side builds the request
(§4.1) and checks the ``101`` response (§4.2.2). Bytes after the head (a peer that sends frames
right after the handshake) are kept in ``trailing_data`` for the connection.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

import h11

from infernet_ref.ws.errors import HandshakeError
from infernet_ref.ws.extensions import deflate as pmd
from infernet_ref.ws.extensions import format_extension, parse_extensions
from infernet_ref.ws.http import HandshakeLimits, Headers, HttpRequest, HttpResponse

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
VERSION = "13"  # RFC 6455 §4.1 item 9

OriginPolicy = Collection[str] | Callable[[str | None], bool] | None


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a ``Sec-WebSocket-Key`` (RFC 6455 §4.2.2 item 5.4)."""
    return base64.b64encode(hashlib.sha1((key + GUID).encode("ascii")).digest()).decode("ascii")


def _tokens(headers: Headers, name: str) -> list[str]:
    """Comma-separated tokens of every ``name`` field, lower-cased (RFC 9110 §5.6.1)."""
    return [t.strip().lower() for v in headers.get_all(name) for t in v.split(",") if t.strip()]


class _HeadReader:
    """Collects one HTTP head within :class:`HandshakeLimits`."""

    def __init__(self, limits: HandshakeLimits, what: str) -> None:
        self.limits = limits
        self.what = what
        self.buf = bytearray()

    def feed(self, data: bytes) -> bytes | None:
        """Add bytes; return the complete head (with its blank line) or None; keep the rest."""
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        first = self.buf.find(b"\r\n")
        line_len = first if first >= 0 else len(self.buf)
        if line_len > self.limits.max_line:
            raise HandshakeError(f"{self.what} line longer than {self.limits.max_line} bytes", 414)
        if end < 0:
            if len(self.buf) > self.limits.max_head:
                raise HandshakeError(
                    f"{self.what} head larger than {self.limits.max_head} bytes", 431
                )
            return None
        if end + 4 > self.limits.max_head:
            raise HandshakeError(f"{self.what} head larger than {self.limits.max_head} bytes", 431)
        head = bytes(self.buf[: end + 4])
        if head.count(b"\r\n") - 2 > self.limits.max_headers:
            raise HandshakeError(
                f"{self.what} has more than {self.limits.max_headers} header fields", 431
            )
        del self.buf[: end + 4]
        return head


@dataclass(frozen=True, slots=True)
class Accepted:
    """The outcome of a successful handshake, as seen from either side."""

    subprotocol: str | None
    deflate: pmd.DeflateParams | None
    headers: Headers  # the peer's request (server) or response (client) headers


class ServerHandshake:
    """Server side of RFC 6455 §4.2: parse the request, then accept or reject it."""

    def __init__(
        self,
        *,
        subprotocols: Sequence[str] = (),
        deflate: pmd.DeflateConfig | None = None,
        origins: OriginPolicy = None,
        limits: HandshakeLimits | None = None,
        remote_address: tuple[str, int] | None = None,
    ) -> None:
        self.subprotocols = tuple(subprotocols)
        self.deflate = deflate
        self.origins = origins
        self.remote_address = remote_address
        self._reader = _HeadReader(limits or HandshakeLimits(), "request")
        self.trailing_data = b""

    def receive_data(self, data: bytes) -> HttpRequest | None:
        """Feed bytes; return the request once its head is complete (§4.2.1)."""
        head = self._reader.feed(data)
        if head is None:
            return None
        self.trailing_data = bytes(self._reader.buf)
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(head)
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise HandshakeError(f"malformed HTTP request: {exc}", exc.error_status_hint) from None
        if not isinstance(event, h11.Request):
            raise HandshakeError("malformed HTTP request head", 400)
        headers = Headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers)
        if (
            headers.get("transfer-encoding")
            or (headers.get("content-length") or "0").strip() != "0"
        ):
            raise HandshakeError("request bodies are not accepted here", 400)
        return HttpRequest(
            event.method.decode("ascii", "replace"),
            event.target.decode("ascii", "replace"),
            headers,
            event.http_version.decode("ascii"),
            self.remote_address,
        )

    @staticmethod
    def is_upgrade(request: HttpRequest) -> bool:
        """Whether the request asks for a WebSocket (``Upgrade: websocket``, §4.2.1 item 3)."""
        return "websocket" in _tokens(request.headers, "upgrade")

    def accept(self, request: HttpRequest) -> tuple[bytes, Accepted]:
        """Validate the upgrade request (§4.2.1) and build the 101 response (§4.2.2)."""
        h = request.headers
        if request.method != "GET":
            raise HandshakeError(
                f"a WebSocket handshake must use GET, not {request.method}",
                405,
                (("Allow", "GET"),),
            )
        if request.http_version != "1.1":
            raise HandshakeError("a WebSocket handshake needs HTTP/1.1", 400)
        if not self.is_upgrade(request):
            raise HandshakeError(
                "this is a WebSocket endpoint: send Upgrade: websocket",
                426,
                (
                    ("Upgrade", "websocket"),
                    ("Connection", "Upgrade"),
                    ("Sec-WebSocket-Version", VERSION),
                ),
            )
        if "upgrade" not in _tokens(h, "connection"):
            raise HandshakeError("missing Connection: Upgrade (RFC 6455 §4.2.1 item 4)", 400)
        if h.get_all("sec-websocket-version") != [VERSION]:
            raise HandshakeError(
                "unsupported Sec-WebSocket-Version; this server speaks 13 (RFC 6455 §4.4)",
                426,
                (("Sec-WebSocket-Version", VERSION),),
            )
        keys = h.get_all("sec-websocket-key")
        try:
            valid_key = (
                len(keys) == 1 and len(base64.b64decode(keys[0].strip(), validate=True)) == 16
            )
        except (binascii.Error, ValueError):
            valid_key = False
        if not valid_key:
            raise HandshakeError(
                "Sec-WebSocket-Key must be base64 of 16 bytes (RFC 6455 §4.2.1 item 5)", 400
            )
        self._check_origin(h.get("origin"))
        offered = _tokens(h, "sec-websocket-protocol")
        subprotocol = next((p for p in self.subprotocols if p.lower() in offered), None)
        response = [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept_key(keys[0].strip())),
        ]
        if subprotocol is not None:
            response.append(("Sec-WebSocket-Protocol", subprotocol))
        params = None
        if self.deflate is not None:
            extensions = parse_extensions(", ".join(h.get_all("sec-websocket-extensions")))
            offers = [p for name, p in extensions if name == pmd.NAME]
            chosen = pmd.server_accept(offers, self.deflate) if offers else None
            if chosen is not None:
                answer, params = chosen
                response.append(("Sec-WebSocket-Extensions", format_extension(pmd.NAME, answer)))
        lines = ["HTTP/1.1 101 Switching Protocols"] + [f"{k}: {v}" for k, v in response]
        raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return raw, Accepted(subprotocol, params, h)

    def _check_origin(self, origin: str | None) -> None:
        """Apply the Origin policy (RFC 6455 §4.2.2 item 4, §10.2); 403 on refusal."""
        policy = self.origins
        if policy is None:
            return
        allowed = policy(origin) if callable(policy) else origin in policy
        if not allowed:
            raise HandshakeError(f"Origin {origin!r} is not allowed", 403)

    @staticmethod
    def reject(error: HandshakeError) -> bytes:
        """An error response whose body states the reason (§4.2.2: "an appropriate HTTP error")."""
        body = (str(error) + "\n").encode("utf-8")
        headers = (("Content-Type", "text/plain; charset=utf-8"), *error.headers)
        return HttpResponse(error.status, headers, body).to_bytes()


class ClientHandshake:
    """Client side of RFC 6455 §4.1: build the request, check the response."""

    def __init__(
        self,
        host: str,
        path: str,
        *,
        subprotocols: Sequence[str] = (),
        deflate: pmd.DeflateConfig | None = None,
        origin: str | None = None,
        extra_headers: Sequence[tuple[str, str]] = (),
        limits: HandshakeLimits | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.subprotocols = tuple(subprotocols)
        self.deflate = deflate
        self.key = base64.b64encode(random_bytes(16)).decode("ascii")
        headers = [("Host", host), ("Upgrade", "websocket"), ("Connection", "Upgrade")]
        headers += [("Sec-WebSocket-Key", self.key), ("Sec-WebSocket-Version", VERSION)]
        if self.subprotocols:
            headers.append(("Sec-WebSocket-Protocol", ", ".join(self.subprotocols)))
        if deflate is not None:
            headers.append(
                ("Sec-WebSocket-Extensions", format_extension(pmd.NAME, pmd.client_offer(deflate)))
            )
        if origin is not None:
            headers.append(("Origin", origin))
        headers += list(extra_headers)
        self.headers = Headers(headers)
        self._h11 = h11.Connection(h11.CLIENT)
        self.request_bytes: bytes = self._h11.send(
            h11.Request(method="GET", target=path, headers=headers)
        )
        self._reader = _HeadReader(limits or HandshakeLimits(), "response")
        self.trailing_data = b""

    def receive_data(self, data: bytes) -> Accepted | None:
        """Feed response bytes; return the outcome once the head is complete (§4.2.2)."""
        head = self._reader.feed(data)
        if head is None:
            return None
        self.trailing_data = bytes(self._reader.buf)
        self._h11.receive_data(head)
        try:
            event = self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            raise HandshakeError(f"server sent a malformed HTTP response: {exc}", 502) from None
        if not isinstance(event, (h11.Response, h11.InformationalResponse)):
            raise HandshakeError("server sent no HTTP response", 502)
        if event.status_code != 101:
            raise HandshakeError(
                f"server refused the WebSocket upgrade with HTTP {event.status_code}",
                event.status_code,
            )
        headers = Headers((k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers)
        return self._check(headers)

    def _check(self, h: Headers) -> Accepted:
        if "websocket" not in _tokens(h, "upgrade") or "upgrade" not in _tokens(h, "connection"):
            raise HandshakeError(
                "server's 101 lacks Upgrade: websocket / Connection: Upgrade (RFC 6455 §4.1)", 502
            )
        if h.get_all("sec-websocket-accept") != [accept_key(self.key)]:
            raise HandshakeError("server sent a wrong Sec-WebSocket-Accept (RFC 6455 §4.1)", 502)
        protocols = h.get_all("sec-websocket-protocol")
        subprotocol = None
        if protocols:
            if len(protocols) > 1 or protocols[0].strip() not in self.subprotocols:
                raise HandshakeError(
                    f"server chose a subprotocol we did not offer: {protocols}", 502
                )
            subprotocol = protocols[0].strip()
        params = None
        for name, values in parse_extensions(", ".join(h.get_all("sec-websocket-extensions"))):
            if name != pmd.NAME or self.deflate is None or params is not None:
                raise HandshakeError(
                    f"server accepted extension {name!r} that we did not offer", 502
                )
            params = pmd.client_accept(values, self.deflate)
        return Accepted(subprotocol, params, h)
