"""Provider-side handle and backend selection (spec/node-worker.md §Requests, §Executor)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infernet_ref.errors import LocalProtocolError
from infernet_ref.node.sandbox import (
    InProcessExecutor,
    ProcessWorkerHandle,
    SandboxUnavailable,
    WorkerCrashed,
    WorkerError,
    WorkerSpec,
    select_executor,
)
from infernet_ref.node.sandbox import bubblewrap as bwrap_backend
from infernet_ref.node.sandbox import docker as docker_backend
from infernet_ref.node.sandbox.channel import handle_frame
from infernet_ref.node.sandbox.framing import encode_frame

PROBE = "infernet_ref.node.sandbox.probe"
SCHEMA = Path(__file__).resolve().parents[3] / "spec" / "schemas" / "node-worker.schema.json"
ERROR_CODES = set(
    json.loads(SCHEMA.read_text())["$defs"]["WorkerError"]["properties"]["code"]["enum"]
)


async def spawn(*argv: str) -> ProcessWorkerHandle:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    return ProcessWorkerHandle(proc, backend="test", max_payload=1 << 20)


async def test_typed_errors_keep_the_session_usable() -> None:
    w = await spawn(sys.executable, "-m", PROBE)
    try:
        with pytest.raises(WorkerError) as info:
            await w.request({"op": "no.such.op"})
        assert info.value.error_code == "unknown_op"
        with pytest.raises(WorkerError) as info:
            await w.request({"op": "probe.alloc", "mib": "lots"})
        assert info.value.error_code == "bad_request"
        reply, data = await w.request({"op": "probe.echo"}, b"\x00" * 70_000)
        assert reply["size"] == 70_000
        assert data == b"\x00" * 70_000
        assert w.alive
    finally:
        await w.close()
    assert not w.alive


async def test_oversized_request_is_a_local_error() -> None:
    w = await spawn(sys.executable, "-m", PROBE)
    try:
        with pytest.raises(LocalProtocolError):
            await w.request({"op": "probe.echo"}, b"x" * ((1 << 20) + 1))
        with pytest.raises(LocalProtocolError):
            await w.request({"no_op": 1})
        assert (await w.request({"op": "ping"}))[0]["ok"]
    finally:
        await w.close()


async def test_worker_refuses_oversized_payload_then_closes() -> None:
    w = await spawn(sys.executable, "-m", PROBE, "--max-payload", "1000")
    try:
        with pytest.raises(WorkerError) as info:
            await w.request({"op": "probe.echo"}, b"x" * 1001)
        assert info.value.error_code == "framing"
        assert not w.alive
    finally:
        await w.close()


async def test_garbage_from_the_worker_is_a_crash() -> None:
    script = "import sys; sys.stdin.buffer.read(1); sys.stdout.buffer.write(b'\\xff' * 64)"
    w = await spawn(sys.executable, "-c", script)
    with pytest.raises(WorkerCrashed, match="FramingError"):
        await w.request({"op": "ping"}, timeout=30)
    assert not w.alive
    await w.close()


async def test_death_mid_request_is_a_crash_with_stderr() -> None:
    script = (
        "import os, sys; sys.stdin.buffer.read(1); print('dying', file=sys.stderr); os._exit(3)"
    )
    w = await spawn(sys.executable, "-c", script)
    with pytest.raises(WorkerCrashed) as info:
        await w.request({"op": "ping"}, timeout=30)
    assert info.value.exit_code == 3
    assert "dying" in info.value.stderr
    assert info.value.code == 5004
    await w.close()


async def test_silent_worker_times_out_and_is_killed() -> None:
    w = await spawn(sys.executable, "-c", "import time; time.sleep(60)")
    with pytest.raises(WorkerCrashed, match="TimeoutError"):
        await w.request({"op": "ping"}, timeout=0.5)
    assert not w.alive
    await w.close()


def test_handle_frame_turns_exceptions_into_typed_replies() -> None:
    def boom(op: str, header: dict[str, object], payload: bytes) -> tuple[dict[str, object], bytes]:
        raise ZeroDivisionError("bug")

    reply, _ = handle_frame(boom, {"op": "ping", "id": 7}, b"")
    assert reply == {
        "ok": False,
        "id": 7,
        "error": {"code": "internal", "message": "ZeroDivisionError: bug"},
    }
    reply, _ = handle_frame(boom, {"id": True}, b"")
    assert reply["error"]["code"] == "bad_request"
    assert "id" not in reply
    # schema-invalid requests never reach the dispatcher (spec/schemas/node-worker.schema.json)
    reply, _ = handle_frame(boom, {"op": "stage.forward", "id": 1, "session": "has space"}, b"")
    assert reply["error"]["code"] == "bad_request"
    reply, _ = handle_frame(boom, {"op": "ping", "id": 1, "extra": 1}, b"")
    assert reply["error"]["code"] == "bad_request"
    reply, _ = handle_frame(boom, {"op": "rm -rf", "id": 1}, b"")
    assert reply["error"]["code"] == "unknown_op"


def test_in_process_needs_explicit_permission() -> None:
    with pytest.raises(SandboxUnavailable):
        InProcessExecutor()
    with pytest.raises(SandboxUnavailable):
        select_executor({"sandbox": {"backend": "in-process"}})
    with pytest.raises(SandboxUnavailable):
        select_executor({"sandbox": {"backend": "in-process", "allow_in_process": "yes"}})
    ex = select_executor({"sandbox": {"backend": "in-process", "allow_in_process": True}})
    assert ex.name == "in-process"
    with pytest.raises(LocalProtocolError):
        select_executor({"sandbox": {"backend": "chroot"}})


def test_auto_prefers_docker_then_bubblewrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker_backend, "daemon_reachable", lambda timeout=10.0: False)
    monkeypatch.setattr(bwrap_backend, "available", lambda: False)
    with pytest.raises(SandboxUnavailable, match="allow_in_process"):
        select_executor({})
    assert select_executor({"allow_in_process": True}).name == "in-process"
    if bwrap_backend.bwrap_path() is not None:
        monkeypatch.setattr(bwrap_backend, "available", lambda: True)
        assert select_executor({"sandbox": {"allow_in_process": True}}).name == "bubblewrap"


@pytest.mark.docker
def test_auto_picks_docker_when_a_daemon_answers() -> None:
    if not docker_backend.daemon_reachable():
        pytest.skip("docker: no Docker daemon reachable (run scripts/setup.d/50-docker.sh)")
    assert select_executor(None).name == "docker"


def test_worker_spec_rejects_nonsense() -> None:
    with pytest.raises(LocalProtocolError):
        WorkerSpec(module="os")
    with pytest.raises(LocalProtocolError):
        WorkerSpec(layer_start=4, layer_end=2)
    with pytest.raises(LocalProtocolError):
        WorkerSpec(env=(("PATH", "/evil"),))
    with pytest.raises(LocalProtocolError):
        WorkerSpec(memory_limit_bytes=1024)


header_values = st.none() | st.booleans() | st.integers(-5, 1 << 40) | st.text(max_size=12)
OPS = ["ping", "stage.open", "stage.forward", "stage.close", "generate", "probe.read", "bogus"]


@settings(max_examples=150)
@given(
    st.sampled_from(OPS),
    st.dictionaries(
        st.sampled_from(["id", "session", "prompt_ids", "max_new_tokens", "seed", "path", "x"]),
        header_values | st.lists(st.integers(-3, 300), max_size=4),
        max_size=5,
    ),
    st.binary(max_size=64),
)
def test_fuzz_requests_always_get_typed_replies(
    op: str, fields: dict[str, object], payload: bytes
) -> None:
    """Any header to the worker (no model loaded) or the probe: a well-formed reply, never a raise."""
    from infernet_ref.node.sandbox.probe import build_dispatch as probe_dispatch
    from infernet_ref.node.worker import StageWorker, parse_args

    worker = StageWorker(parse_args([]))  # no --model-dir: every model op is model_unavailable
    for dispatch in (worker.dispatch, probe_dispatch([])):
        header = {**fields, "op": op}
        if op == "probe.read":
            header["path"] = "/nonexistent/infernet-fuzz"
        reply, out = handle_frame(dispatch, header, payload)
        assert isinstance(reply["ok"], bool)
        if not reply["ok"]:
            assert reply["error"]["code"] in ERROR_CODES
            assert out == b""
        encode_frame(reply, out)  # every reply is itself a valid frame
