"""``infernet job submit|list|status`` and ``infernet node config`` as a user runs them."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from conftest import hf_greedy, node_config

from infernet_ref.node.daemon import Node

SANDBOX = {"backend": "in-process", "allow_in_process": True}


async def cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "infernet_ref",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_job_submit_follow_list_status(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    path, model, cid = tiny_model
    prov = Node(
        node_config(
            tmp_path,
            "p",
            roles=["provider"],
            sandbox=SANDBOX,
            models=[{"cid": cid, "path": str(path)}],
            resources={"devices": [{"kind": "cpu", "memory_bytes": 1 << 30}]},
        )
    )
    await prov.start()
    no_nodes.append(prov)
    agg = Node(
        node_config(
            tmp_path,
            "agg",
            roles=["aggregator"],
            peers=[prov.endpoint],
            models=[{"cid": cid, "path": str(path)}],
        )
    )
    await agg.start()
    no_nodes.append(agg)
    client_dir = str(tmp_path / "client")
    rc, out, err = await cli(
        "job",
        "submit",
        "--data-dir",
        client_dir,
        "--aggregator",
        agg.endpoint,
        "--model",
        cid,
        "--prompt-ids",
        "5,17,42",
        "--max-new-tokens",
        "6",
        "--json",
    )
    assert rc == 0, err
    res = json.loads(out)
    assert res["state"] == "completed"
    assert res["tokens"] == hf_greedy(model, [5, 17, 42], 6)
    assert res["hash_ok"] is True
    rc, out, err = await cli(
        "job",
        "submit",
        "--data-dir",
        client_dir,
        "--aggregator",
        agg.endpoint,
        "--model",
        cid,
        "--prompt-ids",
        "1 2",
        "--max-new-tokens",
        "3",
        "--follow",
    )
    assert rc == 0, err
    assert "accepted: single plan" in err
    assert "verification: single" in err
    rc, out, _ = await cli("job", "list", "--data-dir", client_dir, "--json")
    rows = json.loads(out)
    assert len(rows) == 2
    assert {r["state"] for r in rows} == {"completed"}
    assert res["job"] in {r["job"] for r in rows}
    rc, out, _ = await cli(
        "job", "status", "--data-dir", client_dir, "--aggregator", agg.endpoint, res["job"]
    )
    assert rc == 0
    assert json.loads(out)["state"] == "completed"
    rc, out, err = await cli(
        "job",
        "submit",
        "--data-dir",
        client_dir,
        "--aggregator",
        agg.endpoint,
        "--model",
        cid,
        "--prompt-ids",
        "1",
        "--max-new-tokens",
        "100000",
    )
    assert rc == 1  # params outside the schema are refused locally, nothing is sent
    assert "max_new_tokens" in err or "65536" in err


async def test_node_config_shows_defaults_and_rejects_bad_files(tmp_path: Path) -> None:
    rc, out, _ = await cli("node", "config", "--data-dir", str(tmp_path / "n"))
    assert rc == 0
    cfg = json.loads(out)
    assert cfg["roles"] == ["provider"]
    assert cfg["sandbox"]["allow_in_process"] is False
    bad = tmp_path / "bad.yaml"
    bad.write_text("roles: [miner]\n")
    rc, _, err = await cli("node", "config", "--config", str(bad))
    assert rc == 1
    assert "$.roles[0]" in err
