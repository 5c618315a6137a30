"""The value store (spec/dht.md §Values: storage rules and caps).

Theory of operation: a key holds several publishers' records. A record's slot is
(publisher, kind, ``d`` tag) — the NIP-01 address of an addressable event — and per slot the
newest ``created_at`` wins (ties: the lower id, NIP-01 §Kinds). Caps bound everything an outsider
can make us hold: records per key, records per publisher across keys, keys, and bytes. A full key
or publisher refuses new slots rather than evicting live ones (newer versions of an existing slot
are always taken). Expiry runs from a heap with lazy deletion; the store never reads a clock, the
caller passes ``now`` (Unix seconds). Records must already have passed records.RecordValidator.
"""

from __future__ import annotations

import enum
import heapq
from dataclasses import dataclass
from typing import Any

from infernet_ref.dht.records import event_size, tag_value

#: spec/dht.md §Values caps (defaults).
MAX_PER_KEY = 32
MAX_PER_PUBLISHER = 256
MAX_KEYS = 65536
MAX_BYTES = 64 << 20

Slot = tuple[str, int, str]


class StoreResult(enum.Enum):
    STORED = "stored"
    UNCHANGED = "unchanged"  # we already hold this or a newer version
    KEY_FULL = "key full"
    PUBLISHER_FULL = "publisher full"
    STORE_FULL = "store full"


@dataclass(slots=True)
class Stored:
    event: dict[str, Any]
    expires_at: float
    size: int


class ValueStore:
    """Records by key with per-slot replacement, caps and expiry (spec/dht.md §Values)."""

    def __init__(
        self,
        *,
        max_per_key: int = MAX_PER_KEY,
        max_per_publisher: int = MAX_PER_PUBLISHER,
        max_keys: int = MAX_KEYS,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self.max_per_key = max_per_key
        self.max_per_publisher = max_per_publisher
        self.max_keys = max_keys
        self.max_bytes = max_bytes
        self._data: dict[bytes, dict[Slot, Stored]] = {}
        self._per_publisher: dict[str, int] = {}
        self._heap: list[tuple[float, bytes, Slot]] = []
        self.bytes = 0

    def __len__(self) -> int:
        return sum(len(v) for v in self._data.values())

    @staticmethod
    def slot_of(event: dict[str, Any]) -> Slot:
        return (event["pubkey"], event["kind"], tag_value(event, "d") or "")

    def put(self, key: bytes, event: dict[str, Any], expires_at: float) -> StoreResult:
        """Store a validated record under ``key`` (spec/dht.md §Values)."""
        slot = self.slot_of(event)
        entries = self._data.get(key)
        old = entries.get(slot) if entries is not None else None
        if old is not None:
            o = old.event
            if (o["created_at"], _neg_id(o["id"])) >= (event["created_at"], _neg_id(event["id"])):
                return StoreResult.UNCHANGED
        else:
            if entries is None and len(self._data) >= self.max_keys:
                return StoreResult.STORE_FULL
            if entries is not None and len(entries) >= self.max_per_key:
                return StoreResult.KEY_FULL
            if self._per_publisher.get(slot[0], 0) >= self.max_per_publisher:
                return StoreResult.PUBLISHER_FULL
        size = event_size(event)
        if self.bytes + size - (old.size if old else 0) > self.max_bytes:
            return StoreResult.STORE_FULL
        if entries is None:
            entries = self._data[key] = {}
        if old is None:
            self._per_publisher[slot[0]] = self._per_publisher.get(slot[0], 0) + 1
        else:
            self.bytes -= old.size
        entries[slot] = Stored(event, expires_at, size)
        self.bytes += size
        heapq.heappush(self._heap, (expires_at, key, slot))
        return StoreResult.STORED

    def get(self, key: bytes, now: float) -> list[dict[str, Any]]:
        """Live records under ``key``, newest first."""
        entries = self._data.get(key)
        if not entries:
            return []
        live = [s for s in entries.values() if s.expires_at > now]
        live.sort(key=lambda s: (-s.event["created_at"], s.event["id"]))
        return [s.event for s in live]

    def _drop(self, key: bytes, slot: Slot) -> None:
        entries = self._data[key]
        st = entries.pop(slot)
        self.bytes -= st.size
        n = self._per_publisher[slot[0]] - 1
        if n:
            self._per_publisher[slot[0]] = n
        else:
            del self._per_publisher[slot[0]]
        if not entries:
            del self._data[key]

    def expire(self, now: float) -> int:
        """Drop every record whose expiry passed; returns how many went."""
        n = 0
        while self._heap and self._heap[0][0] <= now:
            exp, key, slot = heapq.heappop(self._heap)
            st = self._data.get(key, {}).get(slot)
            if st is not None and st.expires_at == exp:
                self._drop(key, slot)
                n += 1
        if len(self._heap) > 4 * max(16, len(self)):  # compact stale heap entries
            self._heap = [
                (s.expires_at, k, sl) for k, e in self._data.items() for sl, s in e.items()
            ]
            heapq.heapify(self._heap)
        return n

    def next_expiry(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def keys(self) -> list[bytes]:
        return list(self._data)


def _neg_id(event_id: str) -> tuple[int, ...]:
    """Order helper: a lower id must win a created_at tie, so compare on the negated bytes."""
    return tuple(-b for b in bytes.fromhex(event_id))
