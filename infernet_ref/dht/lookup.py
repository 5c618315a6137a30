"""The iterative node lookup as a state machine (spec/dht.md §Lookups; paper §2.3; S/Kademlia §4.4).

Theory of operation: a :class:`Lookup` holds, per path, a shortlist of candidates sorted by XOR
distance to the target. :meth:`Lookup.next_queries` hands out up to ``alpha`` candidates per path to
query, always the nearest not-yet-queried among the path's ``k`` nearest live candidates. The core
reports each outcome: :meth:`on_response` (with the contacts the answer carried),
:meth:`on_stall` (the per-contact adaptive timeout passed: the slot is freed and the contact no
longer counts towards the ``k`` nearest, but a late answer is still used) and :meth:`on_fail`
(the hard timeout, an error or a proof that failed). A path terminates when its ``k`` nearest
live candidates have all answered (paper §2.3). With ``paths = d > 1`` the seeds are dealt round
robin to ``d`` paths and a node is visited by at most one path (S/Kademlia §4.4 disjoint paths),
so an adversary on one path cannot steer the others. In ``exhaustive`` mode (value lookups) a
path whose k nearest all answered goes on through its farther candidates until none are left
or the caller stops it. In ``settle`` mode (lookups that place replicas) a path also waits for
stalled queries among its k nearest to answer or fail. The lookup never sends anything itself.
"""

from __future__ import annotations

import bisect
import enum
from dataclasses import dataclass, field

from infernet_ref.dht.wire import Addr

#: spec/dht.md §Lookups: parallelism.
ALPHA = 3
#: Shortlist cap per path, in multiples of k (bounds memory under floods of fake contacts).
SHORTLIST_FACTOR = 4


class CandState(enum.IntEnum):
    NEW = 0
    IN_FLIGHT = 1
    STALLED = 2
    ANSWERED = 3
    FAILED = 4


@dataclass(slots=True)
class Candidate:
    """A node the lookup knows of; ``node_id`` is what was claimed until it answers."""

    node_id: bytes
    addr: Addr
    dist: int
    path: int
    depth: int
    state: CandState = CandState.NEW
    token: bytes | None = None
    had_values: bool = False
    timed_out: bool = False
    retried: bool = False

    def __lt__(self, other: Candidate) -> bool:
        return self.dist < other.dist


@dataclass(slots=True)
class _Path:
    shortlist: list[Candidate] = field(default_factory=list)
    in_flight: int = 0
    done: bool = False


class Lookup:
    """One iterative lookup for ``target`` (spec/dht.md §Lookups)."""

    def __init__(
        self,
        target: bytes,
        *,
        own_id: bytes,
        k: int = 20,
        alpha: int = ALPHA,
        paths: int = 1,
        exhaustive: bool = False,
        settle: bool = False,
    ) -> None:
        if paths < 1 or alpha < 1 or k < 1:
            raise ValueError("paths, alpha and k must be positive")
        self.target = target
        self.t_int = int.from_bytes(target, "big")
        self.k = k
        self.alpha = alpha
        self.exhaustive = exhaustive
        self.settle = settle
        self.paths = [_Path() for _ in range(paths)]
        self._seen_addr: set[Addr] = set()
        self._seen_id: set[bytes] = {own_id}
        self.queried = 0

    def seed(self, contacts: list[tuple[bytes, Addr]]) -> None:
        """Start from our own nearest contacts, dealt round robin to the paths."""
        ordered = sorted(contacts, key=lambda c: int.from_bytes(c[0], "big") ^ self.t_int)
        for i, (node_id, addr) in enumerate(ordered):
            self._add(node_id, addr, i % len(self.paths), 1)

    def _add(self, node_id: bytes, addr: Addr, path: int, depth: int) -> None:
        if node_id in self._seen_id or addr in self._seen_addr:
            return
        self._seen_id.add(node_id)
        self._seen_addr.add(addr)
        cand = Candidate(node_id, addr, int.from_bytes(node_id, "big") ^ self.t_int, path, depth)
        sl = self.paths[path].shortlist
        bisect.insort(sl, cand)
        cap = self.k * SHORTLIST_FACTOR
        if len(sl) > cap:
            # Drop the farthest never-queried candidate, if any (in-flight ones stay tracked).
            for i in range(len(sl) - 1, -1, -1):
                if sl[i].state == CandState.NEW:
                    del sl[i]
                    break

    def _live_nearest(self, p: _Path) -> list[Candidate]:
        out: list[Candidate] = []
        for c in p.shortlist:
            if c.state in (CandState.FAILED, CandState.STALLED):
                continue
            out.append(c)
            if len(out) == self.k:
                break
        return out

    def next_queries(self) -> list[Candidate]:
        """Candidates to query now (marked in flight); also settles which paths are done."""
        out: list[Candidate] = []
        for p in self.paths:
            if p.done:
                continue
            nearest = self._live_nearest(p)
            for c in nearest:
                if p.in_flight >= self.alpha:
                    break
                if c.state == CandState.NEW:
                    c.state = CandState.IN_FLIGHT
                    p.in_flight += 1
                    self.queried += 1
                    out.append(c)
            if all(c.state == CandState.ANSWERED for c in nearest) and (
                nearest or p.in_flight == 0
            ):
                if self.settle and self._stalled_in_window(p):
                    continue
                if self.exhaustive and self._widen(p, out):
                    continue
                p.done = True
        return out

    def _stalled_in_window(self, p: _Path) -> bool:
        """Settle mode: is a stalled query among the k nearest not-failed candidates?

        The paper's rule is that the k nearest have *answered*; the adaptive timeout only frees
        parallelism. A lookup that places replicas (STORE) waits for those to answer or fail.
        """
        seen = 0
        for c in p.shortlist:
            if c.state == CandState.FAILED:
                continue
            if c.state == CandState.STALLED:
                return True
            seen += 1
            if seen >= self.k:
                break
        return False

    def _widen(self, p: _Path, out: list[Candidate]) -> bool:
        """Exhaustive mode: query candidates beyond the k nearest; False once none are left
        and no stalled query may still answer.

        A value lookup that a path's k nearest could not answer goes on through the path's
        farther candidates (spec/dht.md rule 25): liars that answer only with each other can
        capture a path's k nearest, but not the honest contacts it learned before.
        """
        for c in p.shortlist:
            if p.in_flight >= self.alpha:
                break
            if c.state == CandState.NEW:
                c.state = CandState.IN_FLIGHT
                p.in_flight += 1
                self.queried += 1
                out.append(c)
        # A slow node is not a missing one: wait for stalled queries (until their hard
        # deadline) before giving up on the path.
        if p.in_flight > 0 or any(c.state == CandState.STALLED for c in p.shortlist):
            return True
        # Last, a second chance for the nearest candidates that timed out (an overloaded or
        # briefly unreachable node is not a dead one; spec/dht.md rule 25).
        for c in p.shortlist[: self.k]:
            if p.in_flight >= self.alpha:
                break
            if c.state == CandState.FAILED and c.timed_out and not c.retried:
                c.state = CandState.IN_FLIGHT
                c.retried = True
                p.in_flight += 1
                self.queried += 1
                out.append(c)
        return p.in_flight > 0

    @property
    def done(self) -> bool:
        return all(p.done for p in self.paths)

    def _settle(self, c: Candidate) -> None:
        if c.state == CandState.IN_FLIGHT:
            self.paths[c.path].in_flight -= 1

    def on_response(
        self, c: Candidate, proven_id: bytes, nodes: list[tuple[bytes, Addr]], token: bytes | None
    ) -> None:
        """``c`` answered and proved key ``proven_id``; learn the contacts it returned."""
        if proven_id != c.node_id:
            self.on_fail(c)  # claimed ID was false (spec/dht.md §Identity)
            return
        self._settle(c)
        c.state = CandState.ANSWERED
        c.token = token
        if self.paths[c.path].done:
            return
        for node_id, addr in nodes:
            self._add(node_id, addr, c.path, c.depth + 1)

    def on_stall(self, c: Candidate) -> None:
        """The adaptive timeout passed: free the slot, keep listening (spec/dht.md §Timeouts)."""
        if c.state == CandState.IN_FLIGHT:
            self._settle(c)
            c.state = CandState.STALLED

    def on_fail(self, c: Candidate, *, timed_out: bool = False) -> None:
        """No usable answer: hard timeout (``timed_out``), an ERROR, or a failed proof."""
        if c.state in (CandState.IN_FLIGHT, CandState.STALLED, CandState.NEW):
            self._settle(c)
            c.state = CandState.FAILED
            c.timed_out = timed_out

    def answered(self) -> list[Candidate]:
        """Every candidate that answered, nearest first, across paths."""
        out = [c for p in self.paths for c in p.shortlist if c.state == CandState.ANSWERED]
        out.sort()
        return out

    def result(self) -> list[Candidate]:
        """The ``k`` nearest candidates that answered (paper §2.3 result set)."""
        return self.answered()[: self.k]

    def pending(self) -> bool:
        """Whether any query of this lookup is still outstanding (in flight or stalled)."""
        return any(
            c.state in (CandState.IN_FLIGHT, CandState.STALLED)
            for p in self.paths
            for c in p.shortlist
        )
