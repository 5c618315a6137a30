"""Continuous batching across jobs on one provider (spec/node-worker.md stage.forward_batch).

Run: ``.venv/bin/python benchmarks/bench_node_batching.py [--jobs 8 --tokens 32 --repeat 2]``

One provider (in-process worker, every layer of a random 8-layer Llama) and one aggregator run
in this process; ``--jobs`` clients submit at once, first with ``max_batch_sessions`` 1 (every
step its own forward: the peer) and then with the default 16, alternating ``--repeat`` times.
Printed: aggregate decode tokens/s of each, their ratio, and how many steps shared forwards.
Every job's output is checked identical across the two settings.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_node import make_model


async def trial(work: Path, model: Path, cid: str, *, batch: int, jobs: int, tokens: int) -> Any:
    from infernet_ref.node.client import submit_job
    from infernet_ref.node.config import build_config
    from infernet_ref.node.daemon import Node
    from infernet_ref.nostr import generate_secret_key

    d = Path(tempfile.mkdtemp(dir=work))
    prov = Node(
        build_config(
            {
                "data_dir": str(d / "p"),
                "roles": ["provider"],
                "log": {"level": "error"},
                "sandbox": {"backend": "in-process", "allow_in_process": True},
                "models": [{"cid": cid, "path": str(model)}],
                "resources": {"max_batch_sessions": batch, "max_concurrent_sessions": 64},
            }
        )
    )
    await prov.start()
    agg = Node(
        build_config(
            {
                "data_dir": str(d / "a"),
                "roles": ["aggregator"],
                "log": {"level": "error"},
                "peers": [prov.endpoint],
                "models": [{"cid": cid, "path": str(model)}],
                "aggregator": {"max_active_jobs_per_client": 64, "submits_per_minute": 1e4},
            }
        )
    )
    await agg.start()
    try:
        key = generate_secret_key()
        await submit_job(agg.endpoint, key, model=cid, prompt_ids=[1, 2, 3], max_new_tokens=2)
        t0 = time.perf_counter()
        outs = await asyncio.gather(
            *(
                submit_job(
                    agg.endpoint,
                    generate_secret_key(),
                    model=cid,
                    prompt_ids=[1 + i, 2, 3],
                    max_new_tokens=tokens,
                )
                for i in range(jobs)
            )
        )
        seconds = time.perf_counter() - t0
        assert all(o.state == "completed" for o in outs), [o.error for o in outs]
        assert prov.provider is not None
        batchers = list(prov.provider._batchers.values())
        shared = sum(b.batched_steps for b in batchers)
        return jobs * tokens / seconds, [o.tokens for o in outs], shared
    finally:
        await agg.stop()
        await prov.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    from infernet_ref.content import build_path
    from infernet_ref.ws.loop import run

    work = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    model = work / "model"
    make_model(model, 8, 256, 512)
    cid = str(build_path(model).cid)
    rates: dict[int, list[float]] = {1: [], 16: []}
    outputs: dict[int, list[list[int]]] = {}
    shared = 0
    for _ in range(args.repeat):
        for batch in (1, 16):
            rate, outs, steps = run(
                trial(work, model, cid, batch=batch, jobs=args.jobs, tokens=args.tokens)
            )
            rates[batch].append(rate)
            outputs.setdefault(batch, outs)
            if batch == 16:
                shared = max(shared, steps)
    assert outputs[1] == outputs[16], "batched outputs differ from one-at-a-time outputs"
    one, many = statistics.median(rates[1]), statistics.median(rates[16])
    print(f"{args.jobs} concurrent jobs x {args.tokens} new tokens, one provider, 8x256 Llama fp32")
    print(
        f"one step per forward (max_batch_sessions 1): {one:8.1f} tokens/s  runs {[round(r, 1) for r in rates[1]]}"
    )
    print(
        f"continuous batching (max_batch_sessions 16): {many:8.1f} tokens/s  runs {[round(r, 1) for r in rates[16]]}"
    )
    print(f"ratio batched/unbatched = {many / one:.2f}; {shared} steps shared a forward")
    print("outputs identical in both settings: yes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
