"""Cost of sandboxing a model worker: start-up, control-channel round trip, one decode forward.

Peer: the same worker program run in-process (no confinement). For each backend available here
(bubblewrap, Docker) it measures the time to a first ``ping``, the median round trip of
``ping`` (pure control-channel cost: framing, pipes, schema validation) and of one
``stage.forward`` decode step of the demo model (1 new token after a 20-token prompt), and
prints each against in-process as a ratio and as added microseconds.

    .venv/bin/python benchmarks/bench_node_sandbox.py [--rounds 200] [--model models/demo]

Every backend computes on one thread (the in-process peer is pinned to one too). Numbers on a
shared machine are noisy; compare ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from infernet_ref.node.sandbox import (
    BubblewrapExecutor,
    DockerExecutor,
    InProcessExecutor,
    SandboxUnavailable,
    WorkerSpec,
    bubblewrap,
    docker,
)
from infernet_ref.runtime.frames import ActivationFrame, encode_frame

ROOT = Path(__file__).resolve().parents[1]


def executors() -> dict[str, Any]:
    out: dict[str, Any] = {"in-process": InProcessExecutor(allow_in_process=True)}
    if bubblewrap.available():
        out["bubblewrap"] = BubblewrapExecutor()
    if docker.daemon_reachable():
        with contextlib.suppress(SandboxUnavailable):
            out["docker"] = DockerExecutor()
    return out


async def measure(executor: Any, model: Path, rounds: int) -> dict[str, float]:
    started = time.perf_counter()
    w = await executor.start(WorkerSpec(model_dir=model, kv_blocks=64, memory_limit_bytes=2 << 30))
    start_s = time.perf_counter() - started
    try:
        pings = []
        for _ in range(rounds):
            t = time.perf_counter()
            await w.request({"op": "ping"})
            pings.append(time.perf_counter() - t)
        forwards = []
        prompt = [256, *b"The function returns"]
        for i in range(max(10, rounds // 10)):
            session = f"bench-{i}"
            await w.request({"op": "stage.open", "session": session})
            pre = ActivationFrame(session, 0, "input_ids", torch.tensor(prompt))
            await w.request({"op": "stage.forward", "session": session}, encode_frame(pre))
            step = ActivationFrame(session, len(prompt), "input_ids", torch.tensor([32]))
            data = encode_frame(step)
            t = time.perf_counter()
            await w.request({"op": "stage.forward", "session": session}, data)
            forwards.append(time.perf_counter() - t)
            await w.request({"op": "stage.close", "session": session})
    finally:
        await w.close()
    return {
        "start_s": start_s,
        "ping_us": statistics.median(pings) * 1e6,
        "forward_us": statistics.median(forwards) * 1e6,
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "demo")
    args = parser.parse_args()
    torch.set_num_threads(1)  # sandboxed workers run one thread per CPU granted (cpus=1)
    results = {}
    for name, ex in executors().items():
        results[name] = await measure(ex, args.model, args.rounds)
    base = results["in-process"]
    print(
        f"{'backend':<12}{'start s':>9}{'ping µs':>10}{'x':>7}{'forward µs':>12}{'x':>7}{'+µs':>8}"
    )
    for name, r in results.items():
        print(
            f"{name:<12}{r['start_s']:>9.2f}{r['ping_us']:>10.0f}{r['ping_us'] / base['ping_us']:>7.2f}"
            f"{r['forward_us']:>12.0f}{r['forward_us'] / base['forward_us']:>7.2f}"
            f"{r['forward_us'] - base['forward_us']:>8.0f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
