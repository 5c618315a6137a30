"""``infernet sandbox check``: prove the confinement on this host (spec/node-worker.md §Probe).

Theory of operation: start the probe worker in a backend and run the same hostile attempts the
test suite runs — read a freshly written host secret, connect to a listener on the host's
loopback, fork past the process limit, allocate past the memory limit — each next to a control
that must succeed (the model mount is readable, forking a few children works). Returns one
:class:`Check` per attempt; an operator runs it after installing a node.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from infernet_ref.node.sandbox.spec import Executor, WorkerCrashed, WorkerSpec

PROBE = "infernet_ref.node.sandbox.probe"
MEMORY_MIB = 256
PIDS = 24


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    passed: bool
    detail: str


async def run_checks(executor: Executor) -> list[Check]:
    """Run every confinement check against ``executor``."""
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "model"
        model.mkdir()
        (model / "weights.bin").write_bytes(b"weights")
        secret = Path(tmp) / "secret.txt"
        secret.write_text("host secret")
        for p in (Path(tmp), model, model / "weights.bin"):
            p.chmod(0o755)
        spec = WorkerSpec(
            module=PROBE,
            model_dir=model,
            memory_limit_bytes=MEMORY_MIB << 20,
            pids_limit=PIDS,
            cpus=0.5,
        )
        handle = await executor.start(spec)
        checks: list[Check] = []
        try:
            checks += await _files(handle, secret)
            checks += await _network(handle)
            checks += await _pids(handle)
            checks += await _memory(handle)
        finally:
            await handle.close()
    return checks


async def _files(handle: object, secret: Path) -> list[Check]:
    req = handle.request  # type: ignore[attr-defined]
    own, data = await req({"op": "probe.read", "path": "/model/weights.bin"})
    host, _ = await req({"op": "probe.read", "path": str(secret)})
    write, _ = await req({"op": "probe.write", "path": "/model/weights.bin"})
    return [
        Check("model mount readable (control)", own["readable"] and data == b"weights", ""),
        Check("host file outside mounts unreadable", not host["readable"], host.get("error", "")),
        Check("model mount read-only", not write["written"], write.get("error", "")),
    ]


async def _network(handle: object) -> list[Check]:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        reply, _ = await handle.request(  # type: ignore[attr-defined]
            {"op": "probe.connect", "host": "127.0.0.1", "port": port}
        )
    return [
        Check(
            "no connection to the host's loopback", not reply["connected"], reply.get("error", "")
        )
    ]


async def _pids(handle: object) -> list[Check]:
    req = handle.request  # type: ignore[attr-defined]
    few, _ = await req({"op": "probe.spawn", "count": 4}, timeout=60)
    bomb, _ = await req({"op": "probe.spawn", "count": 10 * PIDS}, timeout=60)
    return [
        Check("forking a few children works (control)", few["spawned"] == 4, ""),
        Check(
            f"fork bomb stops below {PIDS} processes",
            bomb["spawned"] < PIDS,
            f"spawned {bomb['spawned']}: {bomb['error']}",
        ),
    ]


async def _memory(handle: object) -> list[Check]:
    try:
        reply, _ = await handle.request(  # type: ignore[attr-defined]
            {"op": "probe.alloc", "mib": 4 * MEMORY_MIB}, timeout=120
        )
    except WorkerCrashed as exc:
        return [Check(f"allocation past {MEMORY_MIB} MiB is stopped", True, f"killed: {exc}")]
    ok = bool(reply["memory_error"]) and reply["allocated_mib"] < MEMORY_MIB
    return [
        Check(
            f"allocation past {MEMORY_MIB} MiB is stopped",
            ok,
            f"allocated {reply['allocated_mib']} MiB",
        )
    ]


def check_backend(name: str) -> tuple[str, list[Check] | str]:
    """Run the checks on one named backend; returns the checks or why it is unavailable."""
    from infernet_ref.node.sandbox.select import select_executor  # noqa: PLC0415
    from infernet_ref.node.sandbox.spec import SandboxError  # noqa: PLC0415

    try:
        executor = select_executor({"backend": name})
    except SandboxError as exc:
        return name, str(exc)
    with contextlib.suppress(KeyboardInterrupt):
        return name, asyncio.run(run_checks(executor))
    return name, "interrupted"
