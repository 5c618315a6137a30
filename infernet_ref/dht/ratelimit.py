"""Per-source rate limits (spec/dht.md §Rate limits).

A token bucket per source address (IP and port) and one for the whole node. The table of sources
is an LRU capped at ``max_sources``, so a flood from many spoofed addresses costs a bounded
amount of memory; a source pushed out simply starts again with a full bucket.
"""

from __future__ import annotations

from collections import OrderedDict

from infernet_ref.dht.wire import Addr


class RateLimiter:
    """Token buckets keyed by source, plus a global bucket."""

    def __init__(
        self,
        *,
        rate: float,
        burst: float,
        global_rate: float,
        global_burst: float,
        max_sources: int = 4096,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.global_rate = global_rate
        self.global_burst = global_burst
        self.max_sources = max_sources
        self._buckets: OrderedDict[Addr, list[float]] = OrderedDict()
        self._global = [global_burst, 0.0]
        self.dropped = 0

    @staticmethod
    def _take(bucket: list[float], rate: float, burst: float, now: float) -> bool:
        tokens = min(burst, bucket[0] + (now - bucket[1]) * rate) if now > bucket[1] else bucket[0]
        bucket[1] = max(now, bucket[1])
        if tokens < 1.0:
            bucket[0] = tokens
            return False
        bucket[0] = tokens - 1.0
        return True

    def allow(self, source: Addr, now: float) -> bool:
        """Charge one datagram from ``source``; False means drop it silently."""
        b = self._buckets.get(source)
        if b is None:
            b = [self.burst, now]
            self._buckets[source] = b
            if len(self._buckets) > self.max_sources:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(source)
        if not self._take(b, self.rate, self.burst, now):
            self.dropped += 1
            return False
        if not self._take(self._global, self.global_rate, self.global_burst, now):
            self.dropped += 1
            return False
        return True

    def __len__(self) -> int:
        return len(self._buckets)
