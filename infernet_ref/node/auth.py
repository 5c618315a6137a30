"""Connection authentication over the identity layer (spec/job.md §Authentication).

Thin glue: the NIP-42-style challenge/response itself lives in :mod:`infernet_ref.nostr.auth`
(:class:`~infernet_ref.nostr.auth.AuthChallenger` issues one-shot challenges bound to the
endpoint, verifies kind-22242 responses once and remembers their ids against replay). Here its
:class:`~infernet_ref.nostr.AuthError` becomes the job protocol's 4002.
"""

from __future__ import annotations

import math
from typing import Any

from infernet_ref.node.errors import ErrorCode, JobProtocolError
from infernet_ref.nostr.auth import AuthChallenger, auth_response
from infernet_ref.nostr.errors import NostrError

AUTH_KIND = 22242  # notes/CONTRACTS.md event kinds; NIP-42 ephemeral auth

__all__ = ["AUTH_KIND", "AuthChallenger", "check_auth_event", "make_auth_event"]


def make_auth_event(
    secret_key: bytes, *, challenge: str, endpoint: str, now: float
) -> dict[str, Any]:
    """Sign the kind-22242 response to ``challenge`` for ``endpoint``."""
    return auth_response(
        challenge, endpoint, secret_key, created_at=math.floor(now), tag="endpoint"
    )


def check_auth_event(event: Any, *, challenger: AuthChallenger, challenge: str, now: float) -> str:
    """Return the authenticated key, or raise :class:`JobProtocolError` 4002 (spec/job.md)."""
    try:
        return challenger.verify(event, now, challenge)
    except (NostrError, ValueError, TypeError, KeyError) as exc:
        raise JobProtocolError(f"authentication failed: {exc}", ErrorCode.AUTH_FAILED) from exc
