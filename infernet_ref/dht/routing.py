"""The Kademlia routing table (spec/dht.md §Routing table; Maymounkov & Mazières 2002 §2.2, §4.1).

Theory of operation: the 256-bit ID space is split into 256 buckets by the length of the prefix a
node ID shares with ours (bucket ``i`` holds IDs whose first ``i`` bits equal ours and whose bit
``i`` differs). Each bucket holds at most ``k`` contacts ordered least-recently-seen first, plus a
replacement cache of the most recently seen candidates that did not fit. Only contacts that have
proven their key (spec/dht.md §Identity) are offered to the table; the table itself never talks to
the network. When a bucket is full, :meth:`RoutingTable.update` answers "ping this least-recently
seen contact" and parks the newcomer in the replacement cache (ping-before-evict, paper §2.2); the
core reports the ping's outcome with :meth:`RoutingTable.seen` or :meth:`RoutingTable.failed`.
A per-bucket limit on contacts from one IPv4 /24 or IPv6 /48 (S/Kademlia §4.1, BEP 42 spirit)
bounds what one operator's address block can occupy; local addresses are exempt unless asked.
"""

from __future__ import annotations

import enum
import heapq
import ipaddress
from dataclasses import dataclass, field

from infernet_ref.dht.wire import Addr

ID_BITS = 256
#: spec/dht.md §Routing table: bucket size.
K = 20
#: spec/dht.md §Routing table: consecutive failures after which a contact is dropped even with
#: no replacement waiting.
MAX_FAILS = 3


@dataclass(slots=True)
class Contact:
    """A proven contact: ``node_id`` = sha256(public key), seen at ``addr``."""

    node_id: bytes
    addr: Addr
    first_seen: float
    last_seen: float
    fails: int = 0
    int_id: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        self.int_id = int.from_bytes(self.node_id, "big")

    def uptime(self, now: float) -> float:
        """Seconds since this contact was first proven and continuously kept (spec/dht.md §Health)."""
        return max(0.0, now - self.first_seen)


class Update(enum.Enum):
    ADDED = "added"
    REFRESHED = "refreshed"
    CACHED = "cached"  # parked in the replacement cache
    REJECTED = "rejected"


@dataclass(slots=True)
class _Bucket:
    contacts: list[Contact] = field(default_factory=list)
    replacements: list[Contact] = field(default_factory=list)
    touched: float = 0.0
    pinging: bytes | None = None


def _subnet(host: str, limit_local: bool) -> str | None:
    """The /24 (IPv4) or /48 (IPv6) of ``host``; None when the limit does not apply to it."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if (ip.is_loopback or ip.is_private or ip.is_link_local) and not limit_local:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{host}/{prefix}", strict=False))


class RoutingTable:
    """k-buckets with LRS eviction, a replacement cache and a subnet limit (spec/dht.md §Routing table)."""

    def __init__(
        self,
        own_id: bytes,
        *,
        k: int = K,
        replacement_size: int | None = None,
        subnet_limit: int = 2,
        limit_local: bool = False,
        now: float = 0.0,
    ) -> None:
        self.own_id = own_id
        self.own_int = int.from_bytes(own_id, "big")
        self.k = k
        self.replacement_size = k if replacement_size is None else replacement_size
        self.subnet_limit = subnet_limit
        self.limit_local = limit_local
        self.buckets = [_Bucket(touched=now) for _ in range(ID_BITS)]
        self._index: dict[bytes, Contact] = {}
        self._by_addr: dict[Addr, bytes] = {}
        #: No bucket deeper than this was ever filled (an upper bound; buckets may empty later).
        self._top = -1

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, node_id: bytes) -> bool:
        return node_id in self._index

    def get(self, node_id: bytes) -> Contact | None:
        return self._index.get(node_id)

    def node_at(self, addr: Addr) -> bytes | None:
        """The node ID of the table contact at ``addr``, if any."""
        return self._by_addr.get(addr)

    def contacts(self) -> list[Contact]:
        return list(self._index.values())

    def bucket_index(self, node_id: bytes) -> int:
        """Length of the prefix ``node_id`` shares with ours (255 for the nearest bucket)."""
        d = self.own_int ^ int.from_bytes(node_id, "big")
        return ID_BITS - d.bit_length() if d else ID_BITS - 1

    def _subnet_full(self, bucket: _Bucket, addr: Addr) -> bool:
        net = _subnet(addr[0], self.limit_local)
        if net is None:
            return False
        same = sum(1 for c in bucket.contacts if _subnet(c.addr[0], True) == net)
        return same >= self.subnet_limit

    def update(self, node_id: bytes, addr: Addr, now: float) -> tuple[Update, Contact | None]:
        """Offer a proven contact seen at ``now`` (paper §2.2).

        Returns the outcome and, when the bucket is full and its least-recently-seen contact
        should be pinged before eviction, that contact.
        """
        if node_id == self.own_id:
            return Update.REJECTED, None
        index = self.bucket_index(node_id)
        b = self.buckets[index]
        b.touched = now
        old = self._index.get(node_id)
        if old is not None:
            if old.addr != addr:
                if old.fails == 0:
                    return Update.REJECTED, None  # keep the known-good address (paper §2.2)
                self._by_addr.pop(old.addr, None)
                old.addr = addr
                self._by_addr[addr] = node_id
            old.last_seen = now
            old.fails = 0
            b.contacts.remove(old)
            b.contacts.append(old)
            if b.pinging == node_id:
                b.pinging = None
            return Update.REFRESHED, None
        other = self._by_addr.get(addr)
        if other is not None:  # the address now proves another key: the old one is gone
            self.remove(other)
        if self._subnet_full(b, addr):
            return Update.REJECTED, None
        contact = Contact(node_id, addr, now, now)
        if len(b.contacts) < self.k:
            b.contacts.append(contact)
            self._top = max(self._top, index)
            self._index[node_id] = contact
            self._by_addr[addr] = node_id
            return Update.ADDED, None
        self._cache(b, contact)
        if b.pinging is None:
            b.pinging = b.contacts[0].node_id
            return Update.CACHED, b.contacts[0]
        return Update.CACHED, None

    def _cache(self, b: _Bucket, contact: Contact) -> None:
        b.replacements = [r for r in b.replacements if r.node_id != contact.node_id]
        b.replacements.append(contact)
        if len(b.replacements) > self.replacement_size:
            del b.replacements[0]

    def wants(self, node_id: bytes) -> bool:
        """Whether a contact with this ID, once proven, would enter the table or a free cache slot."""
        if node_id == self.own_id or node_id in self._index:
            return False
        b = self.buckets[self.bucket_index(node_id)]
        if len(b.contacts) < self.k:
            return True
        return len(b.replacements) < self.replacement_size and all(
            r.node_id != node_id for r in b.replacements
        )

    def seen(self, node_id: bytes, now: float) -> None:
        """A table contact answered: it becomes most recently seen."""
        c = self._index.get(node_id)
        if c is not None:
            self.update(node_id, c.addr, now)

    def failed(self, node_id: bytes, *, evict: bool = False) -> Contact | None:
        """A request to a table contact timed out (paper §4.1: stale contacts are replaced).

        The contact goes once a replacement waits (or on the ping-before-evict failure), or after
        :data:`MAX_FAILS` failures in a row. Returns the replacement promoted, if any.
        """
        c = self._index.get(node_id)
        if c is None:
            return None
        c.fails += 1
        b = self.buckets[self.bucket_index(node_id)]
        if b.pinging == node_id:
            b.pinging = None
            evict = True
        if not (evict or c.fails >= MAX_FAILS or (b.replacements and c.fails >= 2)):
            return None
        self.remove(node_id)
        while b.replacements:
            r = b.replacements.pop()
            if r.node_id not in self._index and r.addr not in self._by_addr:
                b.contacts.append(r)
                self._index[r.node_id] = r
                self._by_addr[r.addr] = r.node_id
                return r
        return None

    def remove(self, node_id: bytes) -> None:
        """Forget a contact (graceful LEAVE, key change at its address)."""
        c = self._index.pop(node_id, None)
        if c is None:
            return
        self._by_addr.pop(c.addr, None)
        b = self.buckets[self.bucket_index(node_id)]
        b.contacts.remove(c)
        if b.pinging == node_id:
            b.pinging = None

    def closest(
        self, target: bytes, n: int | None = None, *, include_failing: bool = False
    ) -> list[Contact]:
        """The ``n`` (default k) contacts nearest to ``target`` by XOR distance (paper §2.1).

        Only the buckets that can hold them are scanned. With ``d`` = our ID XOR the target,
        the contacts of bucket ``j`` (those that differ from our ID first at bit ``j``) are at
        distances that agree with ``d`` above bit ``j`` and differ from it at bit ``j``: the
        buckets are disjoint distance ranges, ordered by ``d ^ 2**(255 - j)``. Whole buckets are
        taken in that order until ``n`` contacts are in the pool, then the pool is sorted.
        """
        n = n or self.k
        t = int.from_bytes(target, "big")
        d = self.own_int ^ t
        buckets = self.buckets
        order = sorted(
            (d ^ (1 << (ID_BITS - 1 - j)), j) for j in range(self._top + 1) if buckets[j].contacts
        )
        pool: list[Contact] = []
        for _, j in order:
            if len(pool) >= n:
                break
            cs = buckets[j].contacts
            pool.extend(cs if include_failing else [c for c in cs if c.fails == 0])
        return heapq.nsmallest(n, pool, key=lambda c: c.int_id ^ t)

    def deepest_bucket(self) -> int:
        """Index of the deepest non-empty bucket (-1 when the table is empty)."""
        for i in range(ID_BITS - 1, -1, -1):
            if self.buckets[i].contacts:
                return i
        return -1

    def stale_buckets(self, now: float, interval: float) -> list[int]:
        """Buckets up to one past the deepest non-empty one untouched for ``interval`` (paper §2.3)."""
        last = min(self.deepest_bucket() + 1, ID_BITS - 1)
        return [i for i in range(last + 1) if now - self.buckets[i].touched >= interval]

    def touch(self, index: int, now: float) -> None:
        self.buckets[index].touched = now

    def random_id_in_bucket(self, index: int, rand: bytes) -> bytes:
        """An ID sharing exactly ``index`` prefix bits with ours, filled from 32 random bytes."""
        r = int.from_bytes(rand, "big")
        flip = 1 << (ID_BITS - 1 - index)
        low_mask = flip - 1
        high = self.own_int & ~((flip << 1) - 1)
        value = high | ((self.own_int & flip) ^ flip) | (r & low_mask)
        return value.to_bytes(32, "big")

    def least_recently_seen(self, older_than: float, limit: int) -> list[Contact]:
        """Up to ``limit`` contacts not heard from since ``older_than`` (spec/dht.md §Health)."""
        old = [c for c in self._index.values() if c.last_seen < older_than]
        old.sort(key=lambda c: c.last_seen)
        return old[:limit]
