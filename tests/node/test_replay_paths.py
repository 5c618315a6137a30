"""Both replay paths of spec/job.md §Failure and replay in a two-stage routed pipeline: the
stage-0 provider killed (the client re-seals its history, ``job.replay``) and the last stage's
provider killed (stage 0's old session replays it, the client is not asked). Either way the
output equals Hugging Face ``transformers`` greedy decoding of an uninterrupted run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import hf_greedy
from test_swarm import NEW, PROMPT, half_model_memory, swarm

from infernet_ref.node.client import submit_job
from infernet_ref.node.daemon import Node
from infernet_ref.nostr import generate_secret_key


async def _kill_stage(
    tmp: Path, tiny_model: Any, nodes: list[Node], stage: int
) -> tuple[Any, str, list[dict[str, Any]]]:
    path, _, cid = tiny_model
    provs, agg = await swarm(tmp, path, cid, nodes, providers=3, memory=half_model_memory(path))
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
