"""The demo end to end (issue 8 item 8): real node processes on loopback, bounded in time.

Runs ``run_demo`` — bootstrap, five providers and an aggregator as separate ``infernet node
run`` processes in real sandboxes, the model published by CID and each provider fetching only its layers through the content layer, a
hybrid 2-stage pipeline (TP=2 in one stage) on two redundant replicas, one provider SIGKILLed
mid-generation — and checks the outcome against transformers (the oracle the demo itself also
uses), the recovery, the verification verdict and that no process outlives the demo.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
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
    # providers know the model only by CID and fetch just their layers' tensors
    for name, fetched in report["fetched"].items():
        assert 0 < fetched["tensor_bytes"] < report["model"]["bytes"] * 0.75, (name, fetched)
    assert report["cleanup"]["processes_left"] == 0
    assert report["cleanup"]["containers_left"] in (0, None)
    assert "result                   OK" in text


@pytest.mark.skipif(not (REPO_MODEL / "model.safetensors").exists(), reason="models/demo missing")
def test_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    """SIGINT to ``infernet demo`` once the swarm is up: exit 130 and no node process left."""
    if not _sandbox_available():
        pytest.skip("no sandbox backend (docker daemon or bubblewrap) on this host")
    workdir = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "infernet_ref", "demo", "--no-kill", "--workdir", str(workdir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 300
        for line in proc.stdout:
            if "swarm up" in line or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out
    assert "every process it started was stopped" in out
    left = [p for p in _cmdlines() if str(workdir) in p]
    assert left == [], left


def _cmdlines() -> list[str]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                raw = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            out.append(raw.replace(b"\0", b" ").decode(errors="replace"))
    return out
