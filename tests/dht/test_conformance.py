"""The ``dht.*`` conformance cases against the reference node (all pass) and against nodes that
break one rule each (the matching case fails: proof the cases can fail)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from infernet_conformance import RunReport, Target, Verdict, all_cases, load_cases, run_cases
from infernet_conformance.runner import select

from infernet_ref.dht import DHTConfig, DHTNode, server
from infernet_ref.dht.tokens import TokenIssuer

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def swarm() -> AsyncIterator[list[DHTNode]]:
    rng = random.Random(11)
    nodes = [await DHTNode.create(rng.randbytes(32))]
    for _ in range(24):
        nodes.append(await DHTNode.create(rng.randbytes(32)))
    await asyncio.gather(*(nd.bootstrap([nodes[0].address]) for nd in nodes[1:]))
    yield nodes
    for nd in nodes:
        await nd.close(graceful=False)


async def _run(node: DHTNode, patterns: list[str]) -> RunReport:
    load_cases()
    cases = select(all_cases(), patterns)
    assert cases
    host, port = node.address
    return await run_cases(cases, Target.parse([f"udp://{host}:{port}"]), timeout=10)


def _failed(report: RunReport) -> dict[str, str]:
    return {r.id: r.message for r in report.results if r.verdict is Verdict.FAIL}


async def test_reference_node_passes_every_case(swarm: list[DHTNode]) -> None:
    report = await _run(swarm[3], ["dht"])
    assert {r.verdict for r in report.results} == {Verdict.PASS}, [
        (r.id, r.message) for r in report.results
    ]
    assert len(report.results) >= 10


async def test_cases_fail_on_broken_nodes(swarm: list[DHTNode], monkeypatch: Any) -> None:
    node = swarm[4]
    monkeypatch.setattr(TokenIssuer, "check", lambda *a: True)
    assert "dht.store.token_required" in _failed(await _run(node, ["dht.store.token_required"]))
    monkeypatch.undo()

    monkeypatch.setattr(node.core.validator, "_verify", lambda ev: True)
    node.core.validator._cache.clear()
    assert "dht.store.bad_signature" in _failed(await _run(node, ["dht.store.bad_signature"]))
    monkeypatch.undo()

    real = server._contacts_for
    monkeypatch.setattr(
        server, "_contacts_for", lambda core, target, ex: real(core, target, ex)[::-1]
    )
    assert "dht.find_node.sorted" in _failed(await _run(node, ["dht.find_node.sorted"]))
    monkeypatch.undo()

    object.__setattr__(node.core, "config", DHTConfig(amplification_factor=50))
    assert "dht.amplification.unverified" in _failed(
        await _run(node, ["dht.amplification.unverified"])
    )

    object.__setattr__(node.core, "config", DHTConfig())
    monkeypatch.setattr(node.core, "owns_address", lambda ip, port: True)  # signs for anyone
    assert "dht.ping.proof_not_relayable" in _failed(
        await _run(node, ["dht.ping.proof_not_relayable"])
    )
