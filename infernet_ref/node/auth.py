"""Connection authentication with NIP-42-style kind-22242 events (spec/job.md §Authentication).

Pure functions plus a :class:`ReplayGuard` that remembers accepted auth event ids until they are
too old to be accepted anyway (created_at outside ±``AUTH_WINDOW`` of the server clock), so the
memory it needs is bounded by the accept rate times twice the window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from infernet_ref.node.errors import ErrorCode, JobProtocolError

AUTH_KIND = 22242  # notes/CONTRACTS.md event kinds; NIP-42 ephemeral auth
AUTH_WINDOW = 600  # seconds either side of the server clock
MAX_REMEMBERED = 1_000_000


@dataclass
class ReplayGuard:
    """Auth event ids accepted within the window; ``remember`` refuses one seen before."""

    window: int = AUTH_WINDOW
    _seen: dict[str, float] = field(default_factory=dict)

    def remember(self, event_id: str, now: float) -> bool:
        """Record ``event_id``; False if it was already used (a replay)."""
        if len(self._seen) > MAX_REMEMBERED // 2 or len(self._seen) % 1024 == 0:
            self.prune(now)
        if event_id in self._seen:
            return False
        if len(self._seen) >= MAX_REMEMBERED:
            return False  # refuse rather than forget: a flood cannot open a replay window
        self._seen[event_id] = now + 2 * self.window
        return True

    def prune(self, now: float) -> None:
        self._seen = {k: exp for k, exp in self._seen.items() if exp > now}


def make_auth_event(
    secret_key: bytes, *, challenge: str, endpoint: str, now: float
) -> dict[str, Any]:
    """Sign the kind-22242 response to ``challenge`` for ``endpoint``."""
    from infernet_ref.nostr import sign_event  # noqa: PLC0415

    template = {
        "kind": AUTH_KIND,
        "tags": [["endpoint", endpoint], ["challenge", challenge]],
        "content": "",
        "created_at": math.floor(now),
    }
    return sign_event(template, secret_key)


def _tag(event: dict[str, Any], name: str) -> str | None:
    values = [t[1] for t in event["tags"] if len(t) >= 2 and t[0] == name]
    return values[0] if len(values) == 1 else None


def check_auth_event(
    event: Any, *, challenge: str, endpoint: str, now: float, guard: ReplayGuard
) -> None:
    """Raise :class:`JobProtocolError` (4002) unless ``event`` answers ``challenge`` (spec/job.md)."""
    from infernet_ref.nostr import verify_event  # noqa: PLC0415

    if not verify_event(event):
        raise JobProtocolError("auth event id or signature does not verify", ErrorCode.AUTH_FAILED)
    if event["kind"] != AUTH_KIND:
        raise JobProtocolError(
            f"auth event kind {event['kind']} is not {AUTH_KIND}", ErrorCode.AUTH_FAILED
        )
    if _tag(event, "challenge") != challenge:
        raise JobProtocolError(
            "auth event does not carry this connection's challenge", ErrorCode.AUTH_FAILED
        )
    if _tag(event, "endpoint") != endpoint:
        raise JobProtocolError("auth event names another endpoint", ErrorCode.AUTH_FAILED)
    if abs(event["created_at"] - now) > guard.window:
        raise JobProtocolError(
            "auth event created_at is outside the accepted window", ErrorCode.AUTH_FAILED
        )
    if not guard.remember(event["id"], now):
        raise JobProtocolError("auth event was already used (replay)", ErrorCode.AUTH_FAILED)
