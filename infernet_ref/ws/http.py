"""The HTTP/1.1 messages of the opening handshake and of plain GETs (RFC 9110, RFC 6455 §4).

:class:`HttpRequest` is what a server's ``http_handler`` sees (and what a WebSocket handler
finds in ``ws.request``); :class:`HttpResponse` is what an ``http_handler`` returns for a plain
GET such as ``/.well-known/infernet``. Header names compare case-insensitively; a header may
occur several times (:meth:`Headers.get_all`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from http import HTTPStatus


class Headers:
    """An ordered, case-insensitive multi-map of HTTP header fields."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items = [(k, v) for k, v in items]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name`` or ``default``."""
        lname = name.lower()
        for k, v in self._items:
            if k.lower() == lname:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        lname = name.lower()
        return [v for k, v in self._items if k.lower() == lname]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A parsed request head: ``path`` is the request target (path and query)."""

    method: str
    path: str
    headers: Headers
    http_version: str = "1.1"
    remote_address: tuple[str, int] | None = None


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """A complete response; ``Content-Length`` and ``Connection: close`` are added when sent."""

    status: int
    headers: tuple[tuple[str, str], ...] | list[tuple[str, str]] = ()
    body: bytes = b""
    reason: str | None = None

    def to_bytes(self) -> bytes:
        """The response on the wire (RFC 9112 §4-§6); header values must be ASCII without CR/LF."""
        try:
            phrase = self.reason or HTTPStatus(self.status).phrase
        except ValueError:
            phrase = "Unknown"
        lines = [f"HTTP/1.1 {self.status} {phrase}"]
        for name, value in self.headers:
            if name.lower() in ("content-length", "connection", "transfer-encoding"):
                continue
            _check_header(name, value)
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


def _check_header(name: str, value: str) -> None:
    if any(c in name for c in ":\r\n ") or "\r" in value or "\n" in value:
        raise ValueError(f"invalid HTTP header {name!r}: {value!r}")


@dataclass(frozen=True, slots=True)
class HandshakeLimits:
    """Bounds on a request or response head (spec/ws.md "Limits")."""

    max_line: int = 8192  # request line / status line, bytes (414 beyond)
    max_head: int = 16384  # whole head incl. request line, bytes (431 beyond)
    max_headers: int = 100  # header fields (431 beyond)
