"""The job.* / node.* conformance cases pass against the reference node and catch broken ones."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from conftest import node_config
from infernet_conformance import Target, all_cases, load_cases
from infernet_conformance.runner import run_cases, select

from infernet_ref.node import stageinputs as provider_module  # where stage.inputs opens
from infernet_ref.node.daemon import Node

SANDBOX = {"backend": "in-process", "allow_in_process": True}


async def _nodes(
    tmp: Path, path: Path, cid: str, nodes: list[Node], **agg_raw: Any
) -> tuple[Node, Node]:
    prov = Node(
        node_config(
            tmp,
            "p",
            roles=["provider"],
            sandbox=SANDBOX,
            models=[{"cid": cid, "path": str(path)}],
            resources={"devices": [{"kind": "cpu", "memory_bytes": 1 << 30}]},
        )
    )
    await prov.start()
    nodes.append(prov)
    agg = Node(
        node_config(
            tmp,
            "agg",
            roles=["aggregator"],
            peers=[prov.endpoint],
            models=[{"cid": cid, "path": str(path)}],
            max_message_size=1 << 20,
            **agg_raw,
        )
    )
    await agg.start()
    nodes.append(agg)
    return prov, agg


def _targets(prov: Node, agg: Node, path: Path, cid: str) -> Target:
    query = f"?model={cid}&model_dir={path}"
    return Target.parse([f"job={agg.endpoint}{query}", f"provider={prov.endpoint}{query}"])


async def test_reference_node_passes_job_and_node_cases(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    path, _, cid = tiny_model
    prov, agg = await _nodes(tmp_path, path, cid, no_nodes)
    load_cases()
    cases = select(all_cases(), ["job", "node"])
    assert len(cases) >= 23
    report = await run_cases(cases, _targets(prov, agg, path, cid), timeout=20)
    bad = [(r.id, r.verdict.value, r.message) for r in report.results if r.verdict.value != "pass"]
    assert not bad, bad


async def test_cases_fail_on_a_node_that_skips_signature_checks(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    path, _, cid = tiny_model
    _, agg = await _nodes(tmp_path, path, cid, no_nodes)
    agg.challenger.verify = lambda event, now, challenge=None: str(event["pubkey"])  # type: ignore[method-assign]
    load_cases()
    report = await run_cases(
        select(all_cases(), ["job.auth"]), Target.parse([f"job={agg.endpoint}"]), timeout=10
    )
    verdicts = {r.id: r.verdict.value for r in report.results}
    assert verdicts["job.auth.bad_signature"] == "fail"
    assert verdicts["job.auth.replay"] == "fail"
    assert verdicts["job.auth.ok"] == "pass"


async def test_route_cases_fail_on_providers_that_break_the_rules(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider that takes forwards from its driver instead of route.prev, and one that opens
    inputs from any sender, each fail the case written for that rule (and only that one)."""
    path, _, cid = tiny_model
    prov, agg = await _nodes(tmp_path, path, cid, no_nodes)
    provider = prov.provider
    assert provider is not None
    opened = provider._open

    async def lax_open(peer: Any, msg: Any, payload: bytes | None) -> None:
        await opened(peer, msg, payload)
        s = provider.sessions.get(msg.body_dict["session"])
        if s is not None and s.route is not None:  # "prev" becomes whoever opened the session
            s.route = dataclasses.replace(s.route, prev=s.opener)

    provider._open = lax_open  # type: ignore[method-assign]
    real_open = provider_module.open_plaintext

    def any_sender(payload: Any, secret_key: bytes, *, sender: str | None, def_name: str) -> Any:
        return real_open(payload, secret_key, sender=None, def_name=def_name)

    load_cases()
    cases = select(all_cases(), ["job.route"])
    report = await run_cases(cases, _targets(prov, agg, path, cid), timeout=20)
    verdicts = {r.id: r.verdict.value for r in report.results}
    assert verdicts["job.route.forward_from_wrong_key"] == "fail"
    assert verdicts["job.route.inputs_wrong_sender"] == "pass"
    assert verdicts["job.route.inputs_unknown_session"] == "pass"
    provider._open = opened  # type: ignore[method-assign]
    monkeypatch.setattr(provider_module, "open_plaintext", any_sender)
    report = await run_cases(cases, _targets(prov, agg, path, cid), timeout=20)
    verdicts = {r.id: r.verdict.value for r in report.results}
    assert verdicts["job.route.inputs_wrong_sender"] == "fail"
    assert verdicts["job.route.forward_from_wrong_key"] == "pass"
    assert verdicts["job.route.single_stage_tokens"] == "pass"


async def test_inputs_case_fails_on_an_aggregator_that_passes_anything(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    path, _, cid = tiny_model
    prov, agg = await _nodes(tmp_path, path, cid, no_nodes)
    aggregator = agg.aggregator
    assert aggregator is not None

    def blind(peer: Any, msg: Any) -> None:  # drops every job.inputs on the floor, no checks
        return None

    aggregator._inputs = blind  # type: ignore[method-assign]
    load_cases()
    report = await run_cases(
        select(all_cases(), ["job.inputs"]), _targets(prov, agg, path, cid), timeout=5
    )
    assert {r.id: r.verdict.value for r in report.results} == {"job.inputs.misaddressed": "fail"}
