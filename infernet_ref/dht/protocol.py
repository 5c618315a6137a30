"""The sans-I/O DHT core (spec/dht.md): datagrams in with ``now``, datagrams out, next timer.

Theory of operation: :class:`DHTCore` owns the routing table, the value store, the token issuer,
the per-peer RTT and key-proof cache and the table of outstanding requests. The adapter calls
:meth:`DHTCore.receive_datagram` for every datagram, :meth:`DHTCore.handle_timer` when
:meth:`DHTCore.next_timer` is due, and sends what :meth:`DHTCore.datagrams_to_send` returns.
Queries are answered by :mod:`infernet_ref.dht.server`; the client side (lookups, put, get,
bootstrap) lives in :mod:`infernet_ref.dht.ops` and reports through :meth:`DHTCore.events`.
``now`` is Unix time in seconds (values carry wall-clock ``created_at``). Nothing a peer sends
can raise out of this class: decode errors become ERROR datagrams or silence.

A request has two deadlines (spec/dht.md §Timeouts): the adaptive one (SRTT + 4·RTTVAR per
contact, RFC 6298 §2) at which its lookup stops waiting for it, and a hard one after which a late
answer is ignored and the contact is charged a failure.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from infernet_ref.dht import ops, wire
from infernet_ref.dht.proof import Prover, challenge_digest, verify_proof
from infernet_ref.dht.ratelimit import RateLimiter
from infernet_ref.dht.records import RecordError, RecordValidator
from infernet_ref.dht.routing import RoutingTable, Update
from infernet_ref.dht.server import handle_query
from infernet_ref.dht.storage import ValueStore
from infernet_ref.dht.tokens import TokenIssuer
from infernet_ref.dht.wire import Addr, Datagram, Kind, Op, WireError
from infernet_ref.errors import LocalProtocolError


@dataclass(frozen=True, slots=True)
class DHTConfig:
    """Tunables; defaults are the values spec/dht.md names."""

    k: int = 20
    alpha: int = 3
    min_timeout: float = 0.05
    max_timeout: float = 1.0
    initial_timeout: float = 1.0
    hard_timeout: float = 4.0
    dead_ttl: float = 60.0
    refresh_interval: float = 3600.0
    health_interval: float = 900.0
    republish_interval: float = 3600.0
    maintenance_tick: float = 10.0
    token_rotate: float = 300.0
    amplification_factor: int = 3
    find_pad_to: int = 480
    rate: float = 200.0
    burst: float = 400.0
    global_rate: float = 20000.0
    global_burst: float = 40000.0
    subnet_limit: int = 2
    limit_local: bool = False
    max_pending: int = 4096
    max_admissions: int = 64
    max_peers: int = 8192
    value_quorum: int = 1
    join_refresh: bool = True


@dataclass(slots=True)
class Peer:
    """What we know of an address: its proven ID, RTT estimate and the token it gave us."""

    node_id: bytes | None = None
    srtt: float | None = None
    rttvar: float = 0.0
    token: bytes | None = None
    #: Until when lookups skip this address: it let a query reach its hard deadline unanswered
    #: and has sent nothing since (spec/dht.md §Timeouts).
    dead_until: float = 0.0


@dataclass(slots=True)
class Request:
    """An outstanding query (spec/dht.md §Transactions)."""

    t: bytes
    addr: Addr
    op: str
    sent_at: float
    soft: float
    hard: float
    nonce: bytes | None
    owner: ops.Operation | None
    tag: Any = None
    stalled: bool = False
    done: bool = False
    expired: bool = False  # reached the hard deadline unanswered


@dataclass(frozen=True, slots=True)
class OpDone:
    """An operation started through the API finished (spec/dht.md §API)."""

    op_id: int
    result: Any


@dataclass(slots=True)
class _Stats:
    sent: int = 0
    received: int = 0
    dropped: int = 0
    proofs_verified: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class DHTCore:
    """One DHT node's protocol state (spec/dht.md)."""

    def __init__(
        self,
        secret_key: bytes,
        *,
        now: float,
        random_bytes: Callable[[int], bytes],
        config: DHTConfig | None = None,
        validator: RecordValidator | None = None,
    ) -> None:
        self.config = cfg = config or DHTConfig()
        self.prover = Prover(secret_key)
        self.node_id = self.prover.node_id
        self.random = random_bytes
        self.table = RoutingTable(
            self.node_id,
            k=cfg.k,
            subnet_limit=cfg.subnet_limit,
            limit_local=cfg.limit_local,
            now=now,
        )
        self.store = ValueStore()
        self.tokens = TokenIssuer(random_bytes, now, cfg.token_rotate)
        self.validator = validator or RecordValidator()
        self.limiter = RateLimiter(
            rate=cfg.rate,
            burst=cfg.burst,
            global_rate=cfg.global_rate,
            global_burst=cfg.global_burst,
        )
        self.peers: OrderedDict[Addr, Peer] = OrderedDict()
        self.pending: dict[bytes, Request] = {}
        self._timers: list[tuple[float, int, bytes]] = []
        self._seq = itertools.count()
        self._out: list[tuple[bytes, Addr]] = []
        self._events: list[OpDone] = []
        self._op_ids = itertools.count(1)
        self.running: dict[int, ops.Operation] = {}
        self.admitting: set[Addr] = set()
        self.owned: dict[tuple[bytes, str], dict[str, Any]] = {}
        self.started = now
        self.next_maintenance = now + cfg.maintenance_tick
        self.last_republish = now
        self.stats = _Stats()
        self.srtt_all: float | None = None
        self.rttvar_all = 0.0
        self.closed = False
        self.addresses: frozenset[Addr] = frozenset()

    # ---- I/O surface -------------------------------------------------------------------
    def datagrams_to_send(self) -> list[tuple[bytes, Addr]]:
        out, self._out = self._out, []
        return out

    def events(self) -> list[OpDone]:
        ev, self._events = self._events, []
        return ev

    def next_timer(self) -> float | None:
        """The earliest time :meth:`handle_timer` must run."""
        t = self.next_maintenance
        if self._timers:
            t = min(t, self._timers[0][0])
        return t

    def send_raw(self, data: bytes, addr: Addr) -> None:
        self.stats.sent += 1
        self._out.append((data, addr))

    def finish(self, op: ops.Operation, result: Any) -> None:
        """An operation is over; internal ones (id 0) produce no event."""
        self.running.pop(op.op_id, None)
        if op.op_id:
            self._events.append(OpDone(op.op_id, result))

    def start(self, op: ops.Operation, now: float, *, internal: bool = False) -> int:
        """Run ``op``; returns its id (0 for internal operations, which report nothing)."""
        op.op_id = 0 if internal else next(self._op_ids)
        if op.op_id:
            self.running[op.op_id] = op
        op.start(self, now)
        return op.op_id

    def set_addresses(self, addrs: list[Addr]) -> None:
        """The addresses we answer at: the bound socket address and any public address the
        operator configured (spec/dht.md §Identity 2). A wildcard IP ("0.0.0.0", "::") matches any
        IP at that port. Until this is called we sign no challenge."""
        self.addresses = frozenset((str(h), int(p)) for h, p in addrs)

    def owns_address(self, ip: bytes, port: int) -> bool:
        """Whether a challenge naming packed ``ip``:``port`` names one of our addresses."""
        for host, p in self.addresses:
            if p == port and (host in ("0.0.0.0", "::") or wire.pack_ip(host) == ip):
                return True
        return False

    # ---- API (spec/dht.md §API) --------------------------------------------------------
    def bootstrap(self, addrs: list[Addr], now: float) -> int:
        """Join through ``addrs``; the result is the routing-table size after the self-lookup."""
        return self.start(ops.BootstrapOp(addrs), now)

    def find_node(self, target: bytes, now: float, *, paths: int = 1) -> int:
        """Iterative FIND_NODE; the result is a :class:`~infernet_ref.dht.ops.LookupResult`."""
        return self.start(ops.LookupOp(target, paths=paths), now)

    def get(self, key: bytes, now: float, *, paths: int = 1, quorum: int | None = None) -> int:
        """Iterative FIND_VALUE collecting every valid record (spec/dht.md §Get)."""
        q = self.config.value_quorum if quorum is None else quorum
        return self.start(ops.LookupOp(key, values=True, paths=paths, quorum=q), now)

    def put(self, key: bytes, event: dict[str, Any], now: float, *, paths: int = 1) -> int:
        """Validate locally, remember for republishing, then store at the k nearest (spec/dht.md §Put)."""
        try:
            self.validator.validate(key, event, now)
        except RecordError as exc:
            raise LocalProtocolError(f"refusing to publish: {exc}") from exc
        self.owned[(key, event["id"])] = event
        for old_key, old_id in [k for k in self.owned if k[0] == key and k[1] != event["id"]]:
            old = self.owned[(old_key, old_id)]
            if (old["pubkey"], old["kind"]) == (event["pubkey"], event["kind"]):
                del self.owned[(old_key, old_id)]
        return self.start(ops.PutOp(key, event, paths=paths), now)

    def leave(self, now: float) -> None:
        """Graceful leave (spec/dht.md §Leave)."""
        ops.leave(self, now)

    # ---- peers and timeouts ------------------------------------------------------------
    def peer(self, addr: Addr) -> Peer:
        p = self.peers.get(addr)
        if p is None:
            p = self.peers[addr] = Peer()
            if len(self.peers) > self.config.max_peers:
                self.peers.popitem(last=False)
        else:
            self.peers.move_to_end(addr)
        return p

    def proven_id(self, addr: Addr) -> bytes | None:
        p = self.peers.get(addr)
        return p.node_id if p is not None else None

    def timeout_for(self, addr: Addr) -> float:
        """RFC 6298 §2 RTO from the contact's samples, else from all samples (spec/dht.md §Timeouts)."""
        cfg = self.config
        p = self.peers.get(addr)
        if p is not None and p.srtt is not None:
            rto = p.srtt + 4 * p.rttvar
        elif self.srtt_all is not None:
            rto = self.srtt_all + 4 * self.rttvar_all
        else:
            rto = cfg.initial_timeout
        return min(cfg.max_timeout, max(cfg.min_timeout, rto))

    def presumed_dead(self, addr: Addr, now: float) -> bool:
        """Whether ``addr`` recently let a query time out and has not been heard from since."""
        p = self.peers.get(addr)
        return p is not None and p.dead_until > now

    def _sample_rtt(self, p: Peer, rtt: float) -> None:
        if p.srtt is None:
            p.srtt, p.rttvar = rtt, rtt / 2
        else:
            p.rttvar = 0.75 * p.rttvar + 0.25 * abs(p.srtt - rtt)
            p.srtt = 0.875 * p.srtt + 0.125 * rtt
        if self.srtt_all is None:
            self.srtt_all, self.rttvar_all = rtt, rtt / 2
        else:
            self.rttvar_all = 0.75 * self.rttvar_all + 0.25 * abs(self.srtt_all - rtt)
            self.srtt_all = 0.875 * self.srtt_all + 0.125 * rtt

    # ---- sending queries ---------------------------------------------------------------
    def query(
        self,
        addr: Addr,
        op: str,
        body: dict[str, Any],
        now: float,
        *,
        owner: ops.Operation | None = None,
        claimed: bytes | None = None,
        tag: Any = None,
    ) -> Request | None:
        """Send a query; adds our ID, a challenge when the key is unproven, and our token or padding."""
        if len(self.pending) >= self.config.max_pending:
            return None
        p = self.peer(addr)
        body = dict(body, id=self.node_id)
        nonce = None
        if p.node_id is None or (claimed is not None and p.node_id != claimed):
            nonce = self.random(wire.NONCE_LEN)
            body["c"] = nonce
            body["to"] = [wire.pack_ip(addr[0]), addr[1]]
        if p.token is not None:
            body["tk"] = p.token
        t = self.random(wire.TXID_LEN)
        while t in self.pending:
            t = self.random(wire.TXID_LEN)
        data = wire.encode(t, Kind.QUERY, op, body)
        if (
            p.token is None
            and op in (Op.FIND_NODE, Op.FIND_VALUE)
            and len(data) < self.config.find_pad_to
        ):
            body["pad"] = bytes(max(0, self.config.find_pad_to - len(data) - 7))
            data = wire.encode(t, Kind.QUERY, op, body)
        soft = now + self.timeout_for(addr)
        req = Request(
            t, addr, op, now, soft, max(soft, now + self.config.hard_timeout), nonce, owner, tag
        )
        self.pending[t] = req
        heapq.heappush(self._timers, (req.soft, next(self._seq), t))
        self.send_raw(data, addr)
        return req

    # ---- receiving ---------------------------------------------------------------------
    def receive_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        """Handle one datagram from ``addr`` (spec/dht.md §Processing); never raises on peer input."""
        self.stats.received += 1
        if self.closed or not self.limiter.allow(addr, now):
            self.stats.dropped += 1
            return
        try:
            dg = wire.decode(data)
        except WireError as exc:
            self.stats.dropped += 1
            if exc.txid is not None and exc.op is not None:
                self.reply_error(
                    exc.txid,
                    exc.op,
                    int(exc.code or wire.ErrorCode.PROTOCOL),
                    str(exc),
                    addr=addr,
                    req_size=len(data),
                )
            return
        if dg.y == Kind.QUERY:
            p = self.peers.get(addr)
            if p is not None:
                p.dead_until = 0.0  # it is alive after all
            handle_query(self, dg, addr, now)
        else:
            self._on_reply(dg, addr, now)

    def reply_error(
        self, t: bytes, op: str, code: int, msg: str, *, addr: Addr, req_size: int
    ) -> None:
        data = wire.encode_error(t, op, code, msg)
        limit = self.config.amplification_factor * req_size
        if len(data) > limit:
            data = wire.encode_error(t, op, code, "")
            if len(data) > limit:
                return  # spec/dht.md §Amplification: stay silent rather than amplify
        self.send_raw(data, addr)

    def _on_reply(self, dg: Datagram, addr: Addr, now: float) -> None:
        req = self.pending.get(dg.t)
        if req is None or req.addr != addr or req.op != dg.op or req.done:
            self.stats.dropped += 1
            return  # unsolicited or spoofed: spec/dht.md §Transactions
        req.done = True
        del self.pending[dg.t]
        self._release(req)
        p = self.peer(addr)
        p.dead_until = 0.0
        self._sample_rtt(p, max(0.0, now - req.sent_at))
        if dg.y == Kind.ERROR:
            self._fail(req, now)
            return
        body = dg.body
        if req.nonce is not None:
            proven = None
            if "pk" in body:
                self.stats.proofs_verified += 1
                proven = verify_proof(
                    body["pk"],
                    body["sig"],
                    challenge_digest(req.nonce, self.node_id, wire.pack_ip(addr[0]), addr[1]),
                )
            if proven is None or proven != body["id"]:
                p.node_id = None
                self._fail(req, now)
                return
            p.node_id = proven
        elif p.node_id != body["id"]:
            p.node_id = None  # the address now answers with another ID: prove it again
            self._fail(req, now)
            return
        if "tk" in body:
            p.token = body["tk"]
        self.admit(body["id"], addr, now)
        if req.owner is not None:
            req.owner.on_response(self, req, body, now)

    def admit(self, node_id: bytes, addr: Addr, now: float) -> None:
        """Offer a proven contact to the routing table; ping the LRS contact when full (paper §2.2)."""
        outcome, to_ping = self.table.update(node_id, addr, now)
        if outcome is Update.CACHED and to_ping is not None:
            self.query(to_ping.addr, Op.PING, {}, now, tag=("evict", to_ping.node_id))

    def _release(self, req: Request) -> None:
        if isinstance(req.tag, tuple) and req.tag[0] == "admit":
            self.admitting.discard(req.addr)

    def _fail(self, req: Request, now: float) -> None:
        self._release(req)
        node = self.table.node_at(req.addr)
        if node is not None:
            evict = isinstance(req.tag, tuple) and req.tag[0] == "evict"
            self.table.failed(node, evict=evict)
        if req.owner is not None:
            req.owner.on_fail(self, req, now)

    # ---- timers ------------------------------------------------------------------------
    def handle_timer(self, now: float) -> None:
        """Fire every due deadline and the periodic maintenance (spec/dht.md §Maintenance)."""
        while self._timers and self._timers[0][0] <= now:
            _, _, t = heapq.heappop(self._timers)
            req = self.pending.get(t)
            if req is None or req.done:
                continue
            if not req.stalled and req.hard > now:
                req.stalled = True
                heapq.heappush(self._timers, (req.hard, next(self._seq), t))
                if req.owner is not None:
                    req.owner.on_stall(self, req, now)
                continue
            req.done = True
            req.expired = True
            del self.pending[t]
            p = self.peers.get(req.addr)
            if p is not None:
                p.dead_until = now + self.config.dead_ttl
            self._fail(req, now)
        if now >= self.next_maintenance and not self.closed:
            self.next_maintenance = now + self.config.maintenance_tick
            ops.maintenance(self, now)
