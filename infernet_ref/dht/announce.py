"""Keeping a provider announcement published (spec/dht.md §Provider announcements).

Theory of operation: an :class:`Announcer` polls a callable that returns the provider's current
announcement document. It publishes a fresh kind-38200 event (with an ``expiration`` tag) under
every key the event may be stored under whenever the document changed in anything but
``uptime``, and otherwise every ``interval`` seconds, so stale announcements expire by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from infernet_ref.dht.records import build_announcement, record_keys

if TYPE_CHECKING:
    from infernet_ref.dht.node import DHTNode

#: spec/dht.md §Provider announcements 38.
ANNOUNCE_INTERVAL = 600.0
ANNOUNCE_TTL = 1800


def _material(info: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in info.items() if k != "uptime"}


class Announcer:
    """Publishes a provider's announcement on change and on a timer."""

    def __init__(
        self,
        node: DHTNode,
        secret_key: bytes,
        info: Callable[[], dict[str, Any]],
        *,
        interval: float = ANNOUNCE_INTERVAL,
        ttl: int = ANNOUNCE_TTL,
        check_every: float = 5.0,
    ) -> None:
        self.node = node
        self._sk = secret_key
        self._info = info
        self.interval = interval
        self.ttl = ttl
        self.check_every = check_every
        self._last: dict[str, Any] | None = None
        self._last_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self.published = 0

    async def announce(self) -> int:
        """Publish now; returns how many STOREs were taken across the announcement's keys."""
        info = self._info()
        created = max(int(time.time()), int(self._last_at) + 1)  # newer than what we sent last
        ev = build_announcement(self._sk, info, created_at=created, ttl=self.ttl)
        stored = 0
        for key in record_keys(ev):
            stored += (await self.node.put(key, ev)).stored
        self._last, self._last_at = _material(info), float(created)
        self.published += 1
        return stored

    async def check(self) -> bool:
        """Publish if the document changed or the interval passed; True when it published."""
        info = self._info()
        if (
            self._last is None
            or _material(info) != self._last
            or time.time() - self._last_at >= self.interval
        ):
            await self.announce()
            return True
        return False

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # a failed round is retried at the next check
                await self.check()
            await asyncio.sleep(self.check_every)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
