"""Swarm benchmark: infernet_ref.dht against the PyPI `kademlia` package (spec/dht.md §Benchmark).

Each implementation runs in its own subprocess (so memory is measured per implementation) with N
real UDP nodes on 127.0.0.1 in one event loop:

  phase "stable":  bootstrap, P puts from random nodes, G gets from other random nodes;
  phase "churn":   30 % of the nodes are killed without warning (socket closed, no LEAVE), then
                   G gets from survivors;
  phase "adversarial" (fresh swarm): 20 % of the nodes lie (wrong contacts, silent drops, forged
                   values, swallowed STOREs); honest nodes put and get. Ours uses d = 3 disjoint
                   paths for these lookups; `kademlia` has no such option.

Printed per phase: success rate (a get is a success when it returns the value that was put, and
for ours nothing unverified), hops (lookup rounds), datagrams sent swarm-wide per get, latency
p50/p95; and per run the resident-memory growth per node. Then the ratios ours/kademlia.

    .venv/bin/python benchmarks/bench_dht.py --nodes 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import time
from typing import Any, ClassVar

import psutil

CID_PREFIX = "bafkrei"
_rounds: contextvars.ContextVar[list[int]] = contextvars.ContextVar("rounds")


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def summarize(
    name: str, oks: list[bool], lat: list[float], hops: list[int], msgs: int
) -> dict[str, Any]:
    n = len(oks)
    return {
        "phase": name,
        "gets": n,
        "success": sum(oks) / n if n else float("nan"),
        "hops_mean": statistics.fmean(hops) if hops else float("nan"),
        "msgs_per_get": msgs / n if n else float("nan"),
        "p50_ms": pct(lat, 0.5) * 1000,
        "p95_ms": pct(lat, 0.95) * 1000,
    }


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def fake_cid(rng: random.Random) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return CID_PREFIX + "".join(rng.choice(alphabet) for _ in range(52))


async def gather_limited(coros: list[Any], limit: int) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def one(c: Any) -> Any:
        async with sem:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


# ---------------------------------------------------------------- ours ----------------------
def _ours_adversary(core: Any, mode: str, adversaries: list[Any], rng: random.Random) -> None:
    """Turn a real, key-proving core into a liar (it still proves its key when challenged)."""
    from infernet_ref.dht import wire
    from infernet_ref.dht.proof import challenge_digest

    real_receive = core.receive_datagram

    def receive(data: bytes, addr: Any, now: float) -> None:
        try:
            dg = wire.decode(data)
        except wire.WireError:
            return
        if dg.y != wire.Kind.QUERY:
            real_receive(data, addr, now)
            return
        if mode == "drop" or dg.op == wire.Op.LEAVE:
            return
        body = dg.body
        res: dict[str, Any] = {"id": core.node_id, "tk": core.tokens.issue(addr, now)}
        if "c" in body:
            res["pk"] = core.prover.public_key
            res["sig"] = core.prover.sign(
                challenge_digest(body["c"], body["id"], *body["to"]), os.urandom(32)
            )
        target = body.get("target") or body.get("key")
        if target is not None:
            t = int.from_bytes(target, "big")
            liars = sorted(
                (a for a in adversaries if a.core is not core),
                key=lambda a: int.from_bytes(a.node_id, "big") ^ t,
            )[:20]
            res["nodes"] = [[a.node_id, wire.pack_ip(a.address[0]), a.address[1]] for a in liars]
        if dg.op == wire.Op.FIND_VALUE and mode == "forge":
            ev = dict(rng.choice(FORGE_POOL)) if FORGE_POOL else None
            if ev is not None:
                ev["content"] = "forged"
                res["values"] = [ev]
        if dg.op == wire.Op.STORE:
            res = {"id": core.node_id, "tk": res["tk"], "stored": 1}
        core.send_raw(wire.encode(dg.t, wire.Kind.RESPONSE, dg.op, res), addr)

    core.receive_datagram = receive


FORGE_POOL: list[dict[str, Any]] = []


async def run_ours(args: argparse.Namespace) -> dict[str, Any]:
    n, puts, gets, conc, join_refresh = (
        args.nodes,
        args.puts,
        args.gets,
        args.concurrency,
        args.join_refresh,
    )
    from infernet_ref.dht import DHTConfig, DHTNode, content_provider_key
    from infernet_ref.dht.records import build_content_record

    rng = random.Random(args.seed)
    cfg = DHTConfig(
        rate=2000,
        burst=4000,
        global_rate=1e6,
        global_burst=1e6,
        join_refresh=join_refresh,
        # Liveness pings every hour, like kademlia's refresh: N nodes in one process multiply the
        # spec's per-node 15-minute pings by N (see spec/dht.md §Benchmark).
        health_interval=3600.0,
    )
    base = rss()

    async def swarm(adv_frac: float) -> tuple[list[Any], list[Any]]:
        nodes = [await DHTNode.create(rng.randbytes(32), config=cfg)]
        advs: list[Any] = []
        for i in range(1, n):
            node = await DHTNode.create(rng.randbytes(32), config=cfg)
            nodes.append(node)
            if adv_frac and i % round(1 / adv_frac) == 0:
                advs.append(node)
        await gather_limited(
            [
                nd.bootstrap([nodes[rng.randrange(max(1, i))].address])
                for i, nd in enumerate(nodes)
                if i
            ],
            conc,
        )
        for a in advs:
            _ours_adversary(a.core, rng.choice(["wrong", "drop", "forge"]), advs, rng)
        return nodes, advs

    def sent(nodes: list[Any]) -> int:
        return sum(nd.core.stats.sent for nd in nodes)

    async def phase(
        name: str, nodes: list[Any], items: list[tuple[bytes, dict[str, Any]]], paths: int
    ) -> dict[str, Any]:
        oks: list[bool] = []
        lat: list[float] = []
        hops: list[int] = []
        before = sent(nodes)

        async def one(key: bytes, ev: dict[str, Any]) -> None:
            node = rng.choice(nodes)
            t0 = time.perf_counter()
            res = await node.get_result(key, paths=paths)
            lat.append(time.perf_counter() - t0)
            hops.append(res.hops)
            ok = any(v["id"] == ev["id"] for v in res.values) and all(
                v["content"] != "forged" for v in res.values
            )
            oks.append(ok)
            if not ok:  # why: how many live honest replicas existed, how far the lookup went
                now = time.time()
                holders = [
                    nd.address
                    for nd in nodes
                    if not nd._closed and nd.core.store.get(key, now) and nd is not node
                ]
                known = sum(1 for a in holders if node.core.proven_id(a) is not None)
                dead = sum(1 for a in holders if node.core.presumed_dead(a, now))
                print(
                    f"[{name}] failed get: {len(res.values)} values, {len(holders)} live "
                    f"holders ({known} proven by the getter, {dead} presumed dead by it), "
                    f"{res.queried} queried, {res.finished - res.started:.1f} s",
                    file=sys.stderr,
                )

        todo = [rng.choice(items) for _ in range(gets)]
        await gather_limited([one(k, e) for k, e in todo], conc)
        return summarize(name, oks, lat, hops, sent(nodes) - before)

    async def publish(nodes: list[Any], paths: int) -> list[tuple[bytes, dict[str, Any]]]:
        items = []
        now = int(time.time())
        for _ in range(puts):
            cid = fake_cid(rng)
            ev = build_content_record(
                rng.randbytes(32), cid, "ws://127.0.0.1:9/content", created_at=now
            )
            items.append((content_provider_key(cid), ev))
        await gather_limited([rng.choice(nodes).put(k, e, paths=paths) for k, e in items], conc)
        FORGE_POOL.extend(e for _, e in items)
        return items

    out: dict[str, Any] = {"impl": "infernet_ref.dht", "nodes": n, "join_refresh": join_refresh}
    t0 = time.perf_counter()
    nodes, _ = await swarm(0.0)
    out["bootstrap_s"] = time.perf_counter() - t0
    out["mem_per_node_kib"] = (rss() - base) / n / 1024
    items = await publish(nodes, 1)
    res = [await phase("stable", nodes, items, 1)]
    victims = set(rng.sample(range(1, n), int(0.3 * n)))
    for i in victims:
        await nodes[i].close(graceful=False)
    alive = [nd for i, nd in enumerate(nodes) if i not in victims]
    res.append(await phase("churn30", alive, items, 1))
    for nd in alive:
        await nd.close(graceful=False)
    nodes, advs = await swarm(0.2)
    honest = [nd for nd in nodes if nd not in advs]
    items = await publish(honest, 3)
    res.append(await phase("adversarial20_d3", honest, items, 3))
    for nd in nodes:
        await nd.close(graceful=False)
    out["phases"] = res
    return out


# ------------------------------------------------------------- kademlia ---------------------
async def run_kademlia(args: argparse.Namespace) -> dict[str, Any]:
    n, puts, gets, conc = args.nodes, args.puts, args.gets, args.concurrency
    import logging

    from kademlia import crawling
    from kademlia.network import Server
    from kademlia.protocol import KademliaProtocol

    logging.getLogger("kademlia").setLevel(logging.CRITICAL)
    logging.getLogger("rpcudp").setLevel(logging.CRITICAL)
    rng = random.Random(args.seed)
    counter = [0]
    real_find = crawling.SpiderCrawl._find

    async def counting_find(self: Any, rpcmethod: Any) -> Any:
        r = _rounds.get(None)
        if r is not None:
            r[0] += 1
        return await real_find(self, rpcmethod)

    crawling.SpiderCrawl._find = counting_find  # type: ignore[method-assign]

    armed = [False]

    class Adversary(KademliaProtocol):  # type: ignore[misc]
        mode = "wrong"
        liars: ClassVar[list[Any]] = []

        # Like ours, adversaries behave until the swarm has bootstrapped (armed[0]).
        def datagram_received(self, data: bytes, addr: Any) -> None:
            if armed[0] and self.mode == "drop" and data[:1] == b"\x00":
                return
            super().datagram_received(data, addr)

        def _liars(self, key: bytes) -> list[tuple[Any, ...]]:
            from kademlia.node import Node

            t = Node(key)
            lies = sorted(self.liars, key=lambda s: t.distance_to(s.node))[:20]
            return [(s.node.id, "127.0.0.1", s.port) for s in lies]

        def rpc_find_node(self, sender: Any, nodeid: bytes, key: bytes) -> Any:
            if not armed[0]:
                return super().rpc_find_node(sender, nodeid, key)
            return self._liars(key)

        def rpc_find_value(self, sender: Any, nodeid: bytes, key: bytes) -> Any:
            if not armed[0]:
                return super().rpc_find_value(sender, nodeid, key)
            if self.mode == "forge":
                return {"value": "forged"}
            return self._liars(key)

        def rpc_store(self, sender: Any, nodeid: bytes, key: bytes, value: Any) -> bool:
            if not armed[0]:
                return bool(super().rpc_store(sender, nodeid, key, value))
            return True

    def counting(server: Any) -> None:
        tr = server.transport
        real = tr.sendto

        def sendto(data: bytes, addr: Any = None) -> None:
            counter[0] += 1
            real(data, addr)

        tr.sendto = sendto

    base = rss()

    async def swarm(adv_frac: float) -> tuple[list[Any], list[Any]]:
        servers: list[Any] = []
        advs: list[Any] = []
        for i in range(n):
            s = Server()
            if adv_frac and i and i % round(1 / adv_frac) == 0:
                mode = rng.choice(["wrong", "drop", "forge"])
                s.protocol_class = type("Adv", (Adversary,), {"mode": mode, "liars": advs})
                advs.append(s)
            await s.listen(0, interface="127.0.0.1")
            s.port = s.transport.get_extra_info("sockname")[1]
            counting(s)
            servers.append(s)
        await gather_limited(
            [
                s.bootstrap([("127.0.0.1", servers[rng.randrange(max(1, i))].port)])
                for i, s in enumerate(servers)
                if i
            ],
            conc,
        )
        return servers, advs

    async def phase(name: str, servers: list[Any], items: list[tuple[str, str]]) -> dict[str, Any]:
        oks: list[bool] = []
        lat: list[float] = []
        hops: list[int] = []
        before = counter[0]

        async def one(key: str, val: str) -> None:
            _rounds.set([0])
            s = rng.choice(servers)
            t0 = time.perf_counter()
            got = await s.get(key)
            lat.append(time.perf_counter() - t0)
            hops.append(_rounds.get()[0])
            oks.append(got == val)

        todo = [rng.choice(items) for _ in range(gets)]
        await gather_limited([one(k, v) for k, v in todo], conc)
        return summarize(name, oks, lat, hops, counter[0] - before)

    async def publish(servers: list[Any]) -> list[tuple[str, str]]:
        items = [
            (os.urandom(32).hex(), json.dumps({"cid": fake_cid(rng), "n": i})) for i in range(puts)
        ]
        await gather_limited([rng.choice(servers).set(k, v) for k, v in items], conc)
        return items

    out: dict[str, Any] = {"impl": "kademlia 2.2.3", "nodes": n}
    t0 = time.perf_counter()
    servers, _ = await swarm(0.0)
    out["bootstrap_s"] = time.perf_counter() - t0
    out["mem_per_node_kib"] = (rss() - base) / n / 1024
    items = await publish(servers)
    res = [await phase("stable", servers, items)]
    victims = set(rng.sample(range(1, n), int(0.3 * n)))
    for i in victims:
        servers[i].stop()
    alive = [s for i, s in enumerate(servers) if i not in victims]
    res.append(await phase("churn30", alive, items))
    for s in alive:
        s.stop()
    servers, advs = await swarm(0.2)
    armed[0] = True
    honest = [s for s in servers if s not in advs]
    items = await publish(honest)
    res.append(await phase("adversarial20_d3", honest, items))
    for s in servers:
        s.stop()
    out["phases"] = res
    return out


# ---------------------------------------------------------------- driver --------------------
def child(args: argparse.Namespace) -> None:
    fn = run_ours if args.impl == "ours" else run_kademlia
    t0 = time.perf_counter()
    out = asyncio.run(fn(args))
    out["wall_s"] = time.perf_counter() - t0
    out["cpu_s"] = time.process_time()
    print(json.dumps(out))


def show(results: dict[str, dict[str, Any]]) -> None:
    cols = ("success", "hops_mean", "msgs_per_get", "p50_ms", "p95_ms")
    for impl, r in results.items():
        print(
            f"\n{r['impl']}: N={r['nodes']} bootstrap {r['bootstrap_s']:.1f}s, "
            f"memory {r['mem_per_node_kib']:.1f} KiB/node, wall {r['wall_s']:.0f}s, cpu {r['cpu_s']:.0f}s"
        )
        print(f"  {'phase':<18}" + "".join(f"{c:>14}" for c in cols))
        for ph in r["phases"]:
            print(f"  {ph['phase']:<18}" + "".join(f"{ph[c]:>14.3f}" for c in cols))
        del impl
    if len(results) == 2:
        ours, kad = results["ours"], results["kademlia"]
        print("\nratios ours/kademlia (success: higher is better; others: lower is better)")
        for po, pk in zip(ours["phases"], kad["phases"], strict=True):
            ratios = "".join(f"{c}={po[c] / pk[c]:.3f}  " if pk[c] else f"{c}=n/a  " for c in cols)
            print(f"  {po['phase']:<18}{ratios}")
        print(f"  memory/node={ours['mem_per_node_kib'] / max(kad['mem_per_node_kib'], 1e-9):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--puts", type=int, default=50)
    ap.add_argument("--gets", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=20)
    ap.add_argument("--only", choices=["ours", "kademlia"])
    ap.add_argument(
        "--join-refresh",
        action="store_true",
        help="ours: refresh the buckets beyond the nearest neighbour after joining (paper "
        "§2.3); off by default, matching kademlia's self-lookup-only join, because in "
        "one process it adds ~10 lookups per node of background load",
    )
    ap.add_argument("--impl", choices=["ours", "kademlia"], help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write the raw results here")
    args = ap.parse_args()
    if args.impl:
        child(args)
        return
    results: dict[str, dict[str, Any]] = {}
    for impl in [args.only] if args.only else ["ours", "kademlia"]:
        cmd = [
            sys.executable,
            __file__,
            "--impl",
            impl,
            "--nodes",
            str(args.nodes),
            "--puts",
            str(args.puts),
            "--gets",
            str(args.gets),
            "--seed",
            str(args.seed),
            "--concurrency",
            str(args.concurrency),
        ] + (["--join-refresh"] if args.join_refresh else [])
        print(f"running {impl} ...", file=sys.stderr, flush=True)
        # The child's stderr (tracebacks, per-failure diagnostics) passes straight through.
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
        if proc.returncode != 0:
            raise SystemExit(f"{impl} run failed")
        results[impl] = json.loads(proc.stdout.strip().splitlines()[-1])
    show(results)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
