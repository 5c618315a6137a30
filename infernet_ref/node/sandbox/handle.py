"""Provider side of the control channel: an asyncio handle on a sandboxed worker process.

Theory of operation (spec/node-worker.md §Requests): requests are strictly sequential — one
frame out, one reply frame in — guarded by a lock, each carrying an increasing integer ``id`` that
the reply must echo (a mismatch means the channel lost sync: the worker is killed). Stdout is
parsed with :class:`FrameDecoder` under the spec's size limits; stderr is drained continuously
into a bounded tail so a chatty or crashing worker can neither block on a full pipe nor exhaust
the provider's memory, and the tail is attached to :class:`WorkerCrashed` for the log. A reply
with ``ok: false`` raises :class:`WorkerError` carrying the worker's error code. ``close`` asks
the worker to shut down, waits briefly, then kills it, and finally runs the backend's cleanup
(container removal, cgroup removal) exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from infernet_ref.errors import LocalProtocolError
from infernet_ref.node.sandbox.framing import (
    DEFAULT_MAX_PAYLOAD,
    FrameDecoder,
    FramingError,
    encode_frame,
)
from infernet_ref.node.sandbox.spec import WorkerCrashed, WorkerError

STDERR_TAIL = 8192
READ_CHUNK = 1 << 16
Cleanup = Callable[[], Awaitable[None]]


class ProcessWorkerHandle:
    """A worker running as a child process, reached through its stdin/stdout."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        *,
        backend: str,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        cleanup: Cleanup | None = None,
    ) -> None:
        if proc.stdin is None or proc.stdout is None or proc.stderr is None:
            raise LocalProtocolError("worker process needs piped stdin, stdout and stderr")
        self.backend = backend
        self._proc = proc
        self._stdin = proc.stdin
        self._stdout = proc.stdout
        self._decoder = FrameDecoder(max_payload=max_payload)
        self._max_payload = max_payload
        self._lock = asyncio.Lock()
        self._next_id = 1
        self._stderr_tail = bytearray()
        self._stderr_task = asyncio.create_task(self._drain_stderr(proc.stderr))
        self._cleanup = cleanup
        self._closed = False
        #: Backend hook telling whether the kernel OOM-killed the worker (for error messages).
        self.oom_check: Callable[[], bool] | None = None

    @property
    def pid(self) -> int:
        """Host pid of the process the executor started (bwrap, docker client or python)."""
        return self._proc.pid

    @property
    def alive(self) -> bool:
        """True while the worker process runs and the channel is usable."""
        return not self._closed and self._proc.returncode is None

    @property
    def stderr_tail(self) -> str:
        """The last bytes the worker wrote to stderr (for logs and error reports)."""
        return self._stderr_tail.decode("utf-8", errors="replace")

    async def _drain_stderr(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(READ_CHUNK):
            self._stderr_tail += chunk
            del self._stderr_tail[:-STDERR_TAIL]

    async def request(
        self, msg: dict[str, Any], payload: bytes = b"", *, timeout: float | None = None
    ) -> tuple[dict[str, Any], bytes]:
        """Send one request and return ``(reply header, reply payload)`` (spec/node-worker.md).

        Raises WorkerError for a typed error reply, WorkerCrashed when the worker dies, times out
        or breaks the framing (the worker is then killed), LocalProtocolError for a bad ``msg``.
        """
        if "op" not in msg:
            raise LocalProtocolError("a worker request needs an 'op'")
        async with self._lock:
            if not self.alive:
                raise await self._crashed("worker is not running")
            req_id = self._next_id
            self._next_id += 1
            frame = encode_frame({**msg, "id": req_id}, payload, max_payload=self._max_payload)
            try:
                self._stdin.write(frame)
                await asyncio.wait_for(self._stdin.drain(), timeout)
                header, out = await asyncio.wait_for(self._read_frame(), timeout)
            except (TimeoutError, FramingError, ConnectionError, BrokenPipeError) as exc:
                await self._kill()
                why = f"control channel failed: {type(exc).__name__}: {exc}"
                raise await self._crashed(why) from exc
        if header.get("id") != req_id and header.get("ok") is not False:
            await self._kill()
            raise await self._crashed(f"reply id {header.get('id')!r} does not match {req_id}")
        if header.get("ok") is not True:
            err = header.get("error")
            code = str(err.get("code", "unknown")) if isinstance(err, dict) else "unknown"
            detail = str(err.get("message", "")) if isinstance(err, dict) else repr(header)
            if code == "framing":
                await self._kill()
            raise WorkerError(code, detail)
        return header, out

    async def _read_frame(self) -> tuple[dict[str, Any], bytes]:
        while True:
            frame = self._decoder.next_frame()
            if frame is not None:
                return frame.header, frame.payload
            chunk = await self._stdout.read(READ_CHUNK)
            if not chunk:
                raise ConnectionError("worker closed its stdout")
            self._decoder.receive_data(chunk)

    async def _crashed(self, why: str) -> WorkerCrashed:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._proc.wait(), 5)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._stderr_task), 1)
        code = self._proc.returncode
        if self.oom_check is not None and self.oom_check():
            why += "; killed by the memory limit"
        return WorkerCrashed(
            f"{self.backend} worker: {why} (exit status {code})",
            exit_code=code,
            stderr=self.stderr_tail,
        )

    async def _kill(self, grace: float = 0.5) -> None:
        # Give a dying process a moment to be reaped by asyncio's child watcher first:
        # Popen.kill() polls (and so reaps) the child itself, and the watcher would then
        # report the exit status as 255 instead of the real one (e.g. 137 for an OOM kill).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._proc.wait()), grace)
        if self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
            await self._proc.wait()

    async def close(self, *, grace: float = 5.0) -> None:
        """Stop the worker (shutdown request, then kill after ``grace`` seconds) and clean up."""
        if self._closed:
            return
        self._closed = True
        if self._proc.returncode is None:
            with contextlib.suppress(Exception):
                self._stdin.write(encode_frame({"op": "shutdown", "id": 0}))
                await asyncio.wait_for(self._stdin.drain(), 1)
                self._stdin.close()
            try:
                await asyncio.wait_for(self._proc.wait(), grace)
            except TimeoutError:
                await self._kill()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(self._stderr_task, 2)
        if not self._stderr_task.done():
            self._stderr_task.cancel()
        if self._cleanup is not None:
            cleanup, self._cleanup = self._cleanup, None
            await cleanup()


async def wait_ready(handle: ProcessWorkerHandle, timeout: float) -> dict[str, Any]:
    """Ping a freshly started worker; on failure close it and re-raise (spec/node-worker.md)."""
    try:
        reply, _ = await handle.request({"op": "ping"}, timeout=timeout)
    except BaseException:
        await handle.close(grace=1)
        raise
    return reply
