"""Both replay paths of spec/job.md §Failure and replay in a two-stage routed pipeline: the
stage-0 provider killed (the client re-seals its history, ``job.replay``) and the last stage's
provider killed (stage 0's old session replays it, the client is not asked). Either way the
output equals Hugging Face ``transformers`` greedy decoding of an uninterrupted run. With the
client gone, a dead stage 0 leaves no one to replay from: the job fails with 5001."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import hf_greedy
from test_swarm import NEW, half_model_memory, swarm

from infernet_ref.node.client import submit_job
from infernet_ref.node.daemon import Node
from infernet_ref.node.jobstate import JobState
from infernet_ref.node.messages import Message
from infernet_ref.node.payloads import seal_json
from infernet_ref.node.transport import JobPeer, open_peer
from infernet_ref.nostr import generate_secret_key

PROMPT = [1, 2, 3, 4, 5, 6]  # its greedy continuation varies (9 6 51 33 9 6 27 6 ...)


def slow_down(provs: list[Node], seconds: float = 0.05) -> None:
    """Each step waits ``seconds`` first, so a kill lands while generation is still running."""
    for p in provs:
        assert p.provider is not None
        assert p.provider.router is not None
        compute = p.provider.router.compute

        async def slow(s: Any, frame: bytes, compute: Any = compute, **kw: Any) -> Any:
            await asyncio.sleep(seconds)
            return await compute(s, frame, **kw)

        p.provider.router.compute = slow


async def _kill_stage(
    tmp: Path, tiny_model: Any, nodes: list[Node], stage: int
) -> tuple[Any, str, list[dict[str, Any]]]:
    path, _, cid = tiny_model
    provs, agg = await swarm(tmp, path, cid, nodes, providers=3, memory=half_model_memory(path))
    slow_down(provs)
    plan: dict[str, Any] = {}
    killed: list[str] = []
    replays: list[dict[str, Any]] = []

    async def on_event(kind: str, data: dict[str, Any]) -> None:
        if kind == "accepted":
            plan.update(data["plan"])
        elif kind == "replay":
            replays.append(data)
        elif kind == "tokens" and data["done"] == 4 and not killed:
            key = plan["replicas"][0][stage]["provider"]
            victim = next(p for p in provs if p.pubkey == key)
            killed.append(key)
            nodes.remove(victim)
            await victim.stop()

    out = await submit_job(
        agg.endpoint,
        generate_secret_key(),
        model=cid,
        prompt_ids=PROMPT,
        max_new_tokens=NEW,
        on_event=on_event,
    )
    assert len(plan["replicas"][0]) == 2
    assert killed, "the job ended before the victim could be stopped"
    assert out.state == "completed", out.error
    assert out.tokens == hf_greedy(tiny_model[1], PROMPT, NEW)  # as if never interrupted
    assert out.hash_ok is True
    assert killed[0] in out.providers
    assert len(out.providers) == 3  # the spare took its place
    assert agg.store.peer(killed[0]).failures >= 1  # type: ignore[union-attr]
    return out, killed[0], replays


async def test_stage0_killed_client_reseals_history(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    out, killed, replays = await _kill_stage(tmp_path, tiny_model, no_nodes, 0)
    assert out.replays >= 1  # the client was asked (job.replay) and re-sealed its tokens
    assert replays[0]["provider"] != killed  # ... to the new stage-0 provider
    assert replays[0]["generated"] >= 4  # at least the tokens relayed before the kill
    assert out.reroutes >= 1


async def test_last_stage_killed_replays_from_stage0(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    out, _, replays = await _kill_stage(tmp_path, tiny_model, no_nodes, 1)
    assert out.replays == 0
    assert replays == []  # stage 0 survived and held the history: the client is not asked
    assert out.reroutes >= 1


@pytest.mark.parametrize("client", ["away", "silent"])
async def test_stage0_killed_and_no_client_to_replay_fails_5001(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node], client: str
) -> None:
    """Nobody else holds the history in the clear: with the client disconnected, or connected
    but not answering job.replay within stage_timeout, the job fails with 5001."""
    path, _, cid = tiny_model
    provs, agg = await swarm(
        tmp_path, path, cid, no_nodes, providers=3, memory=half_model_memory(path)
    )
    assert agg.aggregator is not None
    agg.aggregator.stage_timeout = 2.0
    slow_down(provs)
    client_sk = generate_secret_key()
    progress: asyncio.Queue[Message] = asyncio.Queue()

    async def on_message(_: JobPeer, msg: Message, __: bytes | None) -> None:
        progress.put_nowait(msg)

    peer = await open_peer(agg.endpoint, client_sk, on_message=on_message)
    job = "j-" + os.urandom(8).hex()
    submit = {
        "job": job,
        "model": cid,
        "prompt_tokens": len(PROMPT),
        "params": {"max_new_tokens": NEW, "sampling": {"temperature": 0.0, "seed": 0}},
        "redundancy": 1,
        "stream": True,
    }
    try:
        reply, _ = await peer.request("job.submit", submit)
        stage0 = reply.body_dict["plan"]["replicas"][0][0]["provider"]
        sealed = seal_json({"prompt_ids": PROMPT}, client_sk, stage0)
        await peer.send("job.inputs", {"job": job, "replica": 0, "inputs": sealed})
        async with asyncio.timeout(30):
            while (await progress.get()).body_dict.get("done", 0) < 2:
                pass
        if client == "away":
            await peer.close()
        task = agg.aggregator.running[job].task
        assert task is not None
        victim = next(p for p in provs if p.pubkey == stage0)
        no_nodes.remove(victim)
        await victim.stop()
        await asyncio.wait_for(task, 60)
    finally:
        await peer.close()
    rec = agg.store.get_job(job, "aggregator")
    assert rec.state is JobState.FAILED
    assert rec.error_code == 5001
    if client == "silent":  # it was asked, and did not answer
        asked = [m.type for m in progress._queue if m.type == "job.replay"]  # type: ignore[attr-defined]
        assert asked == ["job.replay"]


async def test_stalled_ring_whose_stages_all_answer_fails_4300(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    """No stage.token for stage_timeout, yet every stage answers its heartbeat: the replica
    fails with 4300 and no provider is blamed (spec/job.md §Direct routing rule 6)."""
    path, _, cid = tiny_model
    provs, agg = await swarm(
        tmp_path, path, cid, no_nodes, providers=2, memory=half_model_memory(path)
    )
    assert agg.aggregator is not None
    agg.aggregator.stage_timeout = 1.0
    release = asyncio.Event()
    for p in provs:  # every step after the third waits until the test ends: the ring stalls
        assert p.provider is not None
        assert p.provider.router is not None
        compute = p.provider.router.compute

        async def stuck(s: Any, frame: bytes, compute: Any = compute, **kw: Any) -> Any:
            if s.step >= 3:
                await release.wait()
            return await compute(s, frame, **kw)

        p.provider.router.compute = stuck
    try:
        out = await submit_job(
            agg.endpoint, generate_secret_key(), model=cid, prompt_ids=PROMPT, max_new_tokens=NEW
        )
    finally:
        release.set()
    assert out.state == "failed"
    assert out.error is not None
    assert out.error["code"] == 4300
    assert out.reroutes == 0
    for p in provs:  # nobody is blamed for a ring that merely stalled
        peer = agg.store.peer(p.pubkey)
        assert peer is None or peer.failures == 0
