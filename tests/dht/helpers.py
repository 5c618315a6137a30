"""Shared helpers for the DHT tests: keys, records and an in-memory network of sans-I/O cores."""

from __future__ import annotations

import random
from typing import Any

from infernet_ref.dht.protocol import DHTConfig, DHTCore
from infernet_ref.dht.records import build_content_record, content_provider_key

CID = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
NOW = 1_750_000_000.0


class Net:
    """Delivers datagrams between cores synchronously (addresses are 10.0.0.x:4000)."""

    def __init__(self, seed: int = 1, config: DHTConfig | None = None) -> None:
        self.rng = random.Random(seed)
        self.now = NOW
        self.cores: dict[tuple[str, int], DHTCore] = {}
        self.config = config or DHTConfig()
        self.dropped: set[tuple[str, int]] = set()
        self.log: list[tuple[tuple[str, int], tuple[str, int], bytes]] = []

    def add(
        self, host: str | None = None, sk: bytes | None = None
    ) -> tuple[tuple[str, int], DHTCore]:
        addr = (host or f"10.0.{len(self.cores) // 250}.{len(self.cores) % 250 + 1}", 4000)
        core = DHTCore(
            sk or self.rng.randbytes(32),
            now=self.now,
            random_bytes=self.rng.randbytes,
            config=self.config,
        )
        core.set_addresses([addr])
        self.cores[addr] = core
        return addr, core

    def pump(self, limit: int = 100000) -> int:
        """Deliver until quiet; returns datagrams delivered."""
        n = 0
        progress = True
        while progress and n < limit:
            progress = False
            for src, core in list(self.cores.items()):
                for data, dst in core.datagrams_to_send():
                    progress = True
                    n += 1
                    self.log.append((src, dst, data))
                    if dst in self.cores and dst not in self.dropped:
                        self.cores[dst].receive_datagram(data, src, self.now)
        return n

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for core in self.cores.values():
            core.handle_timer(self.now)
        self.pump()

    def run(self, core: DHTCore, op_id: int, max_time: float = 30.0) -> Any:
        end = self.now + max_time
        while True:
            self.pump()
            for ev in core.events():
                if ev.op_id == op_id:
                    return ev.result
            if self.now >= end:
                raise AssertionError("operation did not finish")
            nxt = min(c.next_timer() or end for c in self.cores.values())
            self.advance(max(0.001, min(nxt, end) - self.now))


def joined_net(n: int, seed: int = 1, config: DHTConfig | None = None) -> Net:
    net = Net(seed, config)
    first, _ = net.add()
    for _ in range(n - 1):
        _, core = net.add()
        net.run(core, core.bootstrap([first], net.now))
    return net


def content_record(
    sk: bytes, cid: str = CID, created_at: int = int(NOW), **kw: Any
) -> tuple[bytes, dict[str, Any]]:
    ev = build_content_record(sk, cid, "ws://127.0.0.1:9000/content", created_at=created_at, **kw)
    return content_provider_key(cid), ev
