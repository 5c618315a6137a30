"""Client-side operations over the core: lookups, get, put, join, leave, maintenance (spec/dht.md).

Theory of operation: an :class:`Operation` is started by :meth:`DHTCore.start`, sends queries
through :meth:`DHTCore.query` (naming itself as the owner) and is called back for each answer,
stall and failure. :class:`LookupOp` drives :class:`~infernet_ref.dht.lookup.Lookup` for
FIND_NODE and FIND_VALUE; :class:`PutOp` stores to the k nearest after a lookup;
:class:`BootstrapOp` is the join procedure (paper §2.3: contact the bootstrap nodes, look up our
own ID, then refresh the buckets farther than our nearest neighbour). :func:`maintenance` runs on
the core's timer: expiry, bucket refresh, liveness pings, republishing.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from infernet_ref.dht import wire
from infernet_ref.dht.lookup import Candidate, Lookup
from infernet_ref.dht.proof import leave_digest
from infernet_ref.dht.records import RecordError, expiry_of
from infernet_ref.dht.storage import ValueStore
from infernet_ref.dht.wire import Addr, Op

if TYPE_CHECKING:
    from infernet_ref.dht.protocol import DHTCore, Request

#: Refresh lookups started per maintenance tick (spreads the join refresh out).
REFRESH_PER_TICK = 2
#: Liveness pings per maintenance tick (spec/dht.md §Health).
HEALTH_PER_TICK = 8
#: FIND_VALUE pages fetched from one node at most.
MAX_PAGES = 4


class Operation(abc.ABC):
    """Base class: a client-side procedure driven by responses and timeouts."""

    op_id: int = 0
    finished: bool = False

    @abc.abstractmethod
    def start(self, core: DHTCore, now: float) -> None:
        """Send the first queries."""

    def on_response(self, core: DHTCore, req: Request, body: dict[str, Any], now: float) -> None:  # noqa: B027 - optional hook
        """An answer (already proven to come from ``req``'s contact)."""

    def on_stall(self, core: DHTCore, req: Request, now: float) -> None:  # noqa: B027 - optional hook
        """The adaptive timeout passed (spec/dht.md §Timeouts)."""

    def on_fail(self, core: DHTCore, req: Request, now: float) -> None:  # noqa: B027 - optional hook
        """Hard timeout, ERROR or failed proof."""


@dataclass(frozen=True, slots=True)
class LookupResult:
    """The outcome of a lookup: contacts nearest first, values (for FIND_VALUE) and statistics."""

    target: bytes
    contacts: list[tuple[bytes, Addr]]
    values: list[dict[str, Any]]
    queried: int
    hops: int
    started: float
    finished: float
    tokens: dict[Addr, bytes] = field(default_factory=dict, repr=False)


class LookupOp(Operation):
    """Iterative FIND_NODE / FIND_VALUE (spec/dht.md §Lookups)."""

    def __init__(
        self,
        target: bytes,
        *,
        values: bool = False,
        paths: int = 1,
        quorum: int = 0,
        settle: bool = False,
        then: Callable[[DHTCore, LookupResult, float], None] | None = None,
    ) -> None:
        self.target = target
        self.want_values = values
        self.settle = settle
        self.paths = paths
        self.quorum = quorum
        self.then = then
        self._found: ValueStore = ValueStore(max_per_key=64)
        self._value_nodes: list[Candidate] = []
        self.value_hops = 0
        self.started = 0.0
        self._local = False

    def start(self, core: DHTCore, now: float) -> None:
        self.started = now
        self.lookup = Lookup(
            self.target,
            own_id=core.node_id,
            k=core.config.k,
            alpha=core.config.alpha,
            paths=self.paths,
            exhaustive=self.want_values,
            settle=self.settle,
        )
        n = core.config.k * self.paths
        seeds = core.table.closest(self.target, n)
        if len(seeds) < n:  # a table thinned by failures: contacts that failed once may be back
            have = {c.node_id for c in seeds}
            extra = core.table.closest(self.target, n, include_failing=True)
            seeds += [c for c in extra if c.node_id not in have][: n - len(seeds)]
        self.lookup.seed([(c.node_id, c.addr) for c in seeds])
        if self.want_values:  # our own replica counts as one node that returned values
            local = core.store.get(self.target, now)
            for ev in local:
                try:
                    self._found.put(self.target, ev, core.validator.validate(self.target, ev, now))
                except RecordError:
                    continue
            self._local = bool(local)
        self._pump(core, now)

    def _query(self, core: DHTCore, c: Candidate, now: float, offset: int = 0) -> bool:
        if self.want_values:
            body: dict[str, Any] = {"key": self.target}
            if offset:
                body["o"] = offset
            op = Op.FIND_VALUE
        else:
            body, op = {"target": self.target}, Op.FIND_NODE
        tag: Any = c if not offset else ("page", c, offset)
        return core.query(c.addr, op, body, now, owner=self, claimed=c.node_id, tag=tag) is not None

    def _pump(self, core: DHTCore, now: float) -> None:
        if self.finished:
            return
        batch = self.lookup.next_queries()
        while batch:  # a skipped candidate frees its slot for the next one
            skipped = False
            for c in batch:
                # spec/dht.md §Timeouts: an address that just timed out is not asked again.
                if not c.retried and core.presumed_dead(c.addr, now):
                    self.lookup.on_fail(c, timed_out=True)
                    skipped = True
                elif not self._query(core, c, now):
                    self.lookup.on_fail(c)
                    skipped = True
            batch = self.lookup.next_queries() if skipped else []
        quorum_met = self.quorum and len(self._value_nodes) + self._local >= self.quorum
        if self.lookup.done or quorum_met:
            self._finish(core, now)

    def _collect(
        self, core: DHTCore, c: Candidate, body: dict[str, Any], offset: int, now: float
    ) -> None:
        got = False
        for ev in body.get("values", []):
            try:
                exp = core.validator.validate(self.target, ev, now)
            except RecordError:
                continue  # spec/dht.md §Lookups: a bad value is dropped, the lookup goes on
            self._found.put(self.target, ev, exp)
            got = True
        if got and not c.had_values:
            c.had_values = True
            self._value_nodes.append(c)
            if len(self._value_nodes) == 1:
                self.value_hops = c.depth
        more = body.get("more") and "values" in body
        if more and offset // wire.MAX_VALUES + 1 < MAX_PAGES:
            self._query(core, c, now, offset + len(body["values"]))

    def on_response(self, core: DHTCore, req: Request, body: dict[str, Any], now: float) -> None:
        if self.finished:
            return
        tag = req.tag
        if isinstance(tag, tuple):
            self._collect(core, tag[1], body, tag[2], now)
            self._pump(core, now)
            return
        c: Candidate = tag
        if self.want_values:
            self._collect(core, c, body, 0, now)
        nodes = [(n[0], (wire.unpack_ip(n[1]), n[2])) for n in body.get("nodes", [])]
        self.lookup.on_response(c, body["id"], nodes, body.get("tk"))
        self._pump(core, now)

    def on_stall(self, core: DHTCore, req: Request, now: float) -> None:
        if not self.finished and isinstance(req.tag, Candidate):
            self.lookup.on_stall(req.tag)
            self._pump(core, now)

    def on_fail(self, core: DHTCore, req: Request, now: float) -> None:
        if not self.finished and isinstance(req.tag, Candidate):
            self.lookup.on_fail(req.tag, timed_out=req.expired)
            self._pump(core, now)

    def _finish(self, core: DHTCore, now: float) -> None:
        self.finished = True
        res = self.lookup.result()
        if self._local and not self._value_nodes:
            hops = 0
        elif self._value_nodes:
            hops = self.value_hops
        else:
            hops = max((c.depth for c in res), default=0)
        result = LookupResult(
            self.target,
            [(c.node_id, c.addr) for c in res],
            self._found.get(self.target, now),
            self.lookup.queried,
            hops,
            self.started,
            now,
            {c.addr: c.token for c in res if c.token is not None},
        )
        if self.want_values and result.values:
            self._cache_on_path(core, res, result.values, now)
        if self.then is not None:
            self.then(core, result, now)
        core.finish(self, result)

    def _cache_on_path(
        self, core: DHTCore, res: list[Candidate], values: list[dict[str, Any]], now: float
    ) -> None:
        """Paper §2.3: store the value at the nearest node seen that did not return it."""
        for c in res:
            if not c.had_values and c.token is not None:
                for ev in values[:4]:
                    core.query(
                        c.addr, Op.STORE, {"key": self.target, "ev": ev}, now, claimed=c.node_id
                    )
                return


@dataclass(frozen=True, slots=True)
class PutResult:
    """How many of the k nearest nodes took the record (spec/dht.md §Put)."""

    key: bytes
    stored: int
    attempted: int
    lookup: LookupResult | None


class PutOp(Operation):
    """Look up the k nearest to ``key`` and STORE the event at each (spec/dht.md §Put)."""

    def __init__(self, key: bytes, event: dict[str, Any], *, paths: int = 1) -> None:
        self.key = key
        self.event = event
        self.paths = paths
        self.outstanding = 0
        self.stored = 0
        self.attempted = 0
        self.found: LookupResult | None = None

    def start(self, core: DHTCore, now: float) -> None:
        lookup = LookupOp(self.key, paths=self.paths, settle=True, then=self._stores)
        core.start(lookup, now, internal=True)

    def _stores(self, core: DHTCore, found: LookupResult, now: float) -> None:
        self.found = found
        for node_id, addr in found.contacts:
            if core.peer(addr).token is None:
                continue
            req = core.query(
                addr,
                Op.STORE,
                {"key": self.key, "ev": self.event},
                now,
                owner=self,
                claimed=node_id,
            )
            if req is not None:
                self.outstanding += 1
                self.attempted += 1
        self._maybe_done(core)

    def _maybe_done(self, core: DHTCore) -> None:
        if self.outstanding == 0 and not self.finished:
            self.finished = True
            core.finish(self, PutResult(self.key, self.stored, self.attempted, self.found))

    def on_response(self, core: DHTCore, req: Request, body: dict[str, Any], now: float) -> None:
        self.outstanding -= 1
        self.stored += 1
        self._maybe_done(core)

    def on_fail(self, core: DHTCore, req: Request, now: float) -> None:
        self.outstanding -= 1
        self._maybe_done(core)


class BootstrapOp(Operation):
    """Join (spec/dht.md §Join): prove the bootstrap nodes, self-lookup, schedule far refreshes."""

    def __init__(self, addrs: list[Addr]) -> None:
        self.addrs = list(dict.fromkeys(addrs))
        self.outstanding = 0

    def start(self, core: DHTCore, now: float) -> None:
        for addr in self.addrs:
            if core.query(addr, Op.PING, {}, now, owner=self) is not None:
                self.outstanding += 1
        if not self.outstanding:
            self._self_lookup(core, now)

    def on_response(self, core: DHTCore, req: Request, body: dict[str, Any], now: float) -> None:
        self._settle(core, now)

    def on_fail(self, core: DHTCore, req: Request, now: float) -> None:
        self._settle(core, now)

    def _settle(self, core: DHTCore, now: float) -> None:
        self.outstanding -= 1
        if self.outstanding == 0:
            self._self_lookup(core, now)

    def _self_lookup(self, core: DHTCore, now: float) -> None:
        core.start(LookupOp(core.node_id, then=self._joined), now, internal=True)

    def _joined(self, core: DHTCore, found: LookupResult, now: float) -> None:
        if core.config.join_refresh and found.contacts:
            nearest = core.table.bucket_index(found.contacts[0][0])
            for i in range(nearest):  # paper §2.3: refresh every bucket farther than the neighbour
                core.table.buckets[i].touched = now - core.config.refresh_interval
        self.finished = True
        core.finish(self, len(core.table))


def leave(core: DHTCore, now: float) -> None:
    """spec/dht.md §Leave: tell every contact, signed per recipient, then stop answering."""
    ts = int(now)
    for c in core.table.contacts():
        sig = core.prover.sign(leave_digest(c.node_id, ts), core.random(32))
        body = {"id": core.node_id, "pk": core.prover.public_key, "ts": ts, "sig": sig}
        t = core.random(wire.TXID_LEN)
        core.send_raw(wire.encode(t, wire.Kind.QUERY, Op.LEAVE, body), c.addr)
    core.closed = True


def maintenance(core: DHTCore, now: float) -> None:
    """Periodic upkeep (spec/dht.md §Maintenance)."""
    cfg = core.config
    core.store.expire(now)
    for index in core.table.stale_buckets(now, cfg.refresh_interval)[:REFRESH_PER_TICK]:
        core.table.touch(index, now)
        target = core.table.random_id_in_bucket(index, core.random(32))
        core.start(LookupOp(target), now, internal=True)
    for c in core.table.least_recently_seen(now - cfg.health_interval, HEALTH_PER_TICK):
        if not any(r.addr == c.addr for r in core.pending.values()):
            core.query(c.addr, Op.PING, {}, now, claimed=c.node_id, tag=("health", c.node_id))
    if now - core.last_republish >= cfg.republish_interval:
        core.last_republish = now
        for (key, eid), event in list(core.owned.items()):
            if expiry_of(event) <= now:
                del core.owned[(key, eid)]
                continue
            core.start(PutOp(key, event), now, internal=True)
