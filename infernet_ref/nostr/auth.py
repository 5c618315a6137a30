"""NIP-42-style connection authentication (spec/nostr.md §Authentication).

Theory of operation. The server (:class:`AuthChallenger`) hands each connection a fresh random
challenge bound to its endpoint URL. The client answers with a signed kind-22242 event
(:func:`auth_response`) tagged ``["challenge", c]`` and ``["relay" | "endpoint", url]``. The server
accepts it once: the event must verify (NIP-01), the challenge must be one it issued and has not
yet consumed, the URL must equal its endpoint after normalisation, ``created_at`` must lie within
``window`` seconds of ``now``, and the event id must not have been seen before. A challenge is
consumed by the first validly signed response that names it, whether or not the remaining checks
pass, so it can never be tried twice. State is bounded:
at most ``max_pending`` outstanding challenges and ``max_seen`` remembered ids, both expiring.
Sans-I/O: every method takes ``now`` (seconds); nothing here reads a clock or a socket.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any
from urllib.parse import urlsplit

from infernet_ref.nostr.errors import AuthError, EventError
from infernet_ref.nostr.event import check_event, sign_event
from infernet_ref.nostr.kinds import Kind, check_kind_rules

#: Default acceptance window for created_at, seconds (spec/job.md §Authentication: ±600 s).
DEFAULT_WINDOW = 600
#: Challenge lifetime, seconds.
DEFAULT_TTL = 600
MIN_CHALLENGE_LEN = 16


def normalize_url(url: str) -> str:
    """Compare form of a ws/wss URL: lower-case scheme and host, default port dropped, no trailing '/'."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError as exc:
        raise AuthError(f"bad port in URL {url!r}") from exc
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default = {"ws": 80, "wss": 443}.get(scheme)
    netloc = host if port in (None, default) else f"{host}:{port}"
    path = parts.path.rstrip("/")
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{path}{query}"


def auth_response(
    challenge: str, endpoint: str, sk: bytes | str, *, created_at: int, tag: str = "relay"
) -> dict[str, Any]:
    """Return the signed kind-22242 event answering ``challenge`` at ``endpoint`` (NIP-42 §Protocol flow)."""
    template = {
        "kind": Kind.AUTH,
        "created_at": created_at,
        "tags": [[tag, endpoint], ["challenge", challenge]],
        "content": "",
    }
    return sign_event(template, sk)


def _tag_values(event: dict[str, Any], *names: str) -> list[str]:
    return [t[1] for t in event["tags"] if len(t) >= 2 and t[0] in names]


class AuthChallenger:
    """Server side: issue one-shot challenges and verify kind-22242 responses against them."""

    def __init__(
        self,
        endpoint: str,
        *,
        window: int = DEFAULT_WINDOW,
        ttl: int = DEFAULT_TTL,
        max_pending: int = 10_000,
        max_seen: int = 100_000,
    ) -> None:
        self.endpoint = normalize_url(endpoint)
        self.window, self.ttl = window, ttl
        self.max_pending, self.max_seen = max_pending, max_seen
        self._pending: OrderedDict[str, float] = OrderedDict()  # challenge -> expiry
        self._seen: OrderedDict[str, float] = OrderedDict()  # event id -> expiry

    def _expire(self, now: float) -> None:
        for table in (self._pending, self._seen):
            while table and next(iter(table.values())) <= now:
                table.popitem(last=False)

    def issue(self, now: float) -> str:
        """Return a fresh challenge (32 random bytes, hex) valid for ``ttl`` seconds."""
        self._expire(now)
        challenge = os.urandom(32).hex()
        self._pending[challenge] = now + self.ttl
        while len(self._pending) > self.max_pending:
            self._pending.popitem(last=False)  # the oldest outstanding challenge is forgotten
        return challenge

    def verify(self, event: Any, now: float, challenge: str | None = None) -> str:
        """Accept ``event`` once and return the authenticated pubkey (hex); else raise :class:`AuthError`.

        ``challenge``, when given, is the one issued on this connection: the event must answer it.
        """
        self._expire(now)
        try:
            check_event(event)
            check_kind_rules(event)
        except EventError as exc:
            raise AuthError(f"auth event invalid: {exc}") from exc
        if event["kind"] != Kind.AUTH:
            raise AuthError(f"auth event must be kind {int(Kind.AUTH)}, got {event['kind']}")
        (got,) = _tag_values(event, "challenge")
        if challenge is not None and got != challenge:
            raise AuthError("auth event answers another challenge than this connection's")
        if self._pending.pop(got, None) is None:
            raise AuthError("unknown, expired or already used challenge")
        (url,) = _tag_values(event, "relay", "endpoint")
        if normalize_url(url) != self.endpoint:
            raise AuthError(f"auth event is for {url!r}, not this endpoint {self.endpoint!r}")
        if abs(event["created_at"] - now) > self.window:
            raise AuthError(f"created_at is more than {self.window} s away from the server clock")
        if event["id"] in self._seen:
            raise AuthError("auth event replayed (id seen before)")
        self._seen[event["id"]] = now + 2 * self.window + self.ttl
        while len(self._seen) > self.max_seen:
            self._seen.popitem(last=False)
        return str(event["pubkey"])
