"""The job.* / node.* conformance cases pass against the reference node and catch broken ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import node_config
from infernet_conformance import Target, all_cases, load_cases
from infernet_conformance.runner import run_cases, select

from infernet_ref.node.daemon import Node

SANDBOX = {"backend": "in-process", "allow_in_process": True}


async def _nodes(tmp: Path, path: Path, cid: str, nodes: list[Node], **agg_raw: Any) -> Node:
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
    return agg


async def test_reference_node_passes_job_and_node_cases(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    path, _, cid = tiny_model
    agg = await _nodes(tmp_path, path, cid, no_nodes)
    load_cases()
    cases = select(all_cases(), ["job", "node"])
    assert len(cases) >= 18
    report = await run_cases(
        cases, Target.parse([f"job={agg.endpoint}?model={cid}&model_dir={path}"]), timeout=20
    )
    bad = [(r.id, r.verdict.value, r.message) for r in report.results if r.verdict.value != "pass"]
    assert not bad, bad


async def test_cases_fail_on_a_node_that_skips_signature_checks(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    path, _, cid = tiny_model
    agg = await _nodes(tmp_path, path, cid, no_nodes)
    agg.challenger.verify = lambda event, now, challenge=None: str(event["pubkey"])  # type: ignore[method-assign]
    load_cases()
    report = await run_cases(
        select(all_cases(), ["job.auth"]), Target.parse([f"job={agg.endpoint}"]), timeout=10
    )
    verdicts = {r.id: r.verdict.value for r in report.results}
    assert verdicts["job.auth.bad_signature"] == "fail"
    assert verdicts["job.auth.replay"] == "fail"
    assert verdicts["job.auth.ok"] == "pass"
