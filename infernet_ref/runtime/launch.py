"""Local multi-process launch of tensor-parallel ranks over gloo on 127.0.0.1 (spec §6.4).

:func:`run_ranks` spawns ``world`` processes, each of which joins a gloo process group through
a TCP store on a free loopback port, calls ``fn(rank, world, *args)`` and reports its return
value (or its error) through a queue. It returns rank 0's value and raises if any rank failed.
Used by ``infernet generate --tp K`` and by the tensor-parallel tests.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import socket
import traceback
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from infernet_ref.runtime.errors import RequestError


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _rank_main(
    rank: int, world: int, spec: tuple[int, Callable[..., Any], tuple[Any, ...], Any, int]
) -> None:
    port, fn, args, out, threads = spec
    torch.set_num_threads(threads)
    try:
        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
        )
        try:
            out.put((rank, True, fn(rank, world, *args)))
        finally:
            dist.destroy_process_group()
    except BaseException as exc:  # reported to the parent, which re-raises
        out.put((rank, False, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


def run_ranks(
    fn: Callable[..., Any], world: int, *args: Any, timeout: float = 300.0, threads: int = 1
) -> Any:
    """Run ``fn(rank, world, *args)`` in ``world`` spawned gloo ranks; return rank 0's result."""
    if world < 1:
        raise RequestError(f"tensor-parallel size must be >= 1, got {world}")
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    port = free_port()
    procs = [
        ctx.Process(target=_rank_main, args=(r, world, (port, fn, args, out, threads)))
        for r in range(world)
    ]
    for p in procs:
        p.start()
    results: dict[int, Any] = {}
    errors: list[str] = []
    try:
        for _ in range(world):
            rank, ok, value = out.get(timeout=timeout)
            (results.__setitem__(rank, value) if ok else errors.append(f"rank {rank}: {value}"))
    except queue.Empty:
        errors.append(f"ranks did not report within {timeout} s")
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
    if errors:
        raise RequestError("tensor-parallel run failed: " + "; ".join(errors))
    return results[0]
