"""Keepalive timers (spec/ws.md §5.1): ping every ``interval``, give up after ``timeout``.

The adapter owns one :class:`Keepalive` per connection. It calls ``send_ping(payload)`` every
``interval`` seconds after the last answered ping, and ``expired()`` if the pong with that
payload (RFC 6455 §5.5.3) does not arrive within ``timeout``. Timers are ``loop.call_later``
handles; nothing runs when both values are ``None``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable


class Keepalive:
    """Ping/pong liveness check of one connection."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        interval: float | None,
        timeout: float | None,
        send_ping: Callable[[bytes], bool],
        expired: Callable[[], None],
    ) -> None:
        self._loop = loop
        self.interval = interval
        self.timeout = timeout
        self._send_ping = send_ping  # returns False when the connection can no longer send
        self._expired = expired
        self._payload: bytes | None = None
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Schedule the next ping ``interval`` seconds from now."""
        self.stop()
        if self.interval is not None:
            self._handle = self._loop.call_later(self.interval, self._ping)

    def stop(self) -> None:
        """Cancel whatever timer is pending."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def pong(self, payload: bytes) -> None:
        """A pong arrived; if it answers our ping, schedule the next one."""
        if payload == self._payload:
            self._payload = None
            self.start()

    def _ping(self) -> None:
        self._payload = os.urandom(4)
        if not self._send_ping(self._payload):
            self._payload = None
            return
        if self.timeout is not None:
            self._handle = self._loop.call_later(self.timeout, self._timeout)

    def _timeout(self) -> None:
        if self._payload is not None:
            self._expired()
