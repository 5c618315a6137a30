"""A provider's stage workers (spec/node-worker.md §Executor).

Theory of operation. One worker per (model, layer range, tp, dtype) is started through the
sandbox executor on first use, checked with ``ping`` and shared by every session of those layers;
a lock per key keeps two jobs from starting the same worker twice. Every step goes through the
worker's :class:`~infernet_ref.node.batching.Batcher`, so the decode steps of concurrent
sessions share forwards. Worker errors become job-protocol errors with the code the peer is
answered with.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from infernet_ref.node.batching import Batcher
from infernet_ref.node.errors import ErrorCode, JobProtocolError
from infernet_ref.node.framemeta import frame_tokens
from infernet_ref.node.log import JsonLog

if TYPE_CHECKING:
    from infernet_ref.node.provider import ServedModel, Session


class WorkerPool:
    """Worker start-up, calls and step batching of the :class:`Provider` (a mixin)."""

    executor: Any
    log: JsonLog
    sandbox: dict[str, Any]
    device: str
    max_batch: int
    steps_served: int
    workers: dict[tuple[Any, ...], Any]
    _batchers: dict[tuple[Any, ...], Batcher]
    _worker_locks: dict[tuple[Any, ...], asyncio.Lock]

    async def _worker(self, served: ServedModel, shard: dict[str, Any]) -> Any:
        from infernet_ref.node.sandbox import WorkerSpec  # noqa: PLC0415

        key = (served.cid, shard["layer_start"], shard["layer_end"], shard["tp"], served.dtype)
        lock = self._worker_locks.setdefault(key, asyncio.Lock())
        async with lock:
            handle = self.workers.get(key)
            if handle is not None and handle.alive:
                return handle
            spec = WorkerSpec(
                model_dir=served.path,
                layer_start=shard["layer_start"],
                layer_end=shard["layer_end"],
                tp_size=shard["tp"],
                dtype=served.dtype,
                memory_limit_bytes=int(self.sandbox.get("memory_limit_bytes", 4 << 30)),
                cpus=float(self.sandbox.get("cpus", 1)),
                pids_limit=int(self.sandbox.get("pids_limit", 256)),
                device=self.device,
            )
            self.log.info(
                "provider.worker_start",
                model=served.cid,
                layers=[shard["layer_start"], shard["layer_end"]],
                tp=shard["tp"],
            )
            handle = await self.executor.start(spec)
            info, _ = await handle.request({"op": "ping"})
            if info.get("model_error"):
                await handle.close()
                raise JobProtocolError(
                    f"worker could not load the model: {info['model_error']}", ErrorCode.SANDBOX
                )
            self.workers[key] = handle
            return handle

    async def _worker_call(
        self, handle: Any, req: dict[str, Any], payload: bytes = b""
    ) -> dict[str, Any]:
        from infernet_ref.node.sandbox import WorkerCrashed, WorkerError  # noqa: PLC0415

        try:
            header, out = await handle.request(req, payload)
        except WorkerError as exc:
            code = {
                "unknown_session": ErrorCode.UNKNOWN_SESSION,
                "duplicate": ErrorCode.DUPLICATE,
                "no_capacity": ErrorCode.NO_CAPACITY,
                "too_long": ErrorCode.NO_CAPACITY,
                "bad_frame": ErrorCode.BAD_REQUEST,
                "bad_request": ErrorCode.BAD_REQUEST,
            }.get(exc.error_code, ErrorCode.SANDBOX)
            raise JobProtocolError(f"stage refused: {exc.detail}", code) from exc
        except WorkerCrashed as exc:
            raise JobProtocolError(f"stage worker crashed: {exc}", ErrorCode.SANDBOX) from exc
        result: dict[str, Any] = dict(header)
        result["_payload"] = out
        return result

    async def _compute(
        self,
        s: Session,
        payload: bytes,
        *,
        header: dict[str, Any] | None = None,
        sample: dict[str, Any] | None = None,
    ) -> tuple[bytes, float, int | None]:
        """Run one step of ``s`` on its worker; the session advances by the frame's tokens.
        Returns the output frame, the wall time of the worker call and the sampled token.

        With ``sample`` (the worker's sampling fields incl. ``sample_index``) the last stage's
        worker samples and only the token comes back (spec/node-worker.md)."""
        handle = self.workers.get(s.worker_key)
        if handle is None or not handle.alive:
            raise JobProtocolError("the stage worker is gone", ErrorCode.SANDBOX)
        n = frame_tokens(payload, header=header)
        fields: dict[str, Any] | None = None
        if sample is not None and s.route is not None:
            fields = {**sample, "sample_index": s.position + n - s.route.prompt_tokens}
        start = time.perf_counter()
        reply, out = await self._batcher(s.worker_key).step(s.id, payload, n, fields)
        seconds = time.perf_counter() - start  # the worker call: sandbox channel included
        s.step += 1
        s.position += n
        self.steps_served += 1
        token = reply.get("token")
        if sample is not None and not isinstance(token, int):
            raise JobProtocolError("the stage worker did not sample", ErrorCode.SANDBOX)
        return out, seconds, token

    def _batcher(self, key: tuple[Any, ...]) -> Batcher:
        """The step queue of the worker for ``key``: steps of concurrent sessions share forwards
        (spec/node-worker.md stage.forward_batch); TP workers (key[3] > 1) take one at a time."""
        batcher = self._batchers.get(key)
        if batcher is None:

            async def call(req: dict[str, Any], payload: bytes) -> tuple[dict[str, Any], bytes]:
                handle = self.workers.get(key)
                if handle is None or not handle.alive:
                    raise JobProtocolError("the stage worker is gone", ErrorCode.SANDBOX)
                reply = await self._worker_call(handle, req, payload)
                return reply, reply.pop("_payload")

            batcher = Batcher(call, max_batch=1 if key[3] > 1 else self.max_batch)
            self._batchers[key] = batcher
        return batcher
