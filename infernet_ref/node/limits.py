"""Per-client admission limits of the aggregator (spec/job.md §Submission, error 4008).

Theory of operation. Each client key has a token bucket of ``per_minute`` submissions (burst the
same number, refilled continuously) and may hold at most ``max_active`` jobs that have not ended.
:meth:`ClientLimits.admit` is pure (it takes ``now``): it answers None to admit — taking one
token — or the reason to refuse with ``rate_limited``. Buckets that have refilled completely carry
no information and are forgotten when the table grows past ``max_clients``, so memory stays
bounded however many keys a peer invents.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ClientLimits:
    per_minute: float = 60.0
    max_active: int = 4
    max_clients: int = 10_000
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (tokens, t)

    def _tokens(self, key: str, now: float) -> float:
        tokens, then = self._buckets.get(key, (self.per_minute, now))
        return min(self.per_minute, tokens + (now - then) * self.per_minute / 60.0)

    def admit(self, key: str, active: int, now: float) -> str | None:
        """None when ``key`` may submit one more job now (a token is taken), else the reason."""
        if active >= self.max_active:
            return f"{active} jobs of this client are still running (at most {self.max_active})"
        tokens = self._tokens(key, now)
        if tokens < 1.0:
            wait = (1.0 - tokens) * 60.0 / self.per_minute
            return f"more than {self.per_minute:g} submissions a minute; retry in {wait:.1f} s"
        if len(self._buckets) >= self.max_clients and key not in self._buckets:
            self._forget_full(now)
        self._buckets[key] = (tokens - 1.0, now)
        return None

    def _forget_full(self, now: float) -> None:
        for k in [k for k in self._buckets if self._tokens(k, now) >= self.per_minute]:
            del self._buckets[k]
        if len(self._buckets) >= self.max_clients:  # every bucket is in use: drop the fullest
            fullest = max(self._buckets, key=lambda k: self._tokens(k, now))
            del self._buckets[fullest]
