"""Tensor-parallel ranks inside one sandboxed worker (spec/node-worker.md §Tensor parallelism).

Theory of operation: a worker asked for ``--tp N`` is rank 0 of an N-process gloo group that
lives entirely inside its sandbox (loopback of the sandbox's own network namespace — the
sandbox still has no route out). Rank 0 starts ranks 1..N-1 as child processes of itself
(``python -m infernet_ref.node.worker --rank r --world N --port P`` plus the same model
arguments), so they inherit every limit of the sandbox and die with it. Only rank 0 talks to
the provider. Each stage operation is a *command* that rank 0 broadcasts — a header tensor
``[kind, length]`` then the frame bytes — and that every rank then executes collectively (the
all-reduces of the row-parallel layers need all ranks in the same call). The stage's checks run
before any collective and see identical state on every rank, so a refused frame is refused by
all ranks alike and the group never deadlocks half-way through a forward.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from enum import IntEnum
from typing import Any

import torch
import torch.distributed as dist

from infernet_ref.errors import InfernetError


class Command(IntEnum):
    """Rank-0 to rank-k broadcast commands (spec/node-worker.md §Tensor parallelism)."""

    FORWARD = 1
    CLOSE_SESSION = 2
    STOP = 3
    OPEN_SESSION = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def init_group(rank: int, world: int, port: int, timeout_s: float = 120.0) -> None:
    """Join the gloo group on the sandbox's loopback."""
    import datetime  # noqa: PLC0415 - only tensor-parallel workers need it

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=timeout_s),
    )


def spawn_ranks(world: int, port: int, argv: list[str]) -> list[subprocess.Popen[bytes]]:
    """Start ranks 1..world-1 with the same model arguments (their stdout goes to stderr)."""
    procs = []
    for rank in range(1, world):
        cmd = [sys.executable, "-I", "-B", "-m", "infernet_ref.node.worker", *argv]
        cmd += ["--rank", str(rank), "--world", str(world), "--port", str(port)]
        procs.append(
            subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=sys.stderr.fileno(), close_fds=True
            )
        )
    return procs


def broadcast_command(kind: Command, data: bytes = b"") -> None:
    """Rank 0: announce one command and its bytes to every other rank."""
    head = torch.tensor([int(kind), len(data)], dtype=torch.int64)
    dist.broadcast(head, src=0)
    if data:
        dist.broadcast(torch.frombuffer(bytearray(data), dtype=torch.uint8), src=0)


def receive_command() -> tuple[Command, bytes]:
    """Rank k: wait for the next command from rank 0."""
    head = torch.zeros(2, dtype=torch.int64)
    dist.broadcast(head, src=0)
    kind, length = Command(int(head[0])), int(head[1])
    if length == 0:
        return kind, b""
    buf = torch.empty(length, dtype=torch.uint8)
    dist.broadcast(buf, src=0)
    return kind, buf.numpy().tobytes()


def follower_loop(stage: Any) -> None:
    """Rank k's whole life: execute rank 0's commands on its ``PipelineStage`` until STOP."""
    while True:
        kind, data = receive_command()
        if kind is Command.STOP:
            return
        try:
            if kind is Command.CLOSE_SESSION:
                stage.close_session(data.decode("ascii", errors="replace"))
            elif kind is Command.OPEN_SESSION:
                session, _, max_tokens = data.decode("ascii", errors="replace").partition(" ")
                stage.open_session(session, int(max_tokens))
            else:
                stage.forward(data)
        except InfernetError as exc:  # rank 0 hit the same error first and reported it
            print(f"rank follower: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
