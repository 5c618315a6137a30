"""Write tokens and address tokens bound to the requester's address (spec/dht.md §Write tokens).

Theory of operation (BEP 5 §get_peers "token"): every response carries ``tk``, a keyed hash of
the requester's IP address and port under a secret that rotates every ``rotate_interval``
seconds. A token is accepted while it matches the current or the previous secret, so it lives
between one and two intervals. The same token serves two purposes: a STORE must present it (the
requester proves it can receive datagrams at the address it writes from), and any query that
presents it marks its source address as verified for the amplification rule (spec/dht.md
§Amplification). Secrets come from the injected random source; the core never reads a clock.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from infernet_ref.dht.wire import pack_ip

#: spec/dht.md §Write tokens: token length in bytes.
TOKEN_LEN = 8
#: spec/dht.md §Write tokens: the secret rotates at this interval (seconds).
ROTATE_INTERVAL = 300.0


class TokenIssuer:
    """Issues and checks address-bound tokens with a rotating secret."""

    __slots__ = ("_current", "_previous", "_random", "_rotate_at", "interval")

    def __init__(
        self, random_bytes: Callable[[int], bytes], now: float, interval: float = ROTATE_INTERVAL
    ) -> None:
        self._random = random_bytes
        self.interval = interval
        self._current = random_bytes(32)
        self._previous = random_bytes(32)
        self._rotate_at = now + interval

    def _maybe_rotate(self, now: float) -> None:
        if now >= self._rotate_at:
            # More than one interval passed: both secrets are stale.
            stale = now >= self._rotate_at + self.interval
            self._previous = self._random(32) if stale else self._current
            self._current = self._random(32)
            self._rotate_at = now + self.interval

    @staticmethod
    def _mac(secret: bytes, addr: tuple[str, int]) -> bytes:
        msg = pack_ip(addr[0]) + addr[1].to_bytes(2, "big")
        return hashlib.blake2b(msg, key=secret, digest_size=TOKEN_LEN).digest()

    def issue(self, addr: tuple[str, int], now: float) -> bytes:
        """The token for ``addr`` under the current secret (spec/dht.md §Write tokens)."""
        self._maybe_rotate(now)
        return self._mac(self._current, addr)

    def check(self, token: bytes, addr: tuple[str, int], now: float) -> bool:
        """True when ``token`` was issued to ``addr`` under the current or previous secret."""
        self._maybe_rotate(now)
        if len(token) != TOKEN_LEN:
            return False
        return hmac.compare_digest(token, self._mac(self._current, addr)) or hmac.compare_digest(
            token, self._mac(self._previous, addr)
        )

    def next_rotation(self) -> float:
        """When the secret rotates next."""
        return self._rotate_at
