"""Driving one replica of a job through directly routed stages, with reroute and replay.

Theory of operation (spec/job.md §Direct routing, §Failure and replay, §Determinism).
:class:`ReplicaDriver` connects to each stage's provider, offers and assigns the shard, and
opens a session whose ``route`` makes the stages a ring: stage k sends its activations straight
to stage k + 1, the last stage samples and sends the token back to stage 0. It then starts stage
0 with the client's sealed inputs and only *watches*: every output token arrives from stage 0 as
``stage.token``, sealed to the client, and is passed on through ``on_token``. The driver never
sees a token id or an activation.

When a stage fails — its connection drops, a provider reports ``stage.failed``, or no token
comes for ``stage_timeout`` and a heartbeat finds the stage silent — the driver asks ``replace``
for another provider for that stage's layers, opens fresh sessions and *replays* the prompt and
the ``count`` tokens relayed so far: from stage 0's old session when stage 0 survived, else from
the client (``inputs`` asks it to re-seal its history to the new stage-0 provider). Sampling
depends only on (seed, output index) and the logits, so the replayed run yields exactly the
tokens an uninterrupted run would.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from infernet_ref.errors import InfernetError
from infernet_ref.node.errors import ErrorCode, JobProtocolError, RemoteJobError
from infernet_ref.node.log import JsonLog
from infernet_ref.node.messages import Message
from infernet_ref.node.planner import Placement
from infernet_ref.node.transport import JobPeer, PeerClosed, open_peer

SEED_MULT = 1000003
PROBE_TIMEOUT = 5.0

#: (replica, stage-0 provider key, tokens generated so far) -> the client's sealed inputs.
Inputs = Callable[[int, str, int], Awaitable[dict[str, Any]]]
#: (replica, output index, the token sealed to the client).
OnToken = Callable[[int, int, dict[str, Any]], Awaitable[None]]


class StageFailed(InfernetError):
    """Stage ``stage`` of a replica failed; ``provider`` is the key to avoid next time."""

    def __init__(self, stage: int, provider: str, why: str) -> None:
        super().__init__(f"stage {stage} on {provider[:12]} failed: {why}")
        self.stage, self.provider, self.why = stage, provider, why


class ReplicaError(JobProtocolError):
    """The replica cannot go on for a reason no reroute fixes (bad inputs, a stuck ring)."""


def position_seed(seed: int, index: int) -> int:
    """The sampler seed for output index ``index`` (spec/job.md §Determinism)."""
    return (seed * SEED_MULT + index) % (1 << 63)


@dataclass
class GenerateSpec:
    job: str
    model: str
    client: str
    prompt_tokens: int
    max_new_tokens: int
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    stop_ids: tuple[int, ...] = ()
    eos_ids: tuple[int, ...] = ()
    dtype: str = "float32"

    def generation(self) -> dict[str, Any]:
        """The ``route.generation`` object (job-messages ``$defs/Generation``)."""
        sampling: dict[str, Any] = {"temperature": self.temperature, "seed": self.seed}
        if self.top_k:
            sampling["top_k"] = self.top_k
        if self.top_p < 1.0:
            sampling["top_p"] = self.top_p
        g: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "max_new_tokens": self.max_new_tokens,
            "sampling": sampling,
        }
        if self.stop_ids:
            g["stop_ids"] = list(self.stop_ids)
        if self.eos_ids:
            g["eos_ids"] = list(self.eos_ids)
        return g


@dataclass(frozen=True, slots=True)
class ReplicaResult:
    count: int
    output_sha256: str
    output: dict[str, Any]  # every output id, sealed to the client by stage 0
    finish: str


@dataclass
class StageLink:
    placement: Placement
    peer: JobPeer
    session: str
    started: bool = False  # stage 0 took its inputs: its session holds the history


@dataclass
class ReplicaDriver:
    spec: GenerateSpec
    replica: int
    placements: list[Placement]
    secret_key: bytes
    log: JsonLog
    replace: Callable[[Placement, set[str]], Placement]
    inputs: Inputs
    on_token: OnToken | None = None
    stage_timeout: float = 30.0
    max_reroutes: int = 3
    count: int = 0  # output tokens relayed, in order
    reroutes: int = 0
    failed_providers: set[str] = field(default_factory=set)
    used_providers: list[str] = field(default_factory=list)
    token_seconds: list[float] = field(default_factory=list)  # decode tokens' inter-arrival
    ring_ms: list[float] = field(default_factory=list)  # per decode token, stage 0's ring time
    ring_compute_ms: list[float] = field(default_factory=list)  # ... of which later stages computed
    _attempt: int = 0

    async def run(self) -> ReplicaResult:
        """Generate until stage 0 reports the last token; reroute failed stages."""
        keep: StageLink | None = None  # stage 0's session of a failed attempt, for replay
        while True:
            links: list[StageLink] = []
            try:
                events: asyncio.Queue[tuple[str, int, Message | None]] = asyncio.Queue()
                links = await self._setup(events)
                await self._start(links, keep)
                if keep is not None:
                    await self._teardown([keep])
                    keep = None
                return await self._watch(links, events)
            except asyncio.CancelledError:  # the job was cancelled: tell the providers
                await self._teardown(links + ([keep] if keep else []), cancel=True)
                links, keep = [], None
                raise
            except StageFailed as failure:
                self._failed(failure)
                if failure.stage == 0 and keep is not None:
                    await self._teardown([keep])
                    keep = None
                if failure.stage != 0 and keep is None and links and links[0].started:
                    keep, links = links[0], links[1:]
                if self.reroutes >= self.max_reroutes:
                    await self._teardown([keep] if keep else [])
                    raise
                self.reroutes += 1
                self.placements[failure.stage] = self.replace(
                    self.placements[failure.stage], set(self.failed_providers)
                )
                self.log.info(
                    "driver.reroute",
                    job=self.spec.job,
                    replica=self.replica,
                    stage=failure.stage,
                    to=self.placements[failure.stage].provider.pubkey,
                    replay_tokens=self.spec.prompt_tokens + self.count,
                    replay_from="stage0" if keep is not None else "client",
                )
            except BaseException:
                await self._teardown([keep] if keep else [])
                raise
            finally:
                await self._teardown(links)

    def _failed(self, failure: StageFailed) -> None:
        self.log.warning(
            "driver.stage_failed",
            job=self.spec.job,
            replica=self.replica,
            stage=failure.stage,
            why=failure.why,
            tokens=self.count,
        )
        self.failed_providers.add(failure.provider)

    def _session_id(self) -> str:
        """One id for every stage of this attempt: frames then pass between stages unchanged."""
        text = f"{self.spec.job}/{self.replica}/{self._attempt}"
        return "s" + hashlib.sha256(text.encode()).hexdigest()[:20]

    # ---- setup ------------------------------------------------------------------------------
    async def _setup(
        self, events: asyncio.Queue[tuple[str, int, Message | None]]
    ) -> list[StageLink]:
        self._attempt += 1
        session = self._session_id()
        links: list[StageLink] = []
        try:
            for k in range(len(self.placements)):
                links.append(await self._open_stage(k, session, events))
        except BaseException:
            await self._teardown(links)
            raise
        return links

    def _route(self, k: int) -> dict[str, Any]:
        ps = self.placements
        nxt = ps[(k + 1) % len(ps)].provider
        return {
            "prev": ps[k - 1].provider.pubkey,
            "next": {"node": nxt.pubkey, "endpoint": nxt.endpoint},
            "client": self.spec.client,
            "generation": self.spec.generation(),
        }

    async def _open_stage(
        self, k: int, session: str, events: asyncio.Queue[tuple[str, int, Message | None]]
    ) -> StageLink:
        p = self.placements[k]
        shard = {
            "stage": p.stage,
            "layer_start": p.layer_start,
            "layer_end": p.layer_end,
            "num_layers": self.placements[-1].layer_end,
            "tp": p.tp,
        }
        job, key = self.spec.job, p.provider.pubkey
        max_tokens = self.spec.prompt_tokens + self.spec.max_new_tokens

        async def on_message(_: JobPeer, msg: Message, __: bytes | None) -> None:
            events.put_nowait(("msg", k, msg))

        async def on_close(_: JobPeer) -> None:
            events.put_nowait(("closed", k, None))

        try:
            peer = await open_peer(
                p.provider.endpoint,
                self.secret_key,
                log=self.log,
                timeout=self.stage_timeout,
                on_message=on_message,
                on_close=on_close,
            )
        except (InfernetError, OSError, TimeoutError) as exc:
            raise StageFailed(k, key, f"connect: {exc}") from exc
        try:
            if peer.peer_pubkey != key:
                raise StageFailed(
                    k, key, f"endpoint answered as {peer.peer_pubkey}, not the announced key"
                )
            link = StageLink(p, peer, session)
            offer = {"job": job, "model": self.spec.model, "shard": shard, "max_tokens": max_tokens}
            await self._call(link, "job.offer", {**offer, "dtype": self.spec.dtype})
            assign = {"job": job, "model": self.spec.model, "shard": shard, "replica": self.replica}
            await self._call(link, "job.assign", assign, timeout=max(self.stage_timeout, 300))
            await self._call(
                link,
                "stage.open",
                {
                    "job": job,
                    "session": session,
                    "shard": shard,
                    "max_tokens": max_tokens,
                    "dtype": self.spec.dtype,
                    "route": self._route(k),
                },
            )
        except BaseException:
            await peer.close()
            raise
        self.used_providers.append(key)
        return link

    async def _call(
        self, link: StageLink, msg_type: str, body: dict[str, Any], *, timeout: float | None = None
    ) -> Message:
        k, key = link.placement.stage, link.placement.provider.pubkey
        try:
            reply, _ = await link.peer.request(
                msg_type, body, timeout=timeout or self.stage_timeout
            )
            return reply
        except RemoteJobError as exc:
            raise StageFailed(k, key, f"{msg_type}: {exc.code} {exc.message}") from exc
        except (PeerClosed, TimeoutError, InfernetError, OSError) as exc:
            raise StageFailed(k, key, f"{msg_type}: {type(exc).__name__} {exc}") from exc

    async def _start(self, links: list[StageLink], keep: StageLink | None) -> None:
        """stage.inputs to stage 0: a replay of ``keep`` or the client's sealed inputs."""
        first = links[0]
        body: dict[str, Any] = {"session": first.session}
        if keep is not None:
            body["replay"] = {"session": keep.session, "generated": self.count}
        else:
            key = first.placement.provider.pubkey
            try:
                body["inputs"] = await self.inputs(self.replica, key, self.count)
            except TimeoutError as exc:
                raise ReplicaError(
                    "the client did not send the inputs in time", ErrorCode.TIMEOUT
                ) from exc
        try:
            await first.peer.request("stage.inputs", body, timeout=self.stage_timeout)
        except RemoteJobError as exc:
            if exc.code < 5000 and keep is None:  # the client's inputs were refused
                code = exc.code if exc.code in set(ErrorCode) else ErrorCode.BAD_REQUEST
                raise ReplicaError(
                    f"stage 0 refused the inputs: {exc.message}", ErrorCode(code)
                ) from exc
            raise StageFailed(0, first.placement.provider.pubkey, f"stage.inputs: {exc}") from exc
        except (PeerClosed, TimeoutError, InfernetError, OSError) as exc:
            raise StageFailed(0, first.placement.provider.pubkey, f"stage.inputs: {exc}") from exc
        first.started = True

    # ---- watching ---------------------------------------------------------------------------
    async def _watch(
        self, links: list[StageLink], events: asyncio.Queue[tuple[str, int, Message | None]]
    ) -> ReplicaResult:
        session, last = links[0].session, time.perf_counter()
        while True:
            try:
                kind, k, msg = await asyncio.wait_for(events.get(), self.stage_timeout)
            except TimeoutError:
                await self._probe(links)
                continue
            key = links[k].placement.provider.pubkey
            if kind == "closed" or msg is None:
                raise StageFailed(k, key, f"connection closed: {links[k].peer.close_reason}")
            b = msg.body_dict
            if b.get("session") != session:
                continue  # a late message of an earlier attempt
            if msg.type == "stage.failed":
                blamed = self._stage_of(b["node"], default=k)
                raise StageFailed(blamed, self.placements[blamed].provider.pubkey, b["message"])
            if msg.type == "sys.error":
                raise StageFailed(k, key, f"{b['code']} {b['message']}")
            if msg.type != "stage.token" or k != 0:
                continue
            if b["index"] < self.count:
                continue
            if b["index"] > self.count:
                raise StageFailed(0, key, f"token {b['index']} skipped {self.count}")
            now = time.perf_counter()
            if self.count > 0:
                self.token_seconds.append(now - last)
                if "ring_ms" in b:
                    self.ring_ms.append(float(b["ring_ms"]))
                    self.ring_compute_ms.append(float(b.get("compute_ms", 0.0)))
            last = now
            self.count += 1
            if self.on_token is not None:
                await self.on_token(self.replica, b["index"], b["tokens"])
            if b["done"]:
                final = ("output", "output_sha256", "finish")
                if any(k not in b for k in final) or b.get("count") != self.count:
                    raise StageFailed(0, key, "the last stage.token lacks the output or its count")
                return ReplicaResult(self.count, b["output_sha256"], b["output"], b["finish"])

    def _stage_of(self, node: str, *, default: int) -> int:
        for i, p in enumerate(self.placements):
            if p.provider.pubkey == node:
                return i
        return default

    async def _probe(self, links: list[StageLink]) -> None:
        """No token for stage_timeout: the first stage that misses a heartbeat has failed."""
        for link in links:
            try:
                await link.peer.request("sys.heartbeat", {"seq": 0}, timeout=PROBE_TIMEOUT)
            except (InfernetError, OSError, TimeoutError) as exc:
                raise StageFailed(
                    link.placement.stage, link.placement.provider.pubkey, f"silent: {exc}"
                ) from exc
        raise ReplicaError(
            f"no token for {self.stage_timeout} s although every stage answers", ErrorCode.TIMEOUT
        )

    async def _teardown(self, links: list[StageLink], *, cancel: bool = False) -> None:
        for link in links:
            with contextlib.suppress(InfernetError, OSError, TimeoutError):
                if cancel:
                    await link.peer.request(
                        "job.cancel", {"job": self.spec.job, "reason": "cancelled"}, timeout=2
                    )
                else:
                    await link.peer.request("stage.close", {"session": link.session}, timeout=2)
            with contextlib.suppress(InfernetError, OSError):
                await link.peer.close()

    def placements_keys(self) -> list[str]:
        return [p.provider.pubkey for p in self.placements]

    def timing(self) -> dict[str, float]:
        """Per decode token (ms): the wall time at the driver, stage 0's ring time, the later
        stages' compute within it, and the rest divided over the ring's hops."""
        n = len(self.token_seconds)
        if n == 0:
            return {}
        out = {"token_ms": round(sum(self.token_seconds) / n * 1000, 3)}
        if self.ring_ms and len(self.placements) > 1:
            ring = sum(self.ring_ms) / len(self.ring_ms)
            compute = sum(self.ring_compute_ms) / len(self.ring_compute_ms)
            out.update(
                ring_ms=round(ring, 3),
                ring_compute_ms=round(compute, 3),
                overhead_per_hop_ms=round((ring - compute) / len(self.placements), 3),
            )
        return out
