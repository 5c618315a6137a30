"""The demo end to end (issue 8 item 8): real node processes on loopback, bounded in time.

Runs ``run_demo`` — bootstrap, five providers and an aggregator as separate ``infernet node
run`` processes in real sandboxes, the model published and fetched through the content layer, a
hybrid 2-stage pipeline (TP=2 in one stage) on two redundant replicas, one provider SIGKILLed
mid-generation — and checks the outcome against transformers (the oracle the demo itself also
uses), the recovery, the verification verdict and that no process outlives the demo.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from infernet_ref.node.demo import DemoOptions, format_report, run_demo
from infernet_ref.node.demo.scenario import REPO_MODEL
from infernet_ref.node.sandbox import bubblewrap, docker

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _sandbox_available() -> bool:
    return docker.daemon_reachable() or bubblewrap.available()


@pytest.mark.skipif(not (REPO_MODEL / "model.safetensors").exists(), reason="models/demo missing")
async def test_demo_runs_recovers_and_cleans_up(tmp_path: Path) -> None:
    if not _sandbox_available():
        pytest.skip("no sandbox backend (docker daemon or bubblewrap) on this host")
    opts = DemoOptions(max_new_tokens=12, kill_after_tokens=4, workdir=tmp_path / "demo")
    report = await asyncio.wait_for(run_demo(opts), timeout=840)
    text = format_report(report)
    assert report["ok"], text + "\n" + json.dumps(report.get("timeline"), indent=1)
    checks = report["checks"]
    assert all(checks.values()), checks
    plan = report["plan"]
    assert len(plan["replicas"]) == 2
    for replica in plan["replicas"]:
        tps = sorted(stage["shard"]["tp"] for stage in replica)
        assert tps == [1, 2], replica  # a 2-stage pipeline, tensor parallel inside one stage
    assert report["output"]["ids"] == report["expected"]["ids"]
    assert report["job"]["verification"]["verdict"] == "agree"
    assert report["job"]["reroutes"] >= 1
    reroutes = [ev for ev in report["recovery"] if ev["event"] == "driver.reroute"]
    assert reroutes
    assert all(ev["to"] != report["fault"]["killed"] for ev in reroutes)
    assert report["client_record"] == "completed"
    assert report["cleanup"]["processes_left"] == 0
    assert report["cleanup"]["containers_left"] in (0, None)
    assert "result                   OK" in text
