"""The asyncio adapter: a UDP socket driving :class:`DHTCore` (spec/dht.md §API).

Theory of operation: the socket's :class:`asyncio.DatagramProtocol` callback feeds every datagram
to the core with ``time.time()`` as the event loop reads it (no queue and no task switch, so an
answer costs no extra loop iteration); after each call the adapter flushes the core's outgoing
datagrams, resolves futures for finished operations and re-arms a single ``call_later`` for the
core's next timer. Public coroutines start an operation in the core and await its future. Nothing
here interprets the protocol.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from typing import Any

from infernet_ref.dht.ops import LookupResult, PutResult
from infernet_ref.dht.protocol import DHTConfig, DHTCore
from infernet_ref.dht.wire import Addr
from infernet_ref.errors import LocalProtocolError


@dataclass(frozen=True, slots=True)
class NodeContact:
    """A contact returned by :meth:`DHTNode.find_node`."""

    node_id: bytes
    host: str
    port: int

    @property
    def address(self) -> Addr:
        return (self.host, self.port)


class DHTNode:
    """A DHT node on a UDP socket (notes/CONTRACTS.md §DHT API)."""

    def __init__(self, core: DHTCore, transport: asyncio.DatagramTransport) -> None:
        self.core = core
        self._transport = transport
        self._futures: dict[int, asyncio.Future[Any]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = False

    @classmethod
    async def create(
        cls,
        secret_key: bytes,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        bootstrap: list[tuple[str, int]] | None = None,
        config: DHTConfig | None = None,
        public_addresses: list[tuple[str, int]] | None = None,
    ) -> DHTNode:
        """Bind, then join through ``bootstrap`` (spec/dht.md §Join) when given.

        ``public_addresses`` are addresses (e.g. a NAT's forwarded port) at which peers reach us
        besides the bound one; we prove our key only for challenges naming one of them
        (spec/dht.md §Identity 2)."""
        proto = _Protocol()
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: proto, local_addr=(host, port)
        )
        core = DHTCore(secret_key, now=time.time(), random_bytes=os.urandom, config=config)
        node = cls(core, transport)
        proto.node = node
        core.set_addresses([node.address, *(public_addresses or [])])
        if bootstrap:
            await node.bootstrap(bootstrap)
        else:
            node._flush()
        return node

    @property
    def address(self) -> Addr:
        host, port = self._transport.get_extra_info("sockname")[:2]
        return (str(host), int(port))

    @property
    def node_id(self) -> bytes:
        return self.core.node_id

    # ---- driving the core --------------------------------------------------------------
    def _on_datagram(self, data: bytes, addr: Any) -> None:
        if self._closed:
            return
        self.core.receive_datagram(data, (str(addr[0]), int(addr[1])), time.time())
        self._flush()

    def _flush(self) -> None:
        transport = self._transport
        for data, addr in self.core.datagrams_to_send():
            if not transport.is_closing():
                transport.sendto(data, addr)
        for done in self.core.events():
            fut = self._futures.pop(done.op_id, None)
            if fut is not None and not fut.done():
                fut.set_result(done.result)
        self._arm()

    def _arm(self) -> None:
        at = self.core.next_timer()
        if self._closed or at is None:
            return
        if self._timer is not None and self._timer_at is not None and self._timer_at <= at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = asyncio.get_running_loop().call_later(
            max(0.0, at - time.time()), self._on_timer
        )

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self.core.handle_timer(time.time())
        self._flush()

    async def _run(self, op_id: int) -> Any:
        if self._closed:
            raise LocalProtocolError("the DHT node is closed")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._futures[op_id] = fut
        self._flush()
        return await fut

    # ---- public API --------------------------------------------------------------------
    async def bootstrap(self, addrs: list[tuple[str, int]]) -> int:
        """Join through ``addrs``; returns the routing-table size afterwards."""
        result: int = await self._run(self.core.bootstrap([(h, p) for h, p in addrs], time.time()))
        return result

    async def find_node(self, target: bytes, *, paths: int = 1) -> list[NodeContact]:
        """The k nodes nearest ``target`` that answered (spec/dht.md §Lookups)."""
        res = await self.lookup(target, paths=paths)
        return [NodeContact(nid, a[0], a[1]) for nid, a in res.contacts]

    async def lookup(self, target: bytes, *, paths: int = 1) -> LookupResult:
        """FIND_NODE with statistics."""
        if len(target) != 32:
            raise LocalProtocolError("a lookup target is 32 bytes")
        result: LookupResult = await self._run(
            self.core.find_node(target, time.time(), paths=paths)
        )
        return result

    async def get_result(
        self, key: bytes, *, paths: int = 1, quorum: int | None = None
    ) -> LookupResult:
        """FIND_VALUE with statistics (spec/dht.md §Get)."""
        if len(key) != 32:
            raise LocalProtocolError("a DHT key is 32 bytes")
        result: LookupResult = await self._run(
            self.core.get(key, time.time(), paths=paths, quorum=quorum)
        )
        return result

    async def get(self, key: bytes, *, paths: int = 1) -> list[dict[str, Any]]:
        """Every valid record stored under ``key``, newest first (spec/dht.md §Get)."""
        return (await self.get_result(key, paths=paths)).values

    async def put(self, key: bytes, event: dict[str, Any], *, paths: int = 1) -> PutResult:
        """Store a signed record at the k nearest nodes and keep republishing it (spec/dht.md §Put)."""
        if len(key) != 32:
            raise LocalProtocolError("a DHT key is 32 bytes")
        result: PutResult = await self._run(self.core.put(key, event, time.time(), paths=paths))
        return result

    async def close(self, *, graceful: bool = True) -> None:
        """Leave (signed LEAVE to every contact when ``graceful``) and release the socket."""
        if self._closed:
            return
        if graceful:
            self.core.leave(time.time())
            self._flush()
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
        for fut in self._futures.values():
            if not fut.done():
                fut.set_exception(LocalProtocolError("the DHT node was closed"))
        self._futures.clear()
        self._transport.close()
        await asyncio.sleep(0)  # let the transport finish closing its socket


class _Protocol(asyncio.DatagramProtocol):
    """Hands each datagram to its node as the event loop reads it."""

    def __init__(self) -> None:
        self.node: DHTNode | None = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.node is not None:
            self.node._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        """ICMP errors (port unreachable): the request's timeout handles the silent peer."""
