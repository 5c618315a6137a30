"""Nodes on loopback in one event loop: pipelined jobs against the transformers oracle, reroute
and replay after a provider dies, redundancy with agreement and mismatch, rejection, cancel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import hf_greedy, make_tiny, node_config

from infernet_ref.node.client import submit_job
from infernet_ref.node.daemon import Node
from infernet_ref.node.errors import JobProtocolError
from infernet_ref.node.jobstate import JobState
from infernet_ref.node.payloads import open_json, output_sha256
from infernet_ref.node.planner import JobNeeds, ModelShape, stage_bytes
from infernet_ref.nostr import generate_secret_key, public_key

PROMPT = [1, 2, 3, 4, 5, 6]  # its greedy continuation varies (a strong oracle for replays)
NEW = 10
SANDBOX = {"backend": "in-process", "allow_in_process": True}


def half_model_memory(path: Path) -> int:
    shape = ModelShape.from_hf_config(json.loads((path / "config.json").read_text()))
    needs = JobNeeds(len(PROMPT), NEW)
    half = shape.num_layers // 2
    mem = max(
        stage_bytes(shape, needs, 0, half, 1), stage_bytes(shape, needs, half, shape.num_layers, 1)
    )
    assert stage_bytes(shape, needs, 0, shape.num_layers, 1) > mem  # one device cannot hold it all
    return mem


async def start(nodes: list[Node], cfg: Any) -> Node:
    node = Node(cfg)
    await node.start()
    nodes.append(node)
    return node


async def one_provider(
    tmp: Path, model_path: Path, cid: str, nodes: list[Node], **aggregator: Any
) -> tuple[Node, Node]:
    """One in-process provider holding the whole model and an aggregator that knows it
    (``aggregator``: its settings)."""
    models = [{"cid": cid, "path": str(model_path)}]
    prov = await start(
        nodes, node_config(tmp, "p", roles=["provider"], sandbox=SANDBOX, models=models)
    )
    cfg = node_config(
        tmp,
        "agg",
        roles=["aggregator"],
        peers=[prov.endpoint],
        models=models,
        aggregator=aggregator,
    )
    return prov, await start(nodes, cfg)


async def swarm(
    tmp: Path,
    model_path: Path,
    cid: str,
    nodes: list[Node],
    *,
    providers: int,
    memory: int,
    paths: list[Path] | None = None,
) -> tuple[list[Node], Node]:
    import dataclasses

    provs = []
    for i in range(providers):
        cfg = node_config(
            tmp,
            f"p{i}",
            roles=["provider"],
            sandbox=SANDBOX,
            models=[{"cid": cid, "path": str(model_path)}],
            resources={"devices": [{"kind": "cpu", "memory_bytes": memory}]},
        )
        node = await start(nodes, cfg)
        if paths and i < len(paths) and paths[i] != model_path:
            # a dishonest provider: it passed the start-up CID check, then serves other weights
            assert node.provider is not None
            node.provider.models[cid] = dataclasses.replace(
                node.provider.models[cid], path=paths[i]
            )
        provs.append(node)
    agg = await start(
        nodes,
        node_config(
            tmp,
            "agg",
            roles=["aggregator"],
            peers=[p.endpoint for p in provs],
            models=[{"cid": cid, "path": str(model_path)}],
            aggregator={"stage_timeout_s": 20, "max_reroutes": 2},
        ),
    )
    return provs, agg


async def test_pipelined_job_matches_transformers(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    path, model, cid = tiny_model
    provs, agg = await swarm(
        tmp_path, path, cid, no_nodes, providers=2, memory=half_model_memory(path)
    )
    streamed: list[int] = []

    async def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "tokens":
            streamed.extend(data["ids"])

    client_sk = generate_secret_key()
    out = await submit_job(
        agg.endpoint,
        client_sk,
        model=cid,
        prompt_ids=PROMPT,
        max_new_tokens=NEW,
        on_event=on_event,
    )
    assert out.state == "completed", out.error
    assert out.tokens == hf_greedy(model, PROMPT, NEW)
    assert streamed == out.tokens
    assert out.hash_ok is True
    assert out.output_sha256 == output_sha256(out.tokens, salt=bytes.fromhex(out.salt))
    assert out.plan is not None
    assert out.plan["strategy"] == "pipeline"
    assert [
        (s["shard"]["layer_start"], s["shard"]["layer_end"]) for s in out.plan["replicas"][0]
    ] == [(0, 2), (2, 4)]
    assert sorted(out.providers) == sorted(p.pubkey for p in provs)
    assert out.verification == {
        "redundancy": 1,
        "verdict": "single",
        "hashes": [out.output_sha256],
        "mismatched": [],
    }
    rec = agg.store.get_job(out.job, "aggregator")
    assert rec.state is JobState.COMPLETED
    # end to end (spec/job.md §Encryption): the aggregator holds only the count and a payload
    # sealed by stage 0's provider to the client, which its own key cannot open
    assert rec.output["count"] == len(out.tokens)
    sealed = rec.output["sealed"]
    assert (sealed["from"], sealed["to"]) == (
        out.plan["replicas"][0][0]["provider"],
        public_key(client_sk).hex(),
    )
    with pytest.raises(JobProtocolError):
        open_json(sealed, agg.sk, sender=None)
    assert rec.inputs is None
    assert "prompt_ids" not in json.dumps(rec.params)


async def test_provider_dies_mid_generation_reroute_and_replay(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    path, model, cid = tiny_model
    provs, agg = await swarm(
        tmp_path, path, cid, no_nodes, providers=3, memory=half_model_memory(path)
    )
    killed: list[str] = []

    async def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "tokens" and data["done"] == 4 and not killed:
            victim = next(p for p in provs if p.provider is not None and p.provider.sessions)
            killed.append(victim.pubkey)
            no_nodes.remove(victim)
            await victim.stop()

    out = await submit_job(
        agg.endpoint,
        generate_secret_key(),
        model=cid,
        prompt_ids=PROMPT,
        max_new_tokens=NEW,
        on_event=on_event,
    )
    assert killed
    assert out.state == "completed", out.error
    assert out.reroutes >= 1
    assert out.tokens == hf_greedy(model, PROMPT, NEW)  # identical to an uninterrupted run
    assert agg.store.peer(killed[0]).failures >= 1  # type: ignore[union-attr]


async def test_seeded_sampling_is_identical_across_a_replay(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    path, _, cid = tiny_model
    provs, agg = await swarm(
        tmp_path, path, cid, no_nodes, providers=3, memory=half_model_memory(path)
    )
    kw: dict[str, Any] = {
        "model": cid,
        "prompt_ids": PROMPT,
        "max_new_tokens": NEW,
        "temperature": 1.3,
        "top_k": 50,
        "seed": 1234,
    }
    first = await submit_job(agg.endpoint, generate_secret_key(), **kw)
    killed: list[bool] = []

    async def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "tokens" and data["done"] == 3 and not killed:
            victim = next(p for p in provs if p.provider is not None and p.provider.sessions)
            killed.append(True)
            no_nodes.remove(victim)
            await victim.stop()

    second = await submit_job(agg.endpoint, generate_secret_key(), on_event=on_event, **kw)
    assert first.state == second.state == "completed"
    assert killed
    assert second.reroutes >= 1
    assert first.tokens == second.tokens


async def test_redundancy_agree_and_mismatch_recorded(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    path, model, cid = tiny_model
    other = tmp_path / "other-weights"
    make_tiny(other, seed=1)  # a provider that serves wrong weights under the same CID
    big = 1 << 30
    provs, agg = await swarm(
        tmp_path, path, cid, no_nodes, providers=3, memory=big, paths=[path, path, other]
    )
    out = await submit_job(
        agg.endpoint,
        generate_secret_key(),
        model=cid,
        prompt_ids=PROMPT,
        max_new_tokens=NEW,
        redundancy=3,
    )
    assert out.state == "completed"
    assert out.plan is not None
    assert out.plan["strategy"] == "single"
    ver = out.verification
    assert ver is not None
    assert ver["verdict"] == "mismatch"
    assert ver["mismatched"] == [provs[2].pubkey]
    assert out.tokens == hf_greedy(model, PROMPT, NEW)  # the majority's output
    assert agg.store.peer(provs[2].pubkey).mismatches == 1  # type: ignore[union-attr]
    assert agg.store.reputation(provs[2].pubkey) < agg.store.reputation(provs[0].pubkey)
    out2 = await submit_job(
        agg.endpoint,
        generate_secret_key(),
        model=cid,
        prompt_ids=PROMPT,
        max_new_tokens=4,
        redundancy=2,
    )
    assert out2.verification is not None
    assert out2.verification["verdict"] == "agree"  # the low-reputation provider is ranked last
    assert provs[2].pubkey not in out2.providers


async def test_model_that_fits_nowhere_is_rejected(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    path, _, cid = tiny_model
    _, agg = await swarm(tmp_path, path, cid, no_nodes, providers=2, memory=4096)
    out = await submit_job(
        agg.endpoint, generate_secret_key(), model=cid, prompt_ids=PROMPT, max_new_tokens=NEW
    )
    assert out.state == "rejected"
    assert out.error is not None
    assert out.error["code"] == 4100
    assert agg.store.get_job(out.job, "aggregator").state is JobState.REJECTED


async def test_unknown_model_rejected_and_status_and_cancel(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    from infernet_ref.node.client import job_request

    path, _, cid = tiny_model
    _, agg = await swarm(tmp_path, path, cid, no_nodes, providers=1, memory=1 << 30)
    sk = generate_secret_key()
    out = await submit_job(
        agg.endpoint,
        sk,
        model="bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e",
        prompt_ids=PROMPT,
        max_new_tokens=2,
    )
    assert out.state == "rejected"
    assert out.error is not None
    assert out.error["code"] == 4042
    status = await job_request(agg.endpoint, sk, "job.status", out.job)
    assert status["state"] == "rejected"
    with pytest.raises(Exception, match="4003"):
        await job_request(agg.endpoint, generate_secret_key(), "job.status", out.job)
    with pytest.raises(Exception, match="4040"):
        await job_request(agg.endpoint, sk, "job.cancel", "j-doesnotexist")


async def test_discovery_through_dht_announcements(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    import asyncio

    from infernet_ref.dht.records import provider_key

    path, model, cid = tiny_model
    agg = await start(
        no_nodes,
        node_config(
            tmp_path, "agg", roles=["aggregator"], models=[{"cid": cid, "path": str(path)}]
        ),
    )
    assert agg.dht is not None
    boot = "{}:{}".format(*agg.dht.address)
    mem = 1 << 30  # announcements carry MiB: the tiny model fits one device
    provs = []
    for i in range(2):
        cfg = node_config(
            tmp_path,
            f"p{i}",
            roles=["provider"],
            sandbox=SANDBOX,
            bootstrap=[boot],
            models=[{"cid": cid, "path": str(path)}],
            resources={"devices": [{"kind": "cpu", "memory_bytes": mem}]},
        )
        provs.append(await start(no_nodes, cfg))
    async with asyncio.timeout(30):
        while not all(p.announcer is not None and p.announcer.published for p in provs):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    events = await agg.dht.get(provider_key(cid))
    assert sorted(e["pubkey"] for e in events) == sorted(p.pubkey for p in provs)
    out = await submit_job(
        agg.endpoint,
        generate_secret_key(),
        model=cid,
        prompt_ids=PROMPT,
        max_new_tokens=NEW,
        redundancy=2,
    )
    assert out.state == "completed", out.error
    assert out.tokens == hf_greedy(model, PROMPT, NEW)
    assert sorted(out.providers) == sorted(p.pubkey for p in provs)
    assert out.verification is not None
    assert out.verification["verdict"] == "agree"


async def test_providers_fetch_only_their_layers_through_the_content_layer(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    import asyncio

    from safetensors import safe_open

    path, model, cid = tiny_model
    # The publisher holds the folder; it adds it to its block store and announces it (kind 38201).
    pub = await start(
        no_nodes,
        node_config(tmp_path, "pub", roles=["client"], models=[{"cid": cid, "path": str(path)}]),
    )
    boot = "{}:{}".format(*pub.dht.address)
    provs = []
    for i, (a, b) in enumerate(((0, 2), (2, 4))):
        cfg = node_config(
            tmp_path,
            f"p{i}",
            roles=["provider"],
            sandbox=SANDBOX,
            bootstrap=[boot],
            models=[{"cid": cid, "layer_start": a, "layer_end": b}],
            resources={"devices": [{"kind": "cpu", "memory_bytes": 1 << 30}]},
        )
        provs.append(await start(no_nodes, cfg))
    agg = await start(
        no_nodes, node_config(tmp_path, "agg", roles=["aggregator"], bootstrap=[boot])
    )
    async with asyncio.timeout(60):
        for p in provs:
            assert p.fetch_task is not None
            await p.fetch_task
    for p, (a, b) in zip(provs, ((0, 2), (2, 4)), strict=True):
        served = p.provider.models[cid]  # type: ignore[union-attr]
        with safe_open(str(served.path / "model.safetensors"), "pt") as f:
            names = set(f.keys())
        layers = {int(n.split(".")[2]) for n in names if n.startswith("model.layers.")}
        assert layers == set(range(a, b))
        assert ("model.embed_tokens.weight" in names) == (a == 0)
        assert ("lm_head.weight" in names) == (b == 4)
        await p.announcer.publish_once()
    out = await submit_job(
        agg.endpoint, generate_secret_key(), model=cid, prompt_ids=PROMPT, max_new_tokens=NEW
    )
    assert out.state == "completed", out.error
    assert out.plan is not None
    assert [
        (s["shard"]["layer_start"], s["shard"]["layer_end"]) for s in out.plan["replicas"][0]
    ] == [(0, 2), (2, 4)]
    assert out.tokens == hf_greedy(model, PROMPT, NEW)


async def test_cancel_a_running_job(tmp_path: Path, tiny_model: Any, no_nodes: list[Node]) -> None:
    import asyncio

    from infernet_ref.node.client import job_request

    path, _, cid = tiny_model
    provs, agg = await swarm(tmp_path, path, cid, no_nodes, providers=2, memory=1 << 30)
    for p in provs:  # slow providers (20 ms a step), so the cancel meets a running generation
        assert p.provider is not None
        assert p.provider.router is not None
        compute = p.provider.router.compute

        async def slow(s: Any, frame: bytes, compute: Any = compute, **kw: Any) -> Any:
            await asyncio.sleep(0.02)
            return await compute(s, frame, **kw)

        p.provider.router.compute = slow
    sk = generate_secret_key()
    cancelled: list[dict[str, Any]] = []

    async def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "tokens" and data["done"] == 3 and not cancelled:
            job = next(iter(agg.aggregator.running)) if agg.aggregator else ""
            cancelled.append(await job_request(agg.endpoint, sk, "job.cancel", job))

    out = await submit_job(
        agg.endpoint, sk, model=cid, prompt_ids=PROMPT, max_new_tokens=200, on_event=on_event
    )
    assert cancelled, out
    assert cancelled[0]["type"] == "sys.ok"
    assert out.state == "cancelled"
    assert out.error is not None
    assert out.error["code"] == 4200
    assert agg.store.get_job(out.job, "aggregator").state is JobState.CANCELLED
    async with asyncio.timeout(10):
        while any(p.provider is not None and p.provider.sessions for p in provs):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    recs = [r for p in provs if (r := p.store.find_job(out.job, "provider")) is not None]
    assert [r.state for r in recs] == [JobState.CANCELLED]  # the provider was told (job.cancel)


async def test_concurrent_clients_share_the_providers(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    """Regression: one job's connection closing must not end another job offered meanwhile."""
    import asyncio

    path, model, cid = tiny_model
    _, agg = await swarm(tmp_path, path, cid, no_nodes, providers=2, memory=half_model_memory(path))

    async def client(i: int) -> list[Any]:
        sk = generate_secret_key()
        return [
            await submit_job(
                agg.endpoint,
                sk,
                model=cid,
                prompt_ids=[1 + i, 2 + j, 3],
                max_new_tokens=4,
                stream=False,
            )
            for j in range(3)
        ]

    outs = [o for batch in await asyncio.gather(*(client(i) for i in range(4))) for o in batch]
    assert [o.state for o in outs] == ["completed"] * 12, [o.error for o in outs]
    assert all(o.reroutes == 0 for o in outs)
    assert outs[0].tokens == hf_greedy(model, [1, 2, 3], 4)
