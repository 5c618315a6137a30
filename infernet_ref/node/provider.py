"""The provider role: accepts shards, runs them in sandboxed workers, serves stage sessions.

Theory of operation (spec/job.md §Dispatch and pipeline sessions). For each authenticated peer
the provider answers ``job.offer`` (does it serve the model's layers, has it room), loads the
shard on ``job.assign`` by starting (or reusing) a worker through the sandbox executor for
(model, layer range, tp, dtype), and then serves ``stage.open`` / ``stage.forward`` /
``stage.close``. Sessions are owned by the connection that opened them; their ids are unique on
the provider because workers are shared between jobs. A relayed session takes ``stage.forward``
from its opener and answers ``stage.output``; a directly routed one (``route`` in ``stage.open``)
takes it from the connection authenticated as ``route.prev`` and hands the step to the
:class:`~infernet_ref.node.routing.Router`, which sends the output on to the next stage; stage 0
of a routed session starts on ``stage.inputs``. A forward must continue its session (``step``
and ``position``), and the activation frame's own session must be the session's id (checked by
the worker too). When a connection closes, the sessions it opened are closed; every job the
provider took is recorded in the store and ends in a terminal state.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infernet_ref.errors import InfernetError
from infernet_ref.node.batching import MAX_BATCH, Batcher
from infernet_ref.node.errors import ErrorCode, JobProtocolError, StoreError
from infernet_ref.node.framemeta import check_frame_header, frame_meta
from infernet_ref.node.jobstate import JobState
from infernet_ref.node.log import JsonLog
from infernet_ref.node.messages import Message
from infernet_ref.node.routing import Ring, Route, Router
from infernet_ref.node.stageinputs import StageInputs
from infernet_ref.node.store import Store
from infernet_ref.node.transport import JobPeer
from infernet_ref.node.workerpool import WorkerPool

ROLE = "provider"


@dataclass(frozen=True, slots=True)
class ServedModel:
    cid: str
    path: Path
    num_layers: int
    layer_start: int = 0
    layer_end: int | None = None
    dtype: str = "float32"

    @property
    def end(self) -> int:
        return self.num_layers if self.layer_end is None else self.layer_end


@dataclass
class Session:
    id: str
    job: str
    peer: JobPeer
    worker_key: tuple[Any, ...]
    max_tokens: int
    opener: str = ""
    route: Route | None = None
    ring: Ring | None = None  # stage 0 of a routed session, once its inputs came
    failed: bool = False
    pending_token: dict[str, Any] | None = None
    task: asyncio.Task[None] | None = None
    step: int = 0
    position: int = 0


@dataclass
class ProviderJob:
    job: str
    owner: str
    model: str
    shard: dict[str, Any]
    assigned: bool = False
    sessions: set[str] = field(default_factory=set)
    peer: JobPeer | None = None  # the connection that offered it: its close ends the job


class Provider(StageInputs, WorkerPool):
    """Provider role state and message handlers (one per node)."""

    def __init__(
        self,
        *,
        models: list[ServedModel],
        executor: Any,
        store: Store,
        log: JsonLog,
        sandbox: dict[str, Any],
        max_sessions: int = 16,
        kv_block_size: int = 16,
        secret_key: bytes | None = None,
        device: str = "cpu",
        max_batch: int = MAX_BATCH,
    ) -> None:
        self.models = {m.cid: m for m in models}
        self.sk = secret_key
        self.device = device  # where workers put their stage (cpu, cuda, cuda:N)
        self.max_batch = max_batch
        self.router: Router | None = None
        if secret_key is not None:
            from infernet_ref.nostr import public_key  # noqa: PLC0415

            self.router = Router(secret_key, public_key(secret_key).hex(), log, self._compute)
        self.executor, self.store, self.log = executor, store, log
        self.sandbox = sandbox
        self.max_sessions, self.kv_block_size = max_sessions, kv_block_size
        self.workers: dict[tuple[Any, ...], Any] = {}
        self._batchers: dict[tuple[Any, ...], Batcher] = {}
        self._worker_locks: dict[tuple[Any, ...], asyncio.Lock] = {}
        self.sessions: dict[str, Session] = {}
        self.jobs: dict[str, ProviderJob] = {}
        self.steps_served = 0

    # ---- dispatch ---------------------------------------------------------------------------
    HANDLED = frozenset(
        {
            "job.offer",
            "job.assign",
            "stage.open",
            "stage.forward",
            "stage.inputs",
            "stage.close",
            "job.cancel",
        }
    )

    async def handle(self, peer: JobPeer, msg: Message, payload: bytes | None) -> None:
        """Answer one message; every failure goes back as sys.error / job.reject."""
        handler = {
            "job.offer": self._offer,
            "job.assign": self._assign,
            "stage.open": self._open,
            "stage.forward": self._forward,
            "stage.inputs": self._inputs,
            "stage.close": self._close,
            "job.cancel": self._cancel,
        }[msg.type]
        try:
            await handler(peer, msg, payload)
        except JobProtocolError as exc:
            await peer.send_error(
                exc.error_code,
                str(exc),
                re=msg.id,
                job=msg.body_dict.get("job"),
                session=msg.body_dict.get("session"),
            )
        except StoreError as exc:
            await peer.send_error(ErrorCode.STORAGE, str(exc), re=msg.id)

    def load(self) -> dict[str, Any]:
        return {"active_sessions": len(self.sessions), "capacity": self.max_sessions}

    def _served(self, model: str, shard: dict[str, Any]) -> ServedModel:
        served = self.models.get(model)
        if served is None:
            raise JobProtocolError(f"model {model} is not served here", ErrorCode.UNKNOWN_MODEL)
        if shard["num_layers"] != served.num_layers:
            raise JobProtocolError(
                f"model has {served.num_layers} layers, shard says {shard['num_layers']}"
            )
        if (
            shard["layer_start"] < served.layer_start
            or shard["layer_end"] > served.end
            or shard["layer_end"] <= shard["layer_start"]
        ):
            raise JobProtocolError(
                f"layers [{shard['layer_start']}, {shard['layer_end']}) outside served [{served.layer_start}, {served.end})",
                ErrorCode.NO_CAPACITY,
            )
        return served

    def _job(self, peer: JobPeer, job: str) -> ProviderJob:
        pj = self.jobs.get(job)
        if pj is None:
            raise JobProtocolError(f"unknown job {job}", ErrorCode.UNKNOWN_JOB)
        if pj.owner != peer.peer_pubkey:
            raise JobProtocolError(f"job {job} belongs to another peer", ErrorCode.FORBIDDEN)
        return pj

    async def _offer(self, peer: JobPeer, msg: Message, _: bytes | None) -> None:
        body = msg.body_dict
        job = body["job"]
        try:
            self._served(body["model"], body["shard"])
            if len(self.sessions) >= self.max_sessions:
                raise JobProtocolError("all session slots are busy", ErrorCode.NO_CAPACITY)
            known = self.jobs.get(job)
            if known is not None and known.owner != peer.peer_pubkey:
                raise JobProtocolError(f"job {job} already offered here", ErrorCode.DUPLICATE)
        except JobProtocolError as exc:
            await peer.send(
                "job.reject",
                {"job": job, "code": int(exc.error_code), "reason": str(exc)},
                re=msg.id,
            )
            return
        assert peer.peer_pubkey is not None
        if known is not None:  # the same driver again (a replay keeps an older connection open):
            known.peer, known.shard = peer, body["shard"]  # the job now ends with this connection
        else:
            self.jobs[job] = ProviderJob(
                job, peer.peer_pubkey, body["model"], body["shard"], peer=peer
            )
        if self.store.find_job(job, ROLE) is None:
            self.store.create_job(
                job,
                role=ROLE,
                owner=peer.peer_pubkey,
                model=body["model"],
                params={"shard": body["shard"]},
                now=time.time(),
            )
        await peer.send(
            "job.accept",
            {"job": job, "free_kv_blocks": max(0, self.max_sessions - len(self.sessions))},
            re=msg.id,
        )

    async def _assign(self, peer: JobPeer, msg: Message, _: bytes | None) -> None:
        body = msg.body_dict
        pj = self._job(peer, body["job"])
        served = self._served(body["model"], body["shard"])
        pj.shard = body["shard"]
        try:
            await self._worker(served, body["shard"])
        except InfernetError as exc:
            self._finish(pj, JobState.FAILED, error=str(exc), code=ErrorCode.SANDBOX)
            raise JobProtocolError(
                f"could not start the stage worker: {exc}", ErrorCode.SANDBOX
            ) from exc
        pj.assigned = True
        with contextlib.suppress(StoreError):
            self.store.transition(pj.job, ROLE, JobState.RUNNING, now=time.time(), note="assigned")
        await peer.send("sys.ok", {"job": pj.job}, re=msg.id)

    async def _open(self, peer: JobPeer, msg: Message, _: bytes | None) -> None:
        body = msg.body_dict
        pj = self._job(peer, body["job"])
        if not pj.assigned:
            raise JobProtocolError(f"job {pj.job} has no assigned shard", ErrorCode.INVALID_STATE)
        sid = body["session"]
        if sid in self.sessions:
            raise JobProtocolError(f"session {sid} is in use", ErrorCode.DUPLICATE)
        if len(self.sessions) >= self.max_sessions:
            raise JobProtocolError("all session slots are busy", ErrorCode.NO_CAPACITY)
        shard = body["shard"]
        served = self._served(pj.model, shard)
        route = Route.from_wire(body["route"], shard) if "route" in body else None
        if route is not None and self.router is None:
            raise JobProtocolError("this provider does not serve routed sessions")
        handle = await self._worker(served, shard)
        key = (served.cid, shard["layer_start"], shard["layer_end"], shard["tp"], served.dtype)
        reply = await self._worker_call(
            handle, {"op": "stage.open", "session": sid, "max_tokens": body["max_tokens"]}
        )
        s = Session(sid, pj.job, peer, key, body["max_tokens"], peer.peer_pubkey or "", route)
        self.sessions[sid] = s
        if self.router is not None and route is not None:
            self.router.attach(s)
        pj.sessions.add(sid)
        await peer.send(
            "stage.ready",
            {"session": sid, "kv_blocks": int(reply.get("free_blocks", 0))},
            re=msg.id,
        )

    async def _forward(self, peer: JobPeer, msg: Message, payload: bytes | None) -> None:
        body = msg.body_dict
        s = self.sessions.get(body["session"])
        if s is None or (s.route is None and s.peer is not peer):
            raise JobProtocolError(
                f"no session {body['session']} on this connection", ErrorCode.UNKNOWN_SESSION
            )
        if s.route is not None and peer.peer_pubkey != s.route.prev:
            raise JobProtocolError(
                f"session {s.id} takes forwards from {s.route.prev[:16]} only",
                ErrorCode.UNKNOWN_SESSION,
            )
        if s.route is not None and s.route.first and (s.ring is None or s.ring.done):
            raise JobProtocolError(f"session {s.id} is not generating", ErrorCode.INVALID_STATE)
        if body["step"] != s.step or body["position"] != s.position:
            raise JobProtocolError(
                f"session {s.id} expects step {s.step} at position {s.position}, got {body['step']}/{body['position']}",
                ErrorCode.INVALID_STATE,
            )
        assert payload is not None  # the schema requires payload, the core pairs the frame
        header = frame_meta(payload)  # parsed once: session/position check and token count
        check_frame_header(payload, s.id, s.position, header=header)
        if s.route is not None:
            assert self.router is not None
            if not s.failed:
                await self.router.forward(s, payload, s.position, body.get("compute_ms", 0.0))
            return
        out, seconds, _ = await self._compute(s, payload, header=header)
        reply = {"session": s.id, "step": body["step"], "compute_ms": round(seconds * 1000, 3)}
        await peer.send("stage.output", reply, re=msg.id, payload=out)

    async def _close(self, peer: JobPeer, msg: Message, _: bytes | None) -> None:
        s = self._session(peer, msg.body_dict["session"])
        await self._drop_session(s)
        await peer.send("sys.ok", {"session": s.id}, re=msg.id)

    async def _drop_session(self, s: Session) -> None:
        self.sessions.pop(s.id, None)
        s.failed = True  # a routed loop stops after the step in flight (never cut a worker call)
        if self.router is not None:
            self.router.detach(s)
        pj = self.jobs.get(s.job)
        if pj is not None:
            pj.sessions.discard(s.id)
        handle = self.workers.get(s.worker_key)
        if handle is not None and handle.alive:
            with contextlib.suppress(InfernetError):
                await handle.request({"op": "stage.close", "session": s.id})

    async def _cancel(self, peer: JobPeer, msg: Message, _: bytes | None) -> None:
        pj = self._job(peer, msg.body_dict["job"])
        for sid in list(pj.sessions):
            await self._drop_session(self.sessions[sid])
        self._finish(pj, JobState.CANCELLED)
        await peer.send("sys.ok", {"job": pj.job}, re=msg.id)

    def _finish(
        self, pj: ProviderJob, state: JobState, *, error: str | None = None, code: int | None = None
    ) -> None:
        self.jobs.pop(pj.job, None)
        rec = self.store.find_job(pj.job, ROLE)
        if rec is not None and not rec.terminal:
            self.store.transition(
                pj.job, ROLE, state, now=time.time(), error=error, error_code=code
            )

    async def peer_closed(self, peer: JobPeer) -> None:
        """A driver went away: close its sessions; its jobs end completed (sessions ran) or failed."""
        for s in [s for s in self.sessions.values() if s.peer is peer]:
            await self._drop_session(s)
        for pj in [pj for pj in self.jobs.values() if pj.peer is peer and not pj.sessions]:
            self._finish(pj, JobState.COMPLETED if pj.assigned else JobState.CANCELLED)

    async def close(self) -> None:
        for s in list(self.sessions.values()):
            await self._drop_session(s)
        if self.router is not None:
            await self.router.close()
        for pj in list(self.jobs.values()):
            self._finish(pj, JobState.FAILED, error="node shutdown", code=ErrorCode.INTERNAL)
        for handle in self.workers.values():
            with contextlib.suppress(InfernetError, OSError):
                await handle.close()
        self.workers.clear()
