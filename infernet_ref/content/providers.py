"""Content provider records in the DHT (spec/content.md §8, spec/dht.md §Keys).

A node that serves a root CID publishes a signed kind-38201 event (``["d", CIDv1]``,
``["endpoint", ws URL]``) under ``content_provider_key(cid)``. The DHT node republishes what
it stores; :class:`ContentAnnouncer` additionally re-signs every record with a fresh
``created_at`` each ``interval`` seconds so it never reaches the DHT's 24 h expiry.
:func:`find_providers` returns endpoints only from events whose signature, kind, ``d`` tag and
endpoint URL all check out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Protocol
from urllib.parse import urlsplit

from infernet_ref.content.cid import CID, parse_cid
from infernet_ref.dht.records import (
    KIND_CONTENT_PROVIDER,
    build_content_record,
    content_provider_key,
    tag_value,
)
from infernet_ref.nostr import verify_event

log = logging.getLogger("infernet.content.providers")
REPUBLISH_INTERVAL = 1800.0


class DhtLike(Protocol):
    async def put(self, key: bytes, event: dict[str, Any]) -> Any: ...
    async def get(self, key: bytes) -> list[dict[str, Any]]: ...


def provider_record(
    secret_key: bytes, cid: CID | str, endpoint: str, *, now: float
) -> dict[str, Any]:
    """The signed kind-38201 record for ``cid`` served at ``endpoint``."""
    return build_content_record(
        secret_key, str(parse_cid(cid).to_v1()), endpoint, created_at=int(now)
    )


def record_endpoint(event: dict[str, Any], cid: CID | str) -> str | None:
    """The endpoint of a valid provider record for ``cid``, else None (never raises)."""
    try:
        want = str(parse_cid(cid).to_v1())
        if not verify_event(event) or event.get("kind") != KIND_CONTENT_PROVIDER:
            return None
        if tag_value(event, "d") != want:
            return None
        url = tag_value(event, "endpoint")
        if url is None or urlsplit(url).scheme not in ("ws", "wss") or not urlsplit(url).hostname:
            return None
        return url
    except Exception:  # hostile records must never break discovery
        return None


async def find_providers(dht: DhtLike, cid: CID | str) -> list[str]:
    """Endpoints announced for ``cid`` (newest record first, de-duplicated)."""
    c = str(parse_cid(cid).to_v1())
    events = await dht.get(content_provider_key(c))
    events = sorted(
        events, key=lambda e: e.get("created_at", 0) if isinstance(e, dict) else 0, reverse=True
    )
    out: list[str] = []
    for ev in events:
        url = record_endpoint(ev, c)
        if url is not None and url not in out:
            out.append(url)
    return out


class ContentAnnouncer:
    """Announce CIDs this node serves, and re-announce them every ``interval`` seconds."""

    def __init__(
        self,
        dht: DhtLike,
        secret_key: bytes,
        endpoint: str,
        *,
        interval: float = REPUBLISH_INTERVAL,
    ) -> None:
        self.dht = dht
        self.secret_key = secret_key
        self.endpoint = endpoint
        self.interval = interval
        self.cids: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    async def announce(self, cid: CID | str) -> Any:
        c = str(parse_cid(cid).to_v1())
        self.cids.add(c)
        record = provider_record(self.secret_key, c, self.endpoint, now=time.time())
        return await self.dht.put(content_provider_key(c), record)

    def withdraw(self, cid: CID | str) -> None:
        """Stop re-announcing ``cid`` (its record expires from the DHT by itself)."""
        self.cids.discard(str(parse_cid(cid).to_v1()))

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            for c in sorted(self.cids):
                try:
                    await self.announce(c)
                except Exception as exc:  # keep republishing the others
                    log.warning("re-announcing %s failed: %s", c, exc)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
