"""Validation sampling (spec/job.md §Validation sampling): the aggregator adds a replica of its
own on disjoint providers, the client seals its inputs to it like any other, the results are
compared, and a provider serving other weights is caught — with transformers as the oracle of
the returned output."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import hf_greedy, make_tiny, node_config
from test_swarm import PROMPT, SANDBOX, start

from infernet_ref.node.client import submit_job
from infernet_ref.node.daemon import Node
from infernet_ref.nostr import generate_secret_key


async def _swarm(
    tmp: Path, cid: str, paths: list[Path], rate: float, nodes: list[Node]
) -> tuple[list[Node], Node]:
    import dataclasses

    provs = []
    for i, weights in enumerate(paths):
        node = await start(
            nodes,
            node_config(
                tmp,
                f"p{i}",
                roles=["provider"],
                sandbox=SANDBOX,
                models=[{"cid": cid, "path": str(paths[0])}],
            ),
        )
        if weights != paths[0]:  # a dishonest provider: the right CID, other weights
            assert node.provider is not None
            node.provider.models[cid] = dataclasses.replace(node.provider.models[cid], path=weights)
        provs.append(node)
    agg = await start(
        nodes,
        node_config(
            tmp,
            "agg",
            roles=["aggregator"],
            peers=[p.endpoint for p in provs],
            models=[{"cid": cid, "path": str(paths[0])}],
            aggregator={"validation_rate": rate},
        ),
    )
    return provs, agg


async def test_sampled_replica_agrees_then_catches_other_weights(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    path, model, cid = tiny_model
    other = tmp_path / "other-weights"
    make_tiny(other, seed=1)
    _, agg = await _swarm(tmp_path, cid, [path, path], 1.0, no_nodes)
    kw: dict[str, Any] = {"model": cid, "prompt_ids": PROMPT, "max_new_tokens": 6}
    out = await submit_job(agg.endpoint, generate_secret_key(), **kw)
    assert out.state == "completed", out.error
    assert out.plan is not None
    assert out.plan["sampled"] is True
    assert len(out.plan["replicas"]) == 2  # redundancy 1 was asked for
    assert out.verification is not None
    assert out.verification["sampled"] is True
    assert out.verification["verdict"] == "agree"
    assert out.tokens == hf_greedy(model, PROMPT, 6)

    # a dishonest third provider; the swarm then has one honest and one dishonest spare
    liar = await _swarm(tmp_path / "b", cid, [path, other], 1.0, no_nodes)
    out = await submit_job(liar[1].endpoint, generate_secret_key(), **kw)
    assert out.state == "completed", out.error
    ver = out.verification
    assert ver is not None
    assert ver["sampled"] is True
    assert ver["verdict"] == "mismatch"  # surfaced to the client
    assert len(set(ver["hashes"])) == 2
    # two replicas that disagree: nobody can tell which is right, so both are named
    assert sorted(ver["mismatched"]) == sorted(p.pubkey for p in liar[0])
    for key in ver["mismatched"]:
        assert liar[1].store.peer(key).mismatches == 1  # type: ignore[union-attr]


async def test_no_sampling_without_disjoint_providers(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    path, _, cid = tiny_model
    _, agg = await _swarm(tmp_path, cid, [path], 1.0, no_nodes)
    out = await submit_job(
        agg.endpoint, generate_secret_key(), model=cid, prompt_ids=PROMPT, max_new_tokens=3
    )
    assert out.state == "completed", out.error
    assert out.plan is not None
    assert "sampled" not in out.plan
    assert out.verification is not None
    assert out.verification["verdict"] == "single"
