"""Node benchmark: pipelined job throughput vs one process, per-hop latency, jobs per minute.

Run: ``.venv/bin/python benchmarks/bench_node.py [--layers 8 --hidden 256 --tokens 64]``

Setup: a random Llama checkpoint (transformers), two provider processes and one aggregator
process (``infernet node run`` through :mod:`infernet_ref.node.launch`, in-process workers so the
figures measure the protocol, not sandbox start-up), all on loopback. Measured:

1. decode tokens/s of a 2-stage pipelined job (first to last streamed token, at the client)
   against the same model run in this process by the runtime (``generate_pipeline`` over one
   local stage) — the peer in the same run — and the ratio;
2. added latency per pipeline hop per token = (pipelined per-token time - local per-token time)
   / hops, where a directly routed ring of n stages makes n hops per token (stage k -> k+1
   with hidden states, the last stage -> stage 0 with the sampled token; spec/job.md §Direct
   routing), and stage 0's own split of each token: ring time, the later stages' compute,
   and the rest per hop;
3. the same job on one provider holding every layer (a ring of one stage: the node, its
   sandbox channel and the aggregator, but no hop), so that the cost of an extra stage — two
   hops and one more worker call per token — shows apart from the node's fixed cost;
4. jobs per minute with several concurrent clients submitting short jobs.
Numbers are noisy on a shared machine; the script prints what it ran on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def make_model(path: Path, layers: int, hidden: int, vocab: int) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 32),
        num_key_value_heads=max(1, hidden // 64),
        max_position_embeddings=1024,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    torch.manual_seed(0)
    model: Any = LlamaForCausalLM(cfg)
    model.save_pretrained(path)


def local_tokens_per_s(path: Path, prompt: list[int], n: int) -> tuple[float, list[int]]:
    import torch

    from infernet_ref.runtime.pipeline import PipelineStage, generate_pipeline
    from infernet_ref.runtime.sampling import SamplingParams

    torch.set_num_threads(1)
    cfg = json.loads((path / "config.json").read_text())
    stage = PipelineStage.load(path, (0, cfg["num_hidden_layers"]), num_blocks=256)
    res = generate_pipeline([stage.forward], prompt, SamplingParams(max_tokens=n), session="bench")
    return (n - 1) / res.decode_seconds, res.output


async def pipelined(agg: str, cid: str, prompt: list[int], n: int) -> tuple[float, list[int], Any]:
    from infernet_ref.node.client import submit_job
    from infernet_ref.nostr import generate_secret_key

    stamps: list[float] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "tokens":
            stamps.extend([time.perf_counter()] * len(data["ids"]))

    out = await submit_job(
        agg,
        generate_secret_key(),
        model=cid,
        prompt_ids=prompt,
        max_new_tokens=n,
        on_event=on_event,
    )
    assert out.state == "completed", out.error
    return (len(stamps) - 1) / (stamps[-1] - stamps[0]), out.tokens, out


async def jobs_per_minute(agg: str, cid: str, clients: int, jobs_each: int, n: int) -> float:
    from infernet_ref.node.client import submit_job
    from infernet_ref.nostr import generate_secret_key

    async def client(i: int) -> None:
        sk = generate_secret_key()
        for j in range(jobs_each):
            out = await submit_job(
                agg, sk, model=cid, prompt_ids=[1 + i, 2 + j, 3], max_new_tokens=n, stream=False
            )
            assert out.state == "completed", out.error

    t0 = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return clients * jobs_each / (time.perf_counter() - t0) * 60


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=3)
    ap.add_argument(
        "--max-batch",
        type=int,
        default=16,
        help="the providers' max_batch_sessions (1: no batching across concurrent jobs)",
    )
    ap.add_argument(
        "--backend",
        default="in-process",
        choices=["in-process", "bubblewrap", "docker"],
        help="the providers' sandbox (in-process: the figures measure the protocol alone)",
    )
    args = ap.parse_args()

    from infernet_ref.content import build_path
    from infernet_ref.node.launch import start_node_process
    from infernet_ref.node.planner import JobNeeds, ModelShape, stage_bytes

    work = Path(tempfile.mkdtemp(prefix="bench-node-"))
    model = work / "model"
    make_model(model, args.layers, args.hidden, args.vocab)
    cid = str(build_path(model).cid)
    prompt = list(range(1, 17))
    shape = ModelShape.from_hf_config(json.loads((model / "config.json").read_text()))
    needs = JobNeeds(len(prompt), args.tokens)
    half = args.layers // 2
    mem = max(
        stage_bytes(shape, needs, 0, half, 1), stage_bytes(shape, needs, half, args.layers, 1)
    )
    sandbox: dict[str, Any] = {"backend": args.backend}
    if args.backend == "in-process":
        sandbox["allow_in_process"] = True
    procs = []
    try:
        for name in ("p0", "p1"):
            procs.append(
                start_node_process(
                    name,
                    {
                        "roles": ["provider"],
                        "sandbox": sandbox,
                        "log": {"level": "warning"},
                        "models": [{"cid": cid, "path": str(model)}],
                        "resources": {
                            "devices": [{"kind": "cpu", "memory_bytes": mem}],
                            "max_batch_sessions": args.max_batch,
                        },
                    },
                    workdir=work,
                )
            )
        agg = start_node_process(
            "agg",
            {
                "roles": ["aggregator"],
                "peers": [p.endpoint for p in procs],
                "log": {"level": "info"},
                "models": [{"cid": cid, "path": str(model)}],
            },
            workdir=work,
        )
        procs.append(agg)
        local_tps, local_ids = local_tokens_per_s(model, prompt, args.tokens)
        asyncio.run(pipelined(agg.endpoint, cid, prompt, 4))  # warm-up: workers load their layers
        runs = [asyncio.run(pipelined(agg.endpoint, cid, prompt, args.tokens)) for _ in range(3)]
        pipe_tps = statistics.median(r[0] for r in runs)
        plan = runs[0][2].plan
        stages = len(plan["replicas"][0])
        assert runs[0][1] == local_ids, "pipelined output differs from the local run"
        hop_ms = (1 / pipe_tps - 1 / local_tps) / stages * 1000
        timings = [
            r
            for r in (
                json.loads(x)
                for x in agg.log_path.read_text().splitlines()
                if x.startswith("{") and '"job.completed"' in x
            )
            if r.get("ring_ms")
        ][1:4]  # the three measured runs (not the warm-up)
        jpm = asyncio.run(jobs_per_minute(agg.endpoint, cid, args.clients, args.jobs, 8))
        for p in procs:
            p.stop()
        procs = [
            start_node_process(
                "whole",
                {
                    "roles": ["provider"],
                    "sandbox": sandbox,
                    "log": {"level": "warning"},
                    "models": [{"cid": cid, "path": str(model)}],
                },
                workdir=work,
            )
        ]
        agg1 = start_node_process(
            "agg1",
            {
                "roles": ["aggregator"],
                "peers": [procs[0].endpoint],
                "log": {"level": "warning"},
                "models": [{"cid": cid, "path": str(model)}],
            },
            workdir=work,
        )
        procs.append(agg1)
        asyncio.run(pipelined(agg1.endpoint, cid, prompt, 4))
        ones = [asyncio.run(pipelined(agg1.endpoint, cid, prompt, args.tokens)) for _ in range(3)]
        one_tps = statistics.median(r[0] for r in ones)
        assert ones[0][2].plan["strategy"] == "single", ones[0][2].plan
        assert ones[0][1] == local_ids, "the one-provider output differs from the local run"
    finally:
        for p in procs:
            p.stop()
    print(
        f"machine: {os.cpu_count()} CPUs, python {sys.version.split()[0]}; model {args.layers} layers x {args.hidden} hidden, "
        f"{shape.total_params() / 1e6:.2f} M params fp32; {args.tokens} new tokens; plan {plan['strategy']} with {stages} stages"
    )
    print(f"local (one process, runtime):   {local_tps:8.1f} tokens/s")
    print(
        f"pipelined ({stages} provider processes): {pipe_tps:8.1f} tokens/s   ratio pipelined/local = {pipe_tps / local_tps:.3f}"
    )
    print(f"one provider, every layer (node, no hop): {one_tps:8.1f} tokens/s")
    print(
        f"added latency per hop per token (vs local run): {hop_ms:.3f} ms (goal < 1 ms on loopback)"
    )
    extra = (1 / pipe_tps - 1 / one_tps) * 1000 / max(1, stages - 1)
    print(
        f"added per extra stage vs one provider (two hops + one more worker call): {extra:.3f} ms"
    )
    if timings:
        med = {
            k: statistics.median(t[k] for t in timings)
            for k in ("token_ms", "ring_ms", "ring_compute_ms", "overhead_per_hop_ms")
        }
        print(
            f"per decode token: {med['token_ms']:.3f} ms between tokens at the driver; stage 0 measures "
            f"{med['ring_ms']:.3f} ms from sending its activations to the token's return, "
            f"{med['ring_compute_ms']:.3f} ms of it computing in the later stages, leaving "
            f"{med['overhead_per_hop_ms']:.3f} ms per hop (sampling, framing, sealing, loopback)"
        )
    print(
        f"jobs per minute, {args.clients} concurrent clients x {args.jobs} jobs of 8 tokens: {jpm:.1f}"
    )
    print("same output ids in both runs: yes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
