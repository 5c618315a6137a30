"""The client role: submit a job to an aggregator and follow it (spec/job.md §Submission).

:func:`submit_job` connects and authenticates, sends ``job.submit`` with the prompt's length
only, and after ``job.accept`` seals the prompt (and a fresh salt for the result hash) to each
replica's stage-0 provider as ``job.inputs``. It collects ``job.progress`` — every replica's
tokens, sealed by that replica's stage-0 provider, kept per replica so that a ``job.replay``
(stage 0 moved to another provider) can be answered with the history re-sealed — and the final
``job.result``. It recomputes the output hash itself and reports whether it matches what the
aggregator claimed. The outcome is a plain :class:`JobOutcome` (JSON-ready),
so scripts, the CLI and the demo can use it directly. When a store is given, the job is
recorded on the client side too, ending in a terminal state.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import asdict, dataclass, field
from typing import Any

from infernet_ref.errors import InfernetError
from infernet_ref.node.errors import ErrorCode, RemoteJobError
from infernet_ref.node.jobstate import TRANSITIONS, JobState
from infernet_ref.node.messages import Message
from infernet_ref.node.payloads import open_plaintext, output_sha256, seal_json
from infernet_ref.node.store import Store
from infernet_ref.node.transport import JobPeer, PeerClosed, open_peer

ROLE = "client"


@dataclass
class JobOutcome:
    job: str
    state: str
    tokens: list[int] = field(default_factory=list)
    output_sha256: str | None = None
    hash_ok: bool | None = None
    plan: dict[str, Any] | None = None
    providers: list[str] = field(default_factory=list)
    verification: dict[str, Any] | None = None
    reroutes: int = 0
    error: dict[str, Any] | None = None
    seconds: float = 0.0
    aggregator: str | None = None
    salt: str = ""
    replays: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def new_job_id() -> str:
    return "j-" + os.urandom(12).hex()


async def submit_job(
    url: str,
    secret_key: bytes,
    *,
    model: str,
    prompt_ids: list[int],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int = 0,
    redundancy: int = 1,
    stream: bool = True,
    job: str | None = None,
    salt: bytes | None = None,
    allow_providers: Collection[str] | None = None,
    store: Store | None = None,
    timeout: float = 600.0,
    on_event: Callable[[str, dict[str, Any]], Awaitable[None] | None] | None = None,
) -> JobOutcome:
    """Run one job through the aggregator at ``url`` and return its outcome.

    ``salt`` (32 bytes, random when None) goes to the providers with the prompt and keys the
    result hash (spec/job.md §Result hash). ``allow_providers``, when given, are the only keys
    the prompt may be sealed to: a plan or a ``job.replay`` naming another stage-0 provider makes
    the client cancel the job instead (spec/job.md §Encryption)."""
    job = job or new_job_id()
    events: asyncio.Queue[Message] = asyncio.Queue()

    async def on_message(_: JobPeer, msg: Message, __: bytes | None) -> None:
        events.put_nowait(msg)

    started = time.monotonic()
    peer = await open_peer(url, secret_key, on_message=on_message)
    assert peer.peer_pubkey is not None
    outcome = JobOutcome(
        job, "submitted", aggregator=peer.peer_pubkey, salt=(salt or os.urandom(32)).hex()
    )
    sampling: dict[str, Any] = {"temperature": temperature, "seed": seed}
    if top_k:
        sampling["top_k"] = top_k
    if top_p < 1.0:
        sampling["top_p"] = top_p
    body: dict[str, Any] = {
        "job": job,
        "model": model,
        "prompt_tokens": len(prompt_ids),
        "params": {"max_new_tokens": max_new_tokens, "sampling": sampling},
        "redundancy": redundancy,
        "stream": stream,
    }
    if store is not None:
        store.create_job(
            job,
            role=ROLE,
            owner=peer.peer_pubkey,
            model=model,
            params=body["params"],
            now=time.time(),
        )
    try:
        async with asyncio.timeout(timeout):
            session = _Session(peer, secret_key, outcome, list(prompt_ids), on_event)
            session.allowed = None if allow_providers is None else frozenset(allow_providers)
            await session.run(body, events)
    except (RemoteJobError, PeerClosed, InfernetError, TimeoutError, OSError) as exc:
        if outcome.state not in {"completed", "failed", "cancelled", "rejected"}:
            code = exc.code if isinstance(exc, RemoteJobError) else 5000
            outcome.state = (
                "rejected" if isinstance(exc, RemoteJobError) and outcome.plan is None else "failed"
            )
            outcome.error = {"code": code, "message": str(exc)}
    finally:
        await peer.close()
        outcome.seconds = round(time.monotonic() - started, 3)
        if store is not None:
            _record(store, outcome)
    return outcome


async def _emit(on_event: Any, kind: str, data: dict[str, Any]) -> None:
    if on_event is not None:
        res = on_event(kind, data)
        if asyncio.iscoroutine(res):
            await res


class _Session:
    """One submitted job on the client side: inputs per replica, token histories, replays."""

    def __init__(
        self, peer: JobPeer, sk: bytes, outcome: JobOutcome, prompt: list[int], on_event: Any
    ) -> None:
        self.peer, self.sk, self.outcome, self.prompt = peer, sk, outcome, prompt
        self.on_event = on_event
        self.history: dict[int, list[int]] = {}
        self.senders: dict[int, set[str]] = {}  # replica -> stage-0 keys we sealed inputs to
        self.allowed: frozenset[str] | None = None  # the only keys we seal to, when set

    async def _send_inputs(self, replica: int, key: str, generated: list[int]) -> None:
        if self.allowed is not None and key not in self.allowed:
            job = self.outcome.job
            with contextlib.suppress(InfernetError):
                await self.peer.send("job.cancel", {"job": job, "reason": "provider not allowed"})
            self.outcome.state = "failed"
            self.outcome.error = {
                "code": int(ErrorCode.FORBIDDEN),
                "message": f"stage-0 provider {key} of replica {replica} is not in the client's "
                "allow-list; the prompt was not sealed to it and the job was cancelled",
            }
            raise InfernetError(self.outcome.error["message"])
        plain: dict[str, Any] = {"prompt_ids": self.prompt, "salt": self.outcome.salt}
        if generated:
            plain["generated_ids"] = generated
        self.senders.setdefault(replica, set()).add(key)
        body = {
            "job": self.outcome.job,
            "replica": replica,
            "inputs": seal_json(plain, self.sk, key),
        }
        await self.peer.send("job.inputs", body)

    async def run(self, body: dict[str, Any], events: asyncio.Queue[Message]) -> None:
        outcome = self.outcome
        reply, _ = await self.peer.request("job.submit", body, timeout=120)
        outcome.plan = reply.body_dict.get("plan")
        outcome.state = "accepted"
        await _emit(self.on_event, "accepted", {"job": outcome.job, "plan": outcome.plan})
        for i, replica in enumerate((outcome.plan or {}).get("replicas", [])):
            self.history[i] = []
            await self._send_inputs(i, replica[0]["provider"], [])
        while True:
            get = asyncio.create_task(events.get())
            closed = asyncio.create_task(self.peer.closed.wait())
            await asyncio.wait({get, closed}, return_when=asyncio.FIRST_COMPLETED)
            closed.cancel()
            if not get.done():
                get.cancel()
                raise PeerClosed(f"aggregator closed the connection: {self.peer.close_reason}")
            msg = get.result()
            b = msg.body_dict
            if msg.type == "job.progress":
                await self._progress(b)
            elif msg.type == "job.replay":
                await self._replay(b)
            elif msg.type == "job.result":
                _apply_result(outcome, b, self.sk, self.senders)
                await _emit(self.on_event, "result", outcome.to_dict())
                return

    async def _progress(self, b: dict[str, Any]) -> None:
        self.outcome.state = b["state"]
        if "tokens" not in b:
            await _emit(self.on_event, "progress", b)
            return
        replica = b.get("replica", 0)
        ids = _open_tokens(b["tokens"], self.sk, self.senders.get(replica, set()))
        hist = self.history.setdefault(replica, [])
        start = b["done"] - len(ids)
        if start != len(hist):
            return  # a duplicate (already have it) or a gap the aggregator must not cause
        hist.extend(ids)
        if replica == 0:
            self.outcome.tokens = list(hist)
            await _emit(self.on_event, "tokens", {"ids": ids, "done": b["done"]})

    async def _replay(self, b: dict[str, Any]) -> None:
        replica, n = b["replica"], b["generated"]
        hist = self.history.get(replica, [])
        if n > len(hist):
            raise InfernetError(
                f"asked to replay {n} tokens of replica {replica}, have {len(hist)}"
            )
        self.outcome.replays += 1
        await _emit(self.on_event, "replay", dict(b))
        await self._send_inputs(replica, b["provider"], hist[:n])


def _open_tokens(sealed: dict[str, Any], sk: bytes, senders: set[str]) -> list[int]:
    """Decrypt TokensPlaintext sealed by one of ``senders`` (spec/job.md §Encryption)."""
    if sealed.get("from") not in senders:
        raise InfernetError("tokens sealed by a key that is not this replica's stage 0")
    return list(open_plaintext(sealed, sk, sender=None, def_name="TokensPlaintext")["ids"])


def _apply_result(
    outcome: JobOutcome, b: dict[str, Any], sk: bytes, senders: dict[int, set[str]]
) -> None:
    outcome.state = b["state"]
    outcome.reroutes = b.get("reroutes", 0)
    outcome.verification = b.get("verification")
    outcome.providers = b.get("providers", [])
    outcome.plan = b.get("plan", outcome.plan)
    outcome.error = b.get("error")
    if "output" in b:
        every = set().union(*senders.values()) if senders else set()
        outcome.tokens = _open_tokens(b["output"], sk, every)
        outcome.output_sha256 = b.get("output_sha256")
        salt = bytes.fromhex(outcome.salt)
        outcome.hash_ok = output_sha256(outcome.tokens, salt=salt) == outcome.output_sha256


def _record(store: Store, outcome: JobOutcome) -> None:
    state = {
        "completed": JobState.COMPLETED,
        "cancelled": JobState.CANCELLED,
        "rejected": JobState.REJECTED,
    }.get(outcome.state, JobState.FAILED)
    fields: dict[str, Any] = {
        "output": outcome.tokens or None,
        "output_sha256": outcome.output_sha256,
        "verification": outcome.verification,
        "plan": outcome.plan,
        "reroutes": outcome.reroutes,
    }
    if outcome.error:
        fields.update(error=str(outcome.error.get("message")), error_code=outcome.error.get("code"))
    rec = store.find_job(outcome.job, ROLE)
    if rec is None or rec.terminal:
        return
    if state is JobState.COMPLETED:  # accepted (planned) and running happened on the way
        for step in (JobState.PLANNED, JobState.RUNNING):
            if step in TRANSITIONS[rec.state]:
                rec = store.transition(outcome.job, ROLE, step, now=time.time())
    store.transition(outcome.job, ROLE, state, now=time.time(), **fields)


async def job_request(
    url: str, secret_key: bytes, msg_type: str, job: str, *, timeout: float = 30.0
) -> dict[str, Any]:
    """``job.status`` or ``job.cancel`` against an aggregator; returns the reply body."""
    peer = await open_peer(url, secret_key)
    try:
        reply, _ = await peer.request(msg_type, {"job": job}, timeout=timeout)
        return {"type": reply.type, **reply.body_dict}
    finally:
        await peer.close()
