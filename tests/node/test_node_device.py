"""Providers on the configured device (spec/node-worker.md §Worker ``--device``).

By default (CI) the devices are ``cpu``; with ``INFERNET_TEST_DEVICE=cuda`` on a GPU machine the
providers' configs list a ``cuda`` device and their in-process workers put the stages on the GPU
(the runtime then runs the Triton kernels). Either way a directly routed 2-stage pipeline must
produce Hugging Face transformers' greedy tokens (the oracle)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import hf_greedy, node_config
from test_swarm import PROMPT, SANDBOX, half_model_memory, start

from infernet_ref.errors import LocalProtocolError
from infernet_ref.node.client import submit_job
from infernet_ref.node.daemon import Node
from infernet_ref.node.sandbox import WorkerSpec
from infernet_ref.node.sandbox.spec import SandboxUnavailable
from infernet_ref.nostr import generate_secret_key

KIND = "cuda" if os.environ.get("INFERNET_TEST_DEVICE", "").strip().lower() == "cuda" else "cpu"


@pytest.mark.skipif(
    KIND == "cuda" and not torch.cuda.is_available(),
    reason="INFERNET_TEST_DEVICE=cuda but torch.cuda.is_available() is False: no GPU here",
)
async def test_routed_pipeline_on_the_configured_device(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    path, model, cid = tiny_model
    memory = half_model_memory(path)
    provs = [
        await start(
            no_nodes,
            node_config(
                tmp_path,
                f"p{i}",
                roles=["provider"],
                sandbox=SANDBOX,
                models=[{"cid": cid, "path": str(path)}],
                resources={"devices": [{"kind": KIND, "memory_bytes": memory}]},
            ),
        )
        for i in range(2)
    ]
    agg = await start(
        no_nodes,
        node_config(
            tmp_path,
            "agg",
            roles=["aggregator"],
            peers=[p.endpoint for p in provs],
            models=[{"cid": cid, "path": str(path)}],
        ),
    )
    before = torch.cuda.memory_allocated() if KIND == "cuda" else 0
    out = await submit_job(
        agg.endpoint, generate_secret_key(), model=cid, prompt_ids=PROMPT, max_new_tokens=10
    )
    assert out.state == "completed", out.error
    assert out.plan is not None
    assert out.plan["strategy"] == "pipeline"
    assert out.tokens == hf_greedy(model, PROMPT, 10)
    for p in provs:
        assert p.provider is not None
        assert p.provider.device == KIND
    if KIND == "cuda":  # in-process workers: their stages' weights and KV caches are on the GPU
        assert torch.cuda.memory_allocated() > before


def test_device_names_and_sandboxes_without_gpu_passthrough(tmp_path: Path) -> None:
    import asyncio

    from infernet_ref.node.sandbox import bubblewrap

    for bad in ("gpu", "cuda:x", "cuda:123", "CPU"):
        with pytest.raises(LocalProtocolError):
            WorkerSpec(model_dir=tmp_path, device=bad)
    spec = WorkerSpec(model_dir=tmp_path, device="cuda:0")
    assert spec.worker_argv(None)[-2:] == ["--device", "cuda:0"]
    assert "--device" not in WorkerSpec(model_dir=tmp_path).worker_argv(None)
    if not bubblewrap.available():
        pytest.skip("bubblewrap: bwrap missing or cannot create namespaces on this host")
    with pytest.raises(SandboxUnavailable, match="in-process"):
        asyncio.run(bubblewrap.BubblewrapExecutor().start(spec))
