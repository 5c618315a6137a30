"""``infernet dht serve|put|get|find`` end to end on loopback (subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(120)

CID = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
CLI = [sys.executable, "-m", "infernet_ref"]


def test_serve_put_get_find() -> None:
    servers = []
    try:
        first = subprocess.Popen(
            [*CLI, "dht", "serve", "--port", "0", "--duration", "60"],
            stdout=subprocess.PIPE,
            text=True,
        )
        servers.append(first)
        line = first.stdout.readline() if first.stdout else ""
        assert line.startswith("listening on udp://127.0.0.1:")
        boot = line.split("udp://")[1].split()[0]
        for _ in range(3):
            p = subprocess.Popen(
                [*CLI, "dht", "serve", "--port", "0", "--duration", "60", "--bootstrap", boot],
                stdout=subprocess.PIPE,
                text=True,
            )
            servers.append(p)
            assert p.stdout is not None
            assert p.stdout.readline().startswith("listening")
        put = subprocess.run(
            [
                *CLI,
                "dht",
                "put",
                "--bootstrap",
                boot,
                "--content",
                CID,
                "--endpoint",
                "ws://127.0.0.1:9/content",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        stored = json.loads(put.stdout)
        assert stored["stored"] >= 3
        got = subprocess.run(
            [*CLI, "dht", "get", "--bootstrap", boot, "--content", CID],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        events = json.loads(got.stdout)
        assert [e["id"] for e in events] == [stored["event"]]
        found = subprocess.run(
            [*CLI, "dht", "find", "--bootstrap", boot, "00" * 32],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert len(json.loads(found.stdout)) >= 4
    finally:
        for p in servers:
            p.terminate()
            p.wait(timeout=10)
            if p.stdout:
                p.stdout.close()
