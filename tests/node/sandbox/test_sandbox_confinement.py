"""Each real sandbox holds against a hostile workload (issue 8 item 4; spec/node-worker.md).

The probe worker tries what a malicious model would: read host files, write outside its scratch
space, connect out, allocate and fork without bound. Every containment assertion has a control
(the model mount *is* readable, ``/tmp`` *is* writable, the same connect *succeeds* unconfined),
so a probe that simply fails at everything could not make these tests pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

from infernet_ref.node.sandbox import InProcessExecutor, WorkerCrashed
from infernet_ref.node.sandbox.spec import Executor, WorkerHandle, WorkerSpec

pytest_plugins = ["sandbox_fixtures"]  # executor / model_dir fixtures
PROBE = "infernet_ref.node.sandbox.probe"
HERE = os.path.abspath(__file__)


def probe_spec(model_dir: Path | None = None, **kw: object) -> WorkerSpec:
    """Small probe workers: 256 MiB, 32 processes, half a CPU unless overridden."""
    base: dict[str, object] = {
        "module": PROBE,
        "model_dir": model_dir,
        "memory_limit_bytes": 256 << 20,
        "pids_limit": 32,
        "cpus": 0.5,
        "start_timeout": 60.0,
    }
    base.update(kw)
    return WorkerSpec(**base)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def started(
    executor: Executor, model_dir: Path | None = None, **kw: object
) -> AsyncIterator[WorkerHandle]:
    handle = await executor.start(probe_spec(model_dir, **kw))
    try:
        yield handle
    finally:
        await handle.close()


async def test_reads_only_its_mounts(executor: Executor, model_dir: Path) -> None:
    async with started(executor, model_dir) as w:
        reply, data = await w.request({"op": "probe.read", "path": "/model/config.json"})
        assert reply["readable"]  # control: the model mount is visible
        assert data == b'{"model_type": "llama"}'
        secret = model_dir.parent / "secret.txt"
        for path in (
            str(secret),
            "/model/../secret.txt",
            "/etc/shadow",
            "/root/.bashrc",
            f"/proc/{os.getpid()}/environ",
            HERE,
        ):
            reply, data = await w.request({"op": "probe.read", "path": path})
            assert not reply["readable"], f"sandbox read host file {path}"
            assert data == b""


async def test_writes_only_scratch(executor: Executor, model_dir: Path) -> None:
    async with started(executor, model_dir) as w:
        reply, _ = await w.request({"op": "probe.write", "path": "/tmp/scratch.bin"})
        assert reply["written"]  # control: the private tmpfs is writable
        for path in ("/model/config.json", "/model/new.bin", "/usr/evil", "/evil"):
            reply, _ = await w.request({"op": "probe.write", "path": path})
            assert not reply["written"], f"sandbox wrote {path}"
    assert (model_dir / "config.json").read_text() == '{"model_type": "llama"}'


async def test_runs_unprivileged(executor: Executor) -> None:
    async with started(executor) as w:
        reply, _ = await w.request({"op": "probe.identity"})
    assert (reply["uid"], reply["euid"], reply["gid"]) == (65534, 65534, 65534)
    assert int(reply["cap_eff"], 16) == 0


@contextlib.contextmanager
def host_listener() -> socket.socket:  # type: ignore[misc]
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    try:
        yield srv
    finally:
        srv.close()


async def test_cannot_connect_out(executor: Executor) -> None:
    with host_listener() as srv:
        port = srv.getsockname()[1]
        async with started(executor) as w:
            for host in ("127.0.0.1", "10.0.0.1", "1.1.1.1"):
                reply, _ = await w.request({"op": "probe.connect", "host": host, "port": port})
                assert not reply["connected"], f"sandbox connected to {host}:{port}"


async def test_probe_connects_when_unconfined() -> None:
    """Control for test_cannot_connect_out: the same probe op succeeds without a sandbox."""
    with host_listener() as srv:
        port = srv.getsockname()[1]
        handle = await InProcessExecutor(allow_in_process=True).start(probe_spec())
        reply, _ = await handle.request({"op": "probe.connect", "host": "127.0.0.1", "port": port})
        await handle.close()
    assert reply["connected"]


async def test_memory_is_capped(executor: Executor) -> None:
    limit_mib = 256
    async with started(executor, memory_limit_bytes=limit_mib << 20) as w:
        reply, _ = await w.request({"op": "probe.alloc", "mib": 32})
        assert reply["allocated_mib"] == 32  # control: modest allocations work
        killed: WorkerCrashed | None = None
        try:
            reply, _ = await w.request({"op": "probe.alloc", "mib": 4 * limit_mib}, timeout=120)
        except WorkerCrashed as exc:  # the kernel killed it at the limit
            killed = exc
        if killed is not None:
            assert killed.exit_code not in (0, None)
            assert not w.alive
        else:  # an address-space rlimit turned the allocation into MemoryError
            assert reply["memory_error"]
            assert reply["allocated_mib"] < limit_mib
    # the host and the executor are unharmed: a new worker starts and answers
    async with started(executor) as again:
        reply, _ = await again.request({"op": "ping"})
        assert reply["ok"]


async def test_processes_are_capped(executor: Executor) -> None:
    pids = 24
    async with started(executor, pids_limit=pids) as w:
        reply, _ = await w.request({"op": "probe.spawn", "count": 4}, timeout=60)
        assert reply["spawned"] == 4  # control: forking itself works
        reply, _ = await w.request({"op": "probe.spawn", "count": 10 * pids}, timeout=60)
        assert reply["spawned"] < pids, reply
        assert reply["error"], "fork never failed"
        reply, _ = await w.request({"op": "ping"})  # still usable after the bomb
        assert reply["ok"]


async def test_close_leaves_nothing_running(executor: Executor) -> None:
    w = await executor.start(probe_spec())
    reply, _ = await w.request({"op": "probe.spawn", "count": 2})
    assert reply["spawned"] == 2
    pid = w.pid  # type: ignore[attr-defined]
    await w.close()
    assert not w.alive
    await asyncio.sleep(0.1)
    alive = await asyncio.to_thread(os.path.exists, f"/proc/{pid}")
    assert not alive, "worker process survived close()"
