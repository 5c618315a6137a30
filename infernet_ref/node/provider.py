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
from infernet_ref.node.jobstate import JobState
from infernet_ref.node.log import JsonLog
from infernet_ref.node.messages import Message
from infernet_ref.node.payloads import open_json
from infernet_ref.node.routing import Ring, Route, Router
from infernet_ref.node.store import Store
from infernet_ref.node.transport import JobPeer

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


class Provider:
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

    def _session(self, peer: JobPeer, sid: str) -> Session:
        s = self.sessions.get(sid)
        if s is None or s.peer is not peer:
            raise JobProtocolError(
                f"no session {sid} on this connection", ErrorCode.UNKNOWN_SESSION
            )
        return s

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
        header = _frame_meta(payload)  # parsed once: session/position check and token count
        check_frame_header(payload, s.id, s.position, header=header)
        if s.route is not None:
            assert self.router is not None
            if not s.failed:
                await self.router.forward(s, payload, s.position, body.get("compute_ms", 0.0))
            return
        out, seconds, _ = await self._compute(s, payload, header=header)
        reply = {"session": s.id, "step": body["step"], "compute_ms": round(seconds * 1000, 3)}
        await peer.send("stage.output", reply, re=msg.id, payload=out)

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

    async def _inputs(self, peer: JobPeer, msg: Message, _: bytes | None) -> None:
        """Stage 0 of a routed session starts (spec/job.md §Direct routing rule 1, §Replay)."""
        from infernet_ref.specs import validate_data  # noqa: PLC0415

        body = msg.body_dict
        s = self._session(peer, body["session"])
        r = s.route
        if r is None or not r.first or self.router is None:
            raise JobProtocolError(
                f"session {s.id} is not a routed stage 0", ErrorCode.INVALID_STATE
            )
        if s.ring is not None or s.step:
            raise JobProtocolError(f"session {s.id} has started already", ErrorCode.INVALID_STATE)
        if "replay" in body:
            ring = self._replay_ring(peer, body["replay"], r)
        else:
            plain = open_json(body["inputs"], self.router.sk, sender=r.client)
            try:
                validate_data(plain, "job-messages", pointer="/$defs/InputsPlaintext")
            except InfernetError as exc:
                raise JobProtocolError(f"inputs: {exc}") from exc
            ring = Ring(
                list(plain["prompt_ids"]),
                bytes.fromhex(plain.get("salt", "")),
                list(plain.get("generated_ids", [])),
            )
        self._check_inputs(s, r, ring)
        s.ring = ring
        await peer.send("sys.ok", {"session": s.id}, re=msg.id)
        s.task = self.router.start(s)

    def _replay_ring(self, peer: JobPeer, replay: dict[str, Any], r: Route) -> Ring:
        old = self.sessions.get(replay["session"])
        if old is None or old.opener != peer.peer_pubkey or old.ring is None:
            raise JobProtocolError(
                f"no stage-0 session {replay['session']} of yours to replay",
                ErrorCode.INVALID_STATE,
            )
        if old.route is None or old.route.client != r.client:  # the history stays the client's
            raise JobProtocolError(
                f"session {old.id} holds another client's history", ErrorCode.INVALID_STATE
            )
        n = replay["generated"]
        if n > len(old.ring.generated):
            raise JobProtocolError(
                f"session {old.id} produced {len(old.ring.generated)} tokens, not {n}",
                ErrorCode.INVALID_STATE,
            )
        return Ring(list(old.ring.prompt), old.ring.salt, old.ring.generated[:n])

    def _check_inputs(self, s: Session, r: Route, ring: Ring) -> None:
        vocab = self._vocab(s)
        if len(ring.prompt) != r.prompt_tokens:
            raise JobProtocolError(
                f"inputs hold {len(ring.prompt)} prompt tokens, the route says {r.prompt_tokens}"
            )
        if len(ring.generated) >= r.max_new_tokens:
            raise JobProtocolError("inputs already hold every token to generate")
        if len(ring.prompt) + r.max_new_tokens > s.max_tokens:
            raise JobProtocolError(
                f"prompt and new tokens exceed the session's {s.max_tokens}", ErrorCode.NO_CAPACITY
            )
        if vocab and any(t >= vocab for t in ring.prompt + ring.generated):
            raise JobProtocolError(f"token ids must be below the vocabulary size {vocab}")

    def _vocab(self, s: Session) -> int:
        served = self.models.get(s.worker_key[0])
        if served is None:
            return 0
        import json  # noqa: PLC0415

        try:
            cfg = json.loads((served.path / "config.json").read_text())
        except (OSError, ValueError):
            return 0
        return int(cfg.get("vocab_size", 0))

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


def _frame_meta(payload: bytes) -> dict[str, Any]:
    """The ``__metadata__`` and tensor entries of a safetensors header, without torch."""
    import json  # noqa: PLC0415

    if len(payload) < 8:
        raise JobProtocolError("activation frame shorter than its header length")
    n = int.from_bytes(payload[:8], "little")
    if n > min(len(payload) - 8, 1 << 20):
        raise JobProtocolError("activation frame header length out of range")
    try:
        header = json.loads(payload[8 : 8 + n])
    except (ValueError, UnicodeDecodeError) as exc:
        raise JobProtocolError(f"activation frame header is not JSON: {exc}") from exc
    if not isinstance(header, dict) or not isinstance(header.get("__metadata__"), dict):
        raise JobProtocolError("activation frame has no metadata")
    return header


def check_frame_header(
    payload: bytes, session: str, position: int, *, header: dict[str, Any] | None = None
) -> None:
    """The frame must belong to ``session`` at ``position`` (spec/job.md §Pipeline sessions).

    ``header`` is the already parsed :func:`_frame_meta` of ``payload``, when the caller has it.
    """
    meta = (header if header is not None else _frame_meta(payload))["__metadata__"]
    if meta.get("session") != session or meta.get("position") != str(position):
        raise JobProtocolError(
            f"activation frame is for session {meta.get('session')!r} at {meta.get('position')!r}, not {session!r} at {position}"
        )


def frame_tokens(payload: bytes, *, header: dict[str, Any] | None = None) -> int:
    """Number of tokens an input frame carries (its tensor's first dimension)."""
    if header is None:
        header = _frame_meta(payload)
    for name, entry in header.items():
        if name != "__metadata__" and isinstance(entry, dict) and entry.get("shape"):
            return int(entry["shape"][0])
    raise JobProtocolError("activation frame holds no tensor")
