"""In-process backend (spec/node-worker.md §In-process): no confinement, tests and debugging only.

Theory of operation: the worker program's dispatcher runs inside the provider process (in a
thread, so a slow forward does not stall the event loop). Requests still go through the full
frame encoder and decoder, so size limits, canonical headers and typed error replies behave
exactly as with a real sandbox. Because nothing is confined, the executor refuses to exist unless
the configuration says ``allow_in_process: true`` explicitly (spec/node.md §Sandbox).
"""

from __future__ import annotations

import asyncio
import importlib
from typing import Any

from infernet_ref.errors import LocalProtocolError
from infernet_ref.node.sandbox.channel import Dispatch, handle_frame
from infernet_ref.node.sandbox.framing import FrameDecoder, encode_frame
from infernet_ref.node.sandbox.mounts import model_source
from infernet_ref.node.sandbox.spec import (
    SandboxUnavailable,
    WorkerCrashed,
    WorkerError,
    WorkerSpec,
)


class InProcessHandle:
    """A worker dispatcher living in this process."""

    def __init__(self, dispatch: Dispatch, max_payload: int) -> None:
        self._dispatch = dispatch
        self._max_payload = max_payload
        self._lock = asyncio.Lock()
        self._closed = False
        self._next_id = 1

    @property
    def alive(self) -> bool:
        return not self._closed

    async def request(
        self, msg: dict[str, Any], payload: bytes = b"", *, timeout: float | None = None
    ) -> tuple[dict[str, Any], bytes]:
        """Same contract as ProcessWorkerHandle.request."""
        if "op" not in msg:
            raise LocalProtocolError("a worker request needs an 'op'")
        async with self._lock:
            if self._closed:
                raise WorkerCrashed("in-process worker is closed")
            req_id = self._next_id
            self._next_id += 1
            decoder = FrameDecoder(max_payload=self._max_payload)
            decoder.receive_data(
                encode_frame({**msg, "id": req_id}, payload, max_payload=self._max_payload)
            )
            frame = decoder.next_frame()
            assert frame is not None
            reply, out = await asyncio.wait_for(
                asyncio.to_thread(handle_frame, self._dispatch, frame.header, frame.payload),
                timeout,
            )
        if reply.get("ok") is not True:
            err = reply.get("error") or {}
            raise WorkerError(str(err.get("code", "unknown")), str(err.get("message", "")))
        return reply, out

    async def close(self) -> None:
        self._closed = True


class InProcessExecutor:
    """Runs the worker program inside this process (CONTRACTS.md: InProcessExecutor)."""

    name = "in-process"

    def __init__(self, *, allow_in_process: bool = False) -> None:
        if allow_in_process is not True:
            raise SandboxUnavailable(
                "the in-process executor runs model code unconfined; it needs allow_in_process: true"
            )

    async def start(self, spec: WorkerSpec) -> InProcessHandle:
        module = importlib.import_module(spec.module)
        argv = spec.worker_argv(model_source(spec.model_dir))
        dispatch: Dispatch = await asyncio.to_thread(module.build_dispatch, argv)
        handle = InProcessHandle(dispatch, spec.max_payload)
        await handle.request({"op": "ping"}, timeout=spec.start_timeout)
        return handle
