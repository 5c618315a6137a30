"""Directly routed pipeline sessions on the provider side (spec/job.md §Direct routing).

Theory of operation. A session opened with a ``route`` is a link in a ring: stage k runs each
step and sends its output frame straight to ``route.next`` as a ``stage.forward``; the last stage
samples the token (seeded by (seed, output index), spec/job.md §Determinism) and sends it to
stage 0 as a one-token ``input_ids`` frame; stage 0 records it, decides whether generation is
over, runs the next step and reports the token to the driver sealed to the client
(``stage.token``). With a single stage the ring stays inside this process and
:meth:`Router.run_first` loops instead of sending. Stage 0 alone sees the prompt and the output
ids in the clear: it opens the client's sealed inputs and seals every token back.

:class:`Router` keeps one authenticated connection per next-hop endpoint (checked to answer as
the announced key), reused by every session between the two providers. Whatever stops a session
— its worker failing, the next hop unreachable or answering ``sys.error`` — is reported to the
session's driver as ``stage.failed`` naming the provider at fault, and the session stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from infernet_ref.errors import InfernetError
from infernet_ref.node.errors import ErrorCode, JobProtocolError
from infernet_ref.node.log import JsonLog
from infernet_ref.node.messages import Message
from infernet_ref.node.payloads import output_sha256, seal_json
from infernet_ref.node.transport import JobPeer, open_peer

#: Next-hop connections one provider keeps at most (drivers choose the endpoints: bounded).
MAX_LINKS = 256

#: (session, input frame, sampling fields or None) -> (output frame, compute seconds, sampled
#: token or None); raises JobProtocolError.
Compute = Callable[..., Awaitable[tuple[bytes, float, int | None]]]


@dataclass(frozen=True, slots=True)
class Route:
    """A session's place in the ring, from ``stage.open.route`` and its shard."""

    prev: str
    next_node: str
    next_endpoint: str
    client: str
    prompt_tokens: int
    max_new_tokens: int
    temperature: float
    top_k: int
    top_p: float
    seed: int
    stop_ids: frozenset[int]
    eos_ids: frozenset[int]
    first: bool
    last: bool

    @classmethod
    def from_wire(cls, route: dict[str, Any], shard: dict[str, Any]) -> Route:
        g = route["generation"]
        s = g["sampling"]
        return cls(
            prev=route["prev"],
            next_node=route["next"]["node"],
            next_endpoint=route["next"]["endpoint"],
            client=route["client"],
            prompt_tokens=g["prompt_tokens"],
            max_new_tokens=g["max_new_tokens"],
            temperature=float(s["temperature"]),
            top_k=int(s.get("top_k", 0)),
            top_p=float(s.get("top_p", 1.0)),
            seed=int(s["seed"]),
            stop_ids=frozenset(g.get("stop_ids", ())),
            eos_ids=frozenset(g.get("eos_ids", ())),
            first=shard["stage"] == 0,
            last=shard["layer_end"] == shard["num_layers"],
        )


@dataclass
class Ring:
    """Stage 0's view of a routed session: the history it alone holds in the clear."""

    prompt: list[int]
    salt: bytes = b""
    generated: list[int] = field(default_factory=list)
    sent_at: float = 0.0  # when the current step's activations left stage 0
    done: bool = False


def finish_reason(route: Route, ring: Ring) -> str | None:
    """``stop``/``eos``/``length`` once generation is over, else None (spec/job.md rule 4)."""
    last = ring.generated[-1] if ring.generated else None
    if last in route.eos_ids:
        return "eos"
    if last in route.stop_ids:
        return "stop"
    if len(ring.generated) >= route.max_new_tokens:
        return "length"
    return None


class Router:
    """Next-hop connections and the per-step work of routed sessions (see module docstring)."""

    def __init__(self, secret_key: bytes, me: str, log: JsonLog, compute: Compute) -> None:
        self.sk, self.me, self.log, self.compute = secret_key, me, log, compute
        self.links: dict[str, JobPeer] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._by_session: dict[str, Any] = {}  # session id -> Session, for sys.error routing

    # ---- next-hop links ---------------------------------------------------------------------
    async def _link(self, endpoint: str, node: str) -> JobPeer:
        async with self._locks.setdefault(endpoint, asyncio.Lock()):
            peer = self.links.get(endpoint)
            if peer is not None and not peer.closed.is_set():
                if peer.peer_pubkey != node:
                    raise JobProtocolError(
                        f"{endpoint} answers as {peer.peer_pubkey}, not {node}",
                        ErrorCode.PROVIDER_FAILED,
                    )
                return peer
            self._prune()
            peer = await open_peer(
                endpoint, self.sk, log=self.log, on_message=self._from_next, timeout=10
            )
            if peer.peer_pubkey != node:
                await peer.close()
                raise JobProtocolError(
                    f"{endpoint} answered as {peer.peer_pubkey}, not {node}",
                    ErrorCode.PROVIDER_FAILED,
                )
            self.links[endpoint] = peer
            return peer

    def _prune(self) -> None:
        """Forget closed links; refuse a new one when MAX_LINKS are open (4100)."""
        for endpoint in [e for e, p in self.links.items() if p.closed.is_set()]:
            del self.links[endpoint]
        for endpoint in [e for e in self._locks if e not in self.links]:
            if not self._locks[endpoint].locked():  # a lock in use stays (its holder needs it)
                del self._locks[endpoint]
        if len(self.links) >= MAX_LINKS:
            raise JobProtocolError(
                f"this provider already keeps {MAX_LINKS} next-hop connections",
                ErrorCode.NO_CAPACITY,
            )

    async def _from_next(self, link: JobPeer, msg: Message, _: bytes | None) -> None:
        """A next hop refused one of our forwards: the session stops, blaming it. Only a
        session whose next hop this link is can be stopped so (not any session id named)."""
        if msg.type != "sys.error":
            return
        s = self._by_session.get(str(msg.body_dict.get("session")))
        if s is not None and link.peer_pubkey is not None and s.route.next_node == link.peer_pubkey:
            b = msg.body_dict
            await self.fail(s, link.peer_pubkey, int(b["code"]), f"next stage: {b['message']}")

    async def close(self) -> None:
        for peer in list(self.links.values()):
            with contextlib.suppress(InfernetError, OSError):
                await peer.close()
        self.links.clear()

    def attach(self, s: Any) -> None:
        self._by_session[s.id] = s

    def detach(self, s: Any) -> None:
        self._by_session.pop(s.id, None)

    # ---- failure ----------------------------------------------------------------------------
    async def fail(self, s: Any, node: str, code: int, message: str) -> None:
        """Report ``stage.failed`` to the session's driver once; the session stops."""
        if s.failed:
            return
        s.failed = True
        self.log.warning("provider.route_failed", session=s.id, node=node, code=code, why=message)
        with contextlib.suppress(InfernetError, OSError):
            await s.peer.send(
                "stage.failed",
                {"session": s.id, "node": node, "code": code, "message": message[:1024]},
            )

    # ---- steps ------------------------------------------------------------------------------
    async def _send_next(
        self, s: Any, frame: bytes, step: int, position: int, compute_ms: float
    ) -> None:
        route: Route = s.route
        try:
            link = await self._link(route.next_endpoint, route.next_node)
            body = {"session": s.id, "step": step, "position": position}
            if compute_ms:
                body["compute_ms"] = round(compute_ms, 3)
            await link.send("stage.forward", body, payload=frame)
        except (InfernetError, OSError, TimeoutError) as exc:
            await self.fail(s, route.next_node, int(ErrorCode.PROVIDER_FAILED), f"next: {exc}")

    async def _step(self, s: Any, frame: bytes) -> tuple[bytes, float, int | None] | None:
        """Run one step on our worker — on the last stage sampling the token there, from the
        fp32 logits — or None (after reporting) when the worker failed."""
        sample = self._sampling(s) if s.route.last else None
        try:
            return await self.compute(s, frame, sample=sample)
        except JobProtocolError as exc:
            await self.fail(s, self.me, int(exc.error_code), str(exc))
            return None

    async def forward(self, s: Any, frame: bytes, position: int, compute_ms: float) -> None:
        """A ``stage.forward`` from ``prev`` into a routed session (spec/job.md rules 2-4)."""
        if s.route.first:
            await self._record(s, _single_token(frame), compute_ms)
            if not s.ring.done:
                await self.run_first(s, frame, position)
            return
        step, done = s.step, await self._step(s, frame)
        if done is None:
            return
        out, seconds, token = done
        compute_ms += seconds * 1000
        if token is not None:
            nxt = token_frame(s.id, s.position, [token])
            await self._send_next(s, nxt, s.step, s.position, compute_ms)
        else:
            await self._send_next(s, out, step, position, compute_ms)

    def start(self, s: Any) -> asyncio.Task[None]:
        """Stage 0 starts generating from its ring's history, in a task of its own (a
        single-stage ring loops there until the end, and the driver's connection stays free
        for ``stage.close``)."""
        ring: Ring = s.ring

        async def main() -> None:
            try:
                await self.run_first(s, token_frame(s.id, 0, ring.prompt + ring.generated), 0)
            except InfernetError as exc:
                await self.fail(s, self.me, int(ErrorCode.SANDBOX), str(exc))

        return asyncio.create_task(main())

    async def run_first(self, s: Any, frame: bytes, position: int) -> None:
        """Stage 0 runs a step from ``frame``; with one stage it loops through the whole ring."""
        ring: Ring = s.ring
        while not s.failed and not ring.done:
            step = s.step
            done = await self._step(s, frame)
            if done is None:
                return
            out, _, token = done
            if token is None:
                ring.sent_at = time.perf_counter()
                await self._send_next(s, out, step, position, 0.0)
                await self._flush_token(s)
                return
            position = s.position
            await self._record(s, token, 0.0)
            await self._flush_token(s)
            frame = token_frame(s.id, position, [token])

    async def _record(self, s: Any, token: int, compute_ms: float) -> None:
        """Stage 0 takes output token ``token``; the report goes out after the next step left."""
        ring: Ring = s.ring
        ring.generated.append(token)
        reason = finish_reason(s.route, ring)
        ring.done = reason is not None
        body: dict[str, Any] = {
            "session": s.id,
            "index": len(ring.generated) - 1,
            "tokens": seal_json({"ids": [token]}, self.sk, s.route.client),
            "done": ring.done,
        }
        if ring.sent_at and not s.route.last:
            body["ring_ms"] = round((time.perf_counter() - ring.sent_at) * 1000, 3)
            body["compute_ms"] = round(compute_ms, 3)
        if reason is not None:
            body.update(
                finish=reason,
                count=len(ring.generated),
                output_sha256=output_sha256(ring.generated, salt=ring.salt),
                output=seal_json({"ids": ring.generated}, self.sk, s.route.client),
            )
        s.pending_token = body
        if ring.done:
            await self._flush_token(s)

    async def _flush_token(self, s: Any) -> None:
        body, s.pending_token = s.pending_token, None
        if body is not None and not s.failed:
            with contextlib.suppress(InfernetError, OSError):
                await s.peer.send("stage.token", body)

    @staticmethod
    def _sampling(s: Any) -> dict[str, Any]:
        """The worker's sampling fields (the caller adds ``sample_index``: the position the new
        token takes minus the prompt, spec/job.md §Direct routing rule 3)."""
        r: Route = s.route
        fields: dict[str, Any] = {
            "temperature": r.temperature,
            "seed": r.seed,
        }
        if r.top_k:
            fields["top_k"] = r.top_k
        if r.top_p < 1.0:
            fields["top_p"] = r.top_p
        return fields


def token_frame(session: str, position: int, ids: list[int]) -> bytes:
    """An ``input_ids`` activation frame (spec/runtime.md §5.1) of ``ids`` at ``position``."""
    import torch  # noqa: PLC0415

    from infernet_ref.runtime.frames import ActivationFrame, encode_frame  # noqa: PLC0415

    data: bytes = encode_frame(
        ActivationFrame(session, position, "input_ids", torch.tensor(ids, dtype=torch.int64))
    )
    return data


def _single_token(frame: bytes) -> int:
    """The one token id of a fed-back ``input_ids`` frame (else 4000), read without decoding the
    frame: stage 0's worker checks the frame fully when it runs the next step."""
    from infernet_ref.encoding import json_decode  # noqa: PLC0415

    n = int.from_bytes(frame[:8], "little") if len(frame) >= 8 else -1
    if not 0 < n <= 4096 or len(frame) != 8 + n + 8:
        raise JobProtocolError("stage 0 takes back a frame of exactly one int64 token id")
    try:
        header = json_decode(frame[8 : 8 + n], max_size=4096, max_depth=4)
    except InfernetError as exc:
        raise JobProtocolError(f"bad token frame header: {exc}") from exc
    entry = header.get("input_ids") if isinstance(header, dict) else None
    if (
        not isinstance(entry, dict)
        or set(header) != {"__metadata__", "input_ids"}
        or entry.get("dtype") != "I64"
        or entry.get("shape") != [1]
        or entry.get("data_offsets") != [0, 8]
    ):
        raise JobProtocolError("stage 0 takes back exactly one int64 token id per step")
    token = int.from_bytes(frame[8 + n :], "little", signed=True)
    if token < 0:
        raise JobProtocolError(f"token id {token} is negative")
    return token
