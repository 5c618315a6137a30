"""Content-layer benchmark (spec/content.md): CID throughput, exchange transfer rate, memory.

Run: ``.venv/bin/python benchmarks/bench_content.py [--size-mib 256] [--transfer-mib 256]
[--stream-gib 4]``. Each figure is printed next to its peer measured in the same run:

1. CID throughput vs one ``hashlib.sha256`` pass over the same bytes (goal: ratio >= 0.9).
2. Exchange transfer MB/s over loopback from one and from three provider *processes* into a
   block store (goal: 500 MB/s).
3. Peak RSS of a child process that adds a generated N GiB stream to a block store
   (constant-memory builder), against the RSS of the same process before the add.
4. ``--dir-files N``: the CID of a folder of N small files (a HAMT past ~2000 long names),
   ours vs the official JS importer (``tests/content/js/oracle.mjs dir``, node start included),
   with the two root CIDs checked equal.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MIB = 1 << 20
GIB = 1 << 30


def pattern(n: int) -> bytes:
    block = hashlib.sha256(b"bench").digest() * (MIB // 32)
    out = bytearray()
    for i in range(n // MIB + 1):
        out += i.to_bytes(8, "little") + block[8:]
    return bytes(out[:n])


def bench_cid(size: int) -> None:
    from infernet_ref.content.builder import build_file

    data = pattern(size)
    t = time.perf_counter()
    hashlib.sha256(data).digest()
    t_sha = time.perf_counter() - t
    res = {}
    for label, workers in [("1 thread", 1), ("thread pool", None)]:
        t = time.perf_counter()
        build_file(data, workers=workers)
        res[label] = time.perf_counter() - t
    print(f"[cid] {size / MIB:.0f} MiB  hashlib.sha256: {size / t_sha / 1e6:8.1f} MB/s")
    for label, dt in res.items():
        print(
            f"[cid] {label:>11}:  cid: {size / dt / 1e6:8.1f} MB/s   ratio vs sha256 {t_sha / dt:5.2f}x (goal 0.9x)"
        )


def _serve_proc(store_dir: str, q: mp.Queue) -> None:  # type: ignore[type-arg]
    from infernet_ref.content.exchange import serve_content
    from infernet_ref.content.store import BlockStore

    async def main() -> None:
        srv, _ = await serve_content(BlockStore(store_dir, fsync=False))
        q.put((os.getpid(), srv.port))
        await asyncio.Event().wait()

    asyncio.run(main())


def bench_ws_ceiling(size: int) -> None:
    """The same WebSocket layer moving 1 MiB binary messages with no exchange on top."""
    from infernet_ref.ws import WebSocket, connect, serve

    payload = pattern(MIB)
    n = size // MIB

    async def handler(ws: WebSocket) -> None:
        await ws.recv()
        for _ in range(n):
            await ws.send(payload)

    async def run() -> float:
        srv = await serve(handler, compression=False, max_message_size=4 * MIB)
        ws = await connect(
            f"ws://127.0.0.1:{srv.port}/", compression=False, max_message_size=4 * MIB
        )
        t = time.perf_counter()
        await ws.send("go")
        for _ in range(n):
            await ws.recv()
        dt = time.perf_counter() - t
        await ws.close()
        await srv.close()
        return dt

    dt = asyncio.run(run())
    print(
        f"[transfer] peer: raw infernet_ref.ws 1 MiB messages, one process: {size / dt / 1e6:7.1f} MB/s"
    )


def _cpu_meter(procs: list[Any]) -> Any:
    """CPU seconds used from now by this process and by the provider processes."""
    import psutil

    servers = [psutil.Process(p.pid) for p in procs]

    def total() -> tuple[float, float]:
        return time.process_time(), sum(sum(s.cpu_times()[:2]) for s in servers)

    c0, s0 = total()

    def done() -> tuple[float, float]:
        c1, s1 = total()
        return c1 - c0, s1 - s0

    return done


def bench_transfer(size: int, tmp: Path) -> None:
    from infernet_ref.content.builder import build_file
    from infernet_ref.content.exchange import ExchangeClient
    from infernet_ref.content.store import BlockStore

    src = BlockStore(tmp / "src", fsync=False)
    root = build_file(pattern(size), src.put).cid
    src.close()
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [
        ctx.Process(target=_serve_proc, args=(str(tmp / "src"), q), daemon=True) for _ in range(3)
    ]
    for p in procs:
        p.start()
    by_pid = dict(q.get(timeout=60) for _ in procs)
    ports = [by_pid[p.pid] for p in procs]  # ports[i] is served by procs[i] (for the CPU meter)
    try:
        for n in (1, 3):
            dst_dir = tmp / f"dst{n}"
            dst = BlockStore(dst_dir, fsync=False)
            urls = [f"ws://127.0.0.1:{p}/content" for p in ports[:n]]

            async def run(urls: list[str] = urls, dst: BlockStore = dst) -> float:
                async with ExchangeClient(urls, store=dst, window=16) as c:
                    t = time.perf_counter()
                    await c.fetch_dag(root)
                    return time.perf_counter() - t

            async def run_mem(urls: list[str] = urls) -> float:
                async with ExchangeClient(urls, window=16, cache_bytes=0) as c:
                    t = time.perf_counter()
                    await _walk_network(c, root)
                    return time.perf_counter() - t

            cpu = _cpu_meter(procs[:n])
            dt = asyncio.run(run())
            client_s, servers_s = cpu()
            print(
                f"[transfer] {n} provider(s) -> block store: {size / MIB:.0f} MiB in {dt:.2f}s = "
                f"{size / dt / 1e6:7.1f} MB/s (goal 500 MB/s); CPU s/GiB: client "
                f"{client_s * GIB / size:.2f}, servers {servers_s * GIB / size:.2f}"
            )
            cpu = _cpu_meter(procs[:n])
            dt = asyncio.run(run_mem())
            client_s, servers_s = cpu()
            ceiling = min(size / max(client_s, 1e-9), n * size / max(servers_s, 1e-9)) / 1e6
            print(
                f"[transfer] {n} provider(s) -> memory (verified, not stored): {size / dt / 1e6:7.1f} MB/s; "
                f"CPU-bound ceiling with a dedicated core per process: {ceiling:.0f} MB/s"
            )
            dst.close()
            shutil.rmtree(dst_dir)
    finally:
        for p in procs:
            p.kill()


async def _walk_network(client: object, root: object) -> None:
    from infernet_ref.content.dag import block_links

    sem = asyncio.Semaphore(64)

    async def visit(cid: object) -> None:
        async with sem:
            block = await client.get_block(cid)  # type: ignore[attr-defined]
        await asyncio.gather(*(visit(c) for c in block_links(cid, block)))  # type: ignore[arg-type]

    await visit(root)


def _peak_rss_kib() -> int:
    """This process's peak RSS (VmHWM; ru_maxrss would carry the forking parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _stream_proc(gib: float, store_dir: str, q: mp.Queue) -> None:  # type: ignore[type-arg]
    from infernet_ref.content.builder import build_file
    from infernet_ref.content.store import BlockStore

    store = BlockStore(store_dir, fsync=False)
    base = hashlib.sha256(b"x").digest() * (MIB // 32)

    def gen() -> object:
        for i in range(int(gib * 1024)):
            yield i.to_bytes(8, "little") + base[8:]

    before = _peak_rss_kib()
    t = time.perf_counter()
    root = build_file(gen(), store.sink)  # type: ignore[arg-type]
    dt = time.perf_counter() - t
    after = _peak_rss_kib()
    q.put((before, after, dt, str(root.cid)))


def bench_memory(gib: float, tmp: Path) -> None:
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    p = ctx.Process(target=_stream_proc, args=(gib, str(tmp / "mem"), q))
    p.start()
    p.join()
    if p.exitcode != 0:
        print(f"[memory] child failed with exit code {p.exitcode}")
        return
    before, after, dt, cid = q.get(timeout=10)
    print(
        f"[memory] add {gib:g} GiB generated stream to a store: peak RSS {after / 1024:.0f} MiB "
        f"(before the add {before / 1024:.0f} MiB, +{(after - before) / 1024:.0f} MiB) in {dt:.1f}s "
        f"= {gib * 1024 * MIB / dt / 1e6:.0f} MB/s; root {cid}"
    )


def bench_dir(n: int, tmp: Path) -> None:
    import subprocess

    from infernet_ref.content.builder import build_path

    d = tmp / "dir"
    d.mkdir()
    for i in range(n):
        name = f"{i:06d}-model-shard-file-name.bin"
        (d / name).write_bytes(name.encode())
    t = time.perf_counter()
    ours = str(build_path(d).cid)
    t_ours = time.perf_counter() - t
    oracle = Path(__file__).resolve().parents[1] / "tests/content/js/oracle.mjs"
    if not shutil.which("node") or not (oracle.parent / "node_modules").is_dir():
        print(f"[dir] {n} files: ours {t_ours:.2f}s (JS importer not installed)")
        return
    t = time.perf_counter()
    out = subprocess.run(
        ["node", str(oracle), "dir", str(d)], capture_output=True, text=True, check=True
    )
    t_js = time.perf_counter() - t
    js = out.stdout.strip().splitlines()[-1]
    same = f'"cid":"{ours}"' in js
    print(
        f"[dir] {n} files: ours {t_ours:.2f}s, ipfs-unixfs-importer {t_js:.2f}s, "
        f"ratio {t_js / t_ours:.2f}x; root CIDs equal: {same}"
    )


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--transfer-mib", type=int, default=256)
    ap.add_argument("--stream-gib", type=float, default=4.0)
    ap.add_argument("--dir-files", type=int, default=5000)
    ap.add_argument("--only", choices=["cid", "transfer", "memory", "dir"])
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    tmp = Path(tempfile.mkdtemp(prefix="bench-content-"))
    try:
        if args.only in (None, "cid"):
            bench_cid(args.size_mib * MIB)
        if args.only in (None, "transfer"):
            bench_ws_ceiling(args.transfer_mib * MIB)
            bench_transfer(args.transfer_mib * MIB, tmp)
        if args.only in (None, "memory"):
            bench_memory(args.stream_gib, tmp)
        if args.only in (None, "dir"):
            bench_dir(args.dir_files, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
