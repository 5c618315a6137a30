"""``infernet node run`` processes: node info over HTTP, a hybrid pipeline (one stage TP=2 in a
bubblewrap sandbox), SIGKILL of a provider mid-generation with replay, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import hf_greedy

from infernet_ref.node.client import submit_job
from infernet_ref.node.discovery import fetch_node_info, http_get, well_known_url
from infernet_ref.node.launch import NodeProcess, start_node_process
from infernet_ref.node.planner import JobNeeds, ModelShape, stage_bytes
from infernet_ref.nostr import generate_secret_key

PROMPT = [3, 14, 15, 92, 65]
NEW = 16
IN_PROCESS = {"backend": "in-process", "allow_in_process": True}


@pytest.fixture
def procs() -> Any:
    started: list[NodeProcess] = []
    yield started
    for p in started:
        p.kill()


def provider_cfg(
    path: Path, cid: str, memory: list[int], sandbox: dict[str, Any]
) -> dict[str, Any]:
    return {
        "roles": ["provider"],
        "sandbox": sandbox,
        "models": [{"cid": cid, "path": str(path)}],
        "resources": {"devices": [{"kind": "cpu", "memory_bytes": m} for m in memory]},
    }


def memory_for(path: Path, a: int, b: int, tp: int) -> int:
    shape = ModelShape.from_hf_config(json.loads((path / "config.json").read_text()))
    return stage_bytes(shape, JobNeeds(len(PROMPT), NEW), a, b, tp)


async def test_node_info_and_404(tmp_path: Path, tiny_model: Any, procs: list[NodeProcess]) -> None:
    path, _, cid = tiny_model
    p = start_node_process("p", provider_cfg(path, cid, [1 << 30], IN_PROCESS), workdir=tmp_path)
    procs.append(p)
    event, info, _ = await fetch_node_info(p.endpoint)
    assert event["kind"] == 38202
    assert info["pubkey"] == p.pubkey
    assert info["roles"] == ["provider"]
    assert info["capabilities"]["served"] == [
        {"cid": cid, "layer_start": 0, "layer_end": 4, "dtype": "float32"}
    ]
    status, _ = await http_get(well_known_url(p.endpoint).replace("/.well-known/infernet", "/nope"))
    assert status == 404
    assert p.stop() == 0


async def test_sigkill_provider_mid_generation_hybrid_tp2(
    tmp_path: Path, tiny_model: Any, procs: list[NodeProcess]
) -> None:
    from infernet_ref.node.sandbox import bubblewrap

    path, model, cid = tiny_model
    sandbox = {"backend": "bubblewrap"} if bubblewrap.available() else IN_PROCESS
    tp2 = sandbox["backend"] == "bubblewrap"
    first = memory_for(path, 0, 2, 1)
    second = memory_for(path, 2, 4, 2) if tp2 else memory_for(path, 2, 4, 1)
    assert memory_for(path, 0, 4, 1) > max(first, second)
    a = start_node_process("a", provider_cfg(path, cid, [first], sandbox), workdir=tmp_path)
    procs.append(a)
    bs = []
    for name in ("b1", "b2"):
        bs.append(
            start_node_process(
                name,
                provider_cfg(path, cid, [second, second] if tp2 else [second], sandbox),
                workdir=tmp_path,
            )
        )
        procs.append(bs[-1])
    agg = start_node_process(
        "agg",
        {
            "roles": ["aggregator"],
            "peers": [a.endpoint, *(b.endpoint for b in bs)],
            "models": [{"cid": cid, "path": str(path)}],
            "aggregator": {"stage_timeout_s": 60},
        },
        workdir=tmp_path,
    )
    procs.append(agg)
    by_key = {p.pubkey: p for p in (a, *bs)}
    plan: dict[str, Any] = {}
    killed: list[str] = []

    def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "accepted":
            plan.update(data["plan"])
        if kind == "tokens" and data["done"] >= 3 and not killed:
            victim = by_key[plan["replicas"][0][1]["provider"]]
            killed.append(victim.pubkey)
            victim.kill()

    out = await submit_job(
        agg.endpoint,
        generate_secret_key(),
        model=cid,
        prompt_ids=PROMPT,
        max_new_tokens=NEW,
        on_event=on_event,
        timeout=300,
    )
    assert out.state == "completed", (out.error, agg.log_path.read_text()[-3000:])
    assert plan["strategy"] == ("hybrid" if tp2 else "pipeline")
    assert [s["shard"]["tp"] for s in plan["replicas"][0]] == ([1, 2] if tp2 else [1, 1])
    assert killed
    assert out.reroutes >= 1
    assert killed[0] not in out.providers or out.reroutes >= 1
    assert out.tokens == hf_greedy(model, PROMPT, NEW)
    assert agg.stop() == 0  # graceful SIGTERM
    db = sqlite3.connect(agg.data_dir / "state.sqlite3")
    assert db.execute("SELECT state, reroutes FROM jobs WHERE job=?", (out.job,)).fetchone() == (
        "completed",
        out.reroutes,
    )
    assert (
        not (agg.data_dir / "state.sqlite3-wal").exists()
        or (agg.data_dir / "state.sqlite3-wal").stat().st_size == 0
    )
    logs = [
        json.loads(line)
        for line in agg.log_path.read_text().splitlines()
        if line.startswith("{") and '"ts"' in line
    ]
    assert any(rec["event"] == "driver.reroute" for rec in logs)
    await asyncio.sleep(0)
