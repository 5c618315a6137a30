"""The local swarm demo, step by step (issue 8 item 8; spec/job.md, spec/node.md).

Theory of operation: one asyncio task drives a scripted scenario over real node processes on
loopback and records what happened in a report (``report.py`` prints it):

1. *publish* — the bootstrap node (DHT bootstrap of everyone else) is configured with the demo
   model folder and its root CID (computed like ``ipfs add``); it adds the folder to its block
   store, serves it on /content and announces itself as a content provider (kind 38201) in the DHT;
2. *start* — five providers (two serve layers [0, L/2) on one device, three serve [L/2, L) on two
   devices too small to hold that half alone, so the planner must use TP=2 there) and an
   aggregator, each its own ``infernet node run`` process with its own key and data dir. The
   providers know the model only by CID: they find the bootstrap node in the DHT and fetch *only
   the tensors of their layers* through the content layer (blocks verified against their CIDs);
   the aggregator reads the model's ``config.json`` the same way;
3. *job* — this process is the client (own key and SQLite store): it submits the prompt with
   redundancy 2; the aggregator plans two disjoint replicas of a 2-stage pipeline (stage 1 with
   TP=2 inside its provider's sandbox), streams tokens and compares the replicas' result hashes;
4. *fault* — after a few streamed tokens the provider of replica 0's TP stage is SIGKILLed (with
   its sandboxed workers); the aggregator reroutes that stage to the spare provider and replays;
5. *check* — the output must equal Hugging Face transformers' greedy continuation of the prompt
   on the same weights (what an uninterrupted single-process run produces);
6. *cleanup* — every process is stopped, also on error or Ctrl-C.
"""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infernet_ref.node.demo.swarm import NodeProc, Swarm, SwarmError

REPO_MODEL = Path(__file__).resolve().parents[3] / "models" / "demo"
BOS = 256
PROVIDER_HEARTBEAT_S = 25.0


@dataclass
class DemoOptions:
    model_dir: Path = REPO_MODEL
    prompt: str = "The function returns"
    max_new_tokens: int = 48
    redundancy: int = 2
    kill: bool = True
    kill_after_tokens: int = 8
    backend: str = "auto"
    workdir: Path | None = None
    keep: bool = False
    start_timeout: float = 180.0
    job_timeout: float = 900.0
    on_step: Callable[[str], None] | None = None


@dataclass
class DemoState:
    opts: DemoOptions
    root: Path
    report: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    def step(self, name: str, **data: Any) -> None:
        entry = {"t": round(time.monotonic() - self.started, 2), "step": name, **data}
        self.report.setdefault("timeline", []).append(entry)
        if self.opts.on_step is not None:
            self.opts.on_step(_describe(entry))


def _describe(entry: dict[str, Any]) -> str:
    fields = ", ".join(f"{k}={v}" for k, v in entry.items() if k not in ("t", "step"))
    return f"[{entry['t']:7.2f}s] {entry['step']}" + (f": {fields}" if fields else "")


def free_ports(n: int, kind: socket.SocketKind = socket.SOCK_STREAM) -> list[int]:
    """n distinct free loopback ports of ``kind`` (bound together, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, kind)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def model_cid(model_dir: Path) -> tuple[str, int]:
    """Root CID (UnixFS, ``unixfs-v1-2025`` profile) and DAG size of the model folder."""
    from infernet_ref.content.builder import build_path  # noqa: PLC0415

    entry = build_path(model_dir)
    return str(entry.cid), entry.tsize


def device_memory(model_dir: Path, prompt_tokens: int, new_tokens: int) -> dict[str, int]:
    """Announced per-device memory that forces [0, L/2) on 1 device and [L/2, L) on TP=2."""
    from infernet_ref.node.planner import JobNeeds, ModelShape, stage_bytes  # noqa: PLC0415

    shape = ModelShape.from_hf_config(json.loads((model_dir / "config.json").read_text()))
    needs = JobNeeds(prompt_tokens, new_tokens)
    half, n = shape.num_layers // 2, shape.num_layers
    first = stage_bytes(shape, needs, 0, half, 1)
    second_tp1 = stage_bytes(shape, needs, half, n, 1)
    second_tp2 = stage_bytes(shape, needs, half, n, 2)
    return {
        "layers": n,
        "half": half,
        "first": first + 4096,
        "second": (second_tp2 + second_tp1) // 2,  # fits at TP=2 only
    }


def _base_config(ws: int, dht: int, boot_dht: int | None, backend: str) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "listen": {"ws": f"127.0.0.1:{ws}", "dht": f"127.0.0.1:{dht}"},
        "log": {"level": "info", "file": "node.log.jsonl"},
        "sandbox": {
            "backend": backend,
            "memory_limit_bytes": 3 << 29,
            "cpus": 1,
            "pids_limit": 256,
        },
    }
    if boot_dht is not None:
        cfg["bootstrap"] = [f"127.0.0.1:{boot_dht}"]
    return cfg


def write_configs(
    state: DemoState, swarm: Swarm, cid: str, mem: dict[str, int]
) -> dict[str, NodeProc]:
    """Configuration of every node; ports are chosen up front so peers can be listed."""
    names = ["p1", "p2", "p3", "p4", "p5"]
    tcp = free_ports(len(names) + 1)
    udp = free_ports(len(names) + 1, socket.SOCK_DGRAM)
    ports = [p for pair in zip(tcp, udp, strict=True) for p in pair]  # ws, dht, ws, dht, ...
    boot = swarm.nodes["boot"]
    boot_dht = boot.extra["dht"]
    nodes: dict[str, NodeProc] = {}
    for i, name in enumerate(names):
        first = i < 2
        cfg = _base_config(ports[2 * i], ports[2 * i + 1], boot_dht, state.opts.backend)
        cfg["roles"] = ["provider"]
        start, end = (0, mem["half"]) if first else (mem["half"], mem["layers"])
        # no local copy: the provider fetches its layers' tensors by CID (content layer)
        cfg["models"] = [{"cid": cid, "layer_start": start, "layer_end": end}]
        devices = 1 if first else 2
        size = mem["first"] if first else mem["second"]
        cfg["resources"] = {"devices": [{"kind": "cpu", "memory_bytes": size}] * devices}
        # A provider answers job.assign only once its sandboxed worker is up (torch import,
        # weights); its job connection must not declare the aggregator silent meanwhile.
        cfg["heartbeat_interval_s"] = PROVIDER_HEARTBEAT_S
        nodes[name] = swarm.add(name, "provider", cfg)
        nodes[name].extra.update(layers=[start, end], devices=devices, ws=ports[2 * i])
    agg_ws, agg_dht = ports[-2], ports[-1]
    cfg = _base_config(agg_ws, agg_dht, boot_dht, state.opts.backend)
    cfg["roles"] = ["aggregator"]
    cfg["peers"] = [f"ws://127.0.0.1:{n.extra['ws']}/job" for n in nodes.values()]
    cfg["aggregator"] = {
        "default_redundancy": state.opts.redundancy,
        "stage_timeout_s": 180,
        "max_reroutes": 3,
    }
    nodes["agg"] = swarm.add("agg", "aggregator", cfg)
    return nodes


def reference_tokens(model_dir: Path, prompt_ids: list[int], n: int) -> list[int]:
    """The oracle: transformers' greedy continuation (an uninterrupted single-process run)."""
    import torch  # noqa: PLC0415
    import transformers  # noqa: PLC0415

    model: Any = transformers.LlamaForCausalLM.from_pretrained(model_dir)
    model.train(False)
    eos = model.config.eos_token_id
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt_ids]),
            max_new_tokens=n,
            do_sample=False,
            pad_token_id=model.config.pad_token_id,
            eos_token_id=eos,
        )
    return [int(t) for t in out[0, len(prompt_ids) :]]


def decode_bytes(ids: list[int]) -> str:
    return bytes(t for t in ids if t < 256).decode("utf-8", errors="replace")


def new_root(opts: DemoOptions) -> Path:
    if opts.workdir is not None:
        opts.workdir.mkdir(parents=True, exist_ok=True)
        return opts.workdir
    return Path(tempfile.mkdtemp(prefix="infernet-demo-"))


def remove_root(root: Path, opts: DemoOptions) -> None:
    if not opts.keep and opts.workdir is None:
        shutil.rmtree(root, ignore_errors=True)


__all__ = ["DemoOptions", "DemoState", "SwarmError"]
