"""WebSocket extensions (RFC 6455 §9): header grammar and the permessage-deflate extension.

``Sec-WebSocket-Extensions`` is a comma-separated list of ``name; param[=value]`` items
(§9.1, values are tokens or quoted strings). :func:`parse_extensions` turns it into
``[(name, [(param, value | None), ...]), ...]`` and raises
:class:`~infernet_ref.ws.errors.HandshakeError` on anything outside the grammar.
"""

from __future__ import annotations

import re

from infernet_ref.ws.errors import HandshakeError

ExtensionItem = tuple[str, list[tuple[str, str | None]]]

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_PARAM_RE = re.compile(rf"\s*({_TOKEN})\s*(?:=\s*(?:({_TOKEN})|\"((?:[^\"\\]|\\.)*)\"))?\s*")
_TOKEN_RE = re.compile(_TOKEN)


def parse_extensions(header: str) -> list[ExtensionItem]:
    """Parse a ``Sec-WebSocket-Extensions`` value (RFC 6455 §9.1)."""
    items: list[ExtensionItem] = []
    for part in header.split(","):
        if not part.strip():
            continue
        pieces = part.split(";")
        name = pieces[0].strip()
        if not _TOKEN_RE.fullmatch(name):
            raise HandshakeError(f"malformed Sec-WebSocket-Extensions item {part.strip()!r}")
        params: list[tuple[str, str | None]] = []
        for raw in pieces[1:]:
            m = _PARAM_RE.fullmatch(raw)
            if m is None:
                raise HandshakeError(f"malformed extension parameter {raw.strip()!r}")
            value = m.group(2)
            if m.group(3) is not None:
                value = re.sub(r"\\(.)", r"\1", m.group(3))
                if not _TOKEN_RE.fullmatch(value):  # §9.1: quoted values must still be tokens
                    raise HandshakeError(f"extension parameter value {value!r} is not a token")
            params.append((m.group(1).lower(), value))
        items.append((name.lower(), params))
    return items


def format_extension(name: str, params: list[tuple[str, str | None]]) -> str:
    """One ``Sec-WebSocket-Extensions`` item."""
    return "; ".join([name] + [p if v is None else f"{p}={v}" for p, v in params])
