"""WebSocket benchmark: our server+client against websockets' server+client, same run, same loop.

Echo round-trips (one message out, its echo back, repeated) at 16 B, 1 KiB, 64 KiB and 1 MiB,
on asyncio's loop and on uvloop, compression off on both sides (and optionally on); plus the
hot-path micro-benchmarks: masking and UTF-8 validation. Prints round-trips/s, MB/s (payload
bytes echoed per second, one direction) and the ratio ours / websockets.

    .venv/bin/python benchmarks/bench_ws.py                 # everything, ~2 minutes
    .venv/bin/python benchmarks/bench_ws.py --seconds 0.5   # quicker
    .venv/bin/python benchmarks/bench_ws.py --micro         # only masking / UTF-8
    .venv/bin/python benchmarks/bench_ws.py --paired        # alternating batches, steadier
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import timeit
from collections.abc import Awaitable, Callable
from typing import Any

SIZES = [16, 1024, 64 * 1024, 1024 * 1024]


async def _echo(conn: Any) -> None:
    async for message in conn:
        await conn.send(message)


async def _measure(
    send: Callable[[bytes], Awaitable[None]],
    recv: Callable[[], Awaitable[Any]],
    size: int,
    seconds: float,
) -> float:
    payload = os.urandom(size)
    for _ in range(3):  # warm-up
        await send(payload)
        await recv()
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(10 if size < 100_000 else 1):
            await send(payload)
            await recv()
            count += 1
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


async def bench_ours(size: int, seconds: float, compression: bool) -> float:
    from infernet_ref import ws

    async with await ws.serve(_echo, compression=compression, ping_interval=None) as server:
        url = f"ws://127.0.0.1:{server.port}/"
        async with ws.connect(url, compression=compression, ping_interval=None) as client:
            return await _measure(client.send, client.recv, size, seconds)


async def bench_websockets(size: int, seconds: float, compression: bool) -> float:
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    comp = "deflate" if compression else None
    kw: dict[str, Any] = {"compression": comp, "max_size": None, "ping_interval": None}
    async with serve(_echo, "127.0.0.1", 0, **kw) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(f"ws://127.0.0.1:{port}/", **kw) as client:
            return await _measure(client.send, client.recv, size, seconds)


async def _batch(
    send: Callable[[bytes], Awaitable[None]],
    recv: Callable[[], Awaitable[Any]],
    payload: bytes,
    count: int,
) -> float:
    t0 = time.perf_counter()
    for _ in range(count):
        await send(payload)
        await recv()
    return time.perf_counter() - t0


async def bench_paired(size: int, seconds: float) -> tuple[float, float, list[float]]:
    """Both stacks connected at once in one loop, timed in alternating batches of round-trips.

    A load spike on a shared machine hits the two members of a batch pair alike, so the
    median of the per-pair ratios is far steadier than a ratio of separate runs.
    Returns (ours rt/s, websockets rt/s, per-pair ratios ours/websockets).
    """
    from websockets.asyncio.client import connect as ws_connect
    from websockets.asyncio.server import serve as ws_serve

    from infernet_ref import ws

    kw: dict[str, Any] = {"compression": None, "max_size": None, "ping_interval": None}
    payload = os.urandom(size)
    count = 10 if size < 100_000 else 2
    async with (
        await ws.serve(_echo, compression=False, ping_interval=None) as ours_srv,
        ws_serve(_echo, "127.0.0.1", 0, **kw) as ws_srv,
    ):
        port = ws_srv.sockets[0].getsockname()[1]
        async with (
            ws.connect(
                f"ws://127.0.0.1:{ours_srv.port}/", compression=False, ping_interval=None
            ) as ours,
            ws_connect(f"ws://127.0.0.1:{port}/", **kw) as theirs,
        ):
            sides = [(ours.send, ours.recv), (theirs.send, theirs.recv)]
            for send, recv in sides:  # warm-up
                await _batch(send, recv, payload, 3)
            totals, ratios = [0.0, 0.0], []
            deadline = time.perf_counter() + 2 * seconds
            while time.perf_counter() < deadline:
                order = (0, 1) if len(ratios) % 2 == 0 else (1, 0)
                dt = [0.0, 0.0]
                for i in order:
                    dt[i] = await _batch(*sides[i], payload, count)
                    totals[i] += dt[i]
                ratios.append(dt[1] / dt[0])
            n = len(ratios) * count
            return n / totals[0], n / totals[1], ratios


def paired_table(loops: list[str], seconds: float) -> None:
    print("\n== echo round-trips, paired (both stacks open at once, alternating batches) ==")
    print(f"{seconds:g} s per stack per cell; ratio = median of per-batch ratios [quartiles]")
    print(f"{'loop':8} {'size':>8} {'ours rt/s':>10} {'ws rt/s':>10} {'ratio':>6}  quartiles")
    for loop_name in loops:
        for size in SIZES:
            ours, theirs, ratios = _run_any(bench_paired(size, seconds), loop_name)
            q1, med, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
            print(
                f"{loop_name:8} {size:>8} {ours:>10.0f} {theirs:>10.0f} {med:>6.2f}  "
                f"[{q1:.2f}-{q3:.2f}] n={len(ratios)}"
            )


def _run_any(coro: Awaitable[Any], loop_name: str) -> Any:
    from infernet_ref.ws.loop import run

    return run(coro, use_uvloop=loop_name == "uvloop")


def _run(coro: Awaitable[float], loop_name: str) -> float:
    from infernet_ref.ws.loop import run

    return run(coro, use_uvloop=loop_name == "uvloop")  # type: ignore[arg-type]


def echo_table(loops: list[str], seconds: float, compression: bool, rounds: int) -> None:
    title = "compression on" if compression else "compression off"
    print(
        f"\n== echo round-trips, {title} (ours = infernet_ref.ws server+client; ws = websockets 17.4) =="
    )
    print(f"best of {rounds} alternating rounds of {seconds:g} s per cell")
    print(
        f"{'loop':8} {'size':>8} {'ours rt/s':>10} {'ws rt/s':>10} {'ours MB/s':>10} {'ws MB/s':>10} {'ratio':>6}"
    )
    for loop_name in loops:
        for size in SIZES:
            ours = theirs = 0.0
            for _ in range(rounds):  # alternate, so load changes on a shared machine hit both
                ours = max(ours, _run(bench_ours(size, seconds, compression), loop_name))
                theirs = max(theirs, _run(bench_websockets(size, seconds, compression), loop_name))
            print(
                f"{loop_name:8} {size:>8} {ours:>10.0f} {theirs:>10.0f} {ours * size / 1e6:>10.1f} "
                f"{theirs * size / 1e6:>10.1f} {ours / theirs:>6.2f}"
            )


def micro() -> None:
    from websockets.speedups import apply_mask as ws_mask

    from infernet_ref.ws.masking import _mask_int, _mask_numpy, _mask_translate, apply_mask
    from infernet_ref.ws.utf8 import Utf8Validator, decode_text

    print("\n== masking (MB/s; websockets uses a C extension) ==")
    print(
        f"{'size':>8} {'ours':>9} {'int-xor':>9} {'translate':>9} {'numpy':>9} {'ws C':>9} {'ours/C':>7}"
    )
    key = os.urandom(4)
    for size in [16, 125, 1024, 4096, 65536, 1024 * 1024, 16 * 1024 * 1024]:
        data = os.urandom(size)
        number = max(3, 2_000_000 // (size + 200))
        rates = []
        for fn in (apply_mask, _mask_int, _mask_translate, _mask_numpy, ws_mask):
            t = (
                min(
                    timeit.repeat(
                        lambda fn=fn, data=data: fn(data, key),
                        number=number,
                        repeat=3,
                        timer=time.process_time,
                    )
                )
                / number
            )
            rates.append(size / t / 1e6)
        cells = " ".join(f"{r:>9.0f}" for r in rates)
        print(f"{size:>8} {cells} {rates[0] / rates[-1]:>7.2f}")

    print("\n== UTF-8 validation (MB/s) ==")
    text = ("κόσμε ascii 𝄞 " * 100_000).encode()
    for label, chunk in (
        ("whole message", len(text)),
        ("64 KiB fragments", 65536),
        ("1 KiB fragments", 1024),
    ):

        def run(chunk: int = chunk) -> None:
            if chunk == len(text):
                decode_text(text)
                return
            v = Utf8Validator()
            last = len(text) - chunk
            for i in range(0, len(text), chunk):
                v.feed(text[i : i + chunk], i >= last)

        t = min(timeit.repeat(run, number=3, repeat=3)) / 3
        print(f"{label:>18}: {len(text) / t / 1e6:8.0f} MB/s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="measuring time per round")
    parser.add_argument(
        "--rounds", type=int, default=3, help="alternating rounds per cell (best is kept)"
    )
    parser.add_argument(
        "--micro", action="store_true", help="only the masking / UTF-8 micro-benchmarks"
    )
    parser.add_argument("--loops", default="asyncio,uvloop")
    parser.add_argument(
        "--compression", action="store_true", help="also run with permessage-deflate on"
    )
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="message sizes, bytes")
    parser.add_argument(
        "--paired", action="store_true", help="only the paired (alternating-batch) echo table"
    )
    args = parser.parse_args()
    from infernet_ref.ws.loop import uvloop_available

    SIZES[:] = [int(x) for x in args.sizes.split(",")]
    loops = [lp for lp in args.loops.split(",") if lp != "uvloop" or uvloop_available()]
    print("note: shared machine; figures are noisy — compare ratios within one run")
    if args.paired:
        paired_table(loops, args.seconds)
        return
    if not args.micro:
        echo_table(loops, args.seconds, compression=False, rounds=args.rounds)
        if args.compression:
            echo_table(loops, args.seconds, compression=True, rounds=args.rounds)
    micro()


if __name__ == "__main__":
    main()
