"""Driving one replica of a job through its pipeline stages, with reroute and replay.

Theory of operation (spec/job.md §Dispatch and pipeline sessions, §Failure and replay,
§Determinism). :class:`ReplicaDriver` connects to each stage's provider, offers and assigns the
shard, opens a session, and then runs the token loop: an ``input_ids`` activation frame into
stage 0 (the prompt, then one token per step), each stage's output frame relayed unchanged into
the next, the last stage's logits sampled here with a generator seeded from (seed, output
index). When a stage fails — the connection drops, the provider answers an error, or a step
exceeds the stage timeout — the driver asks its ``replace`` callback for another provider for
that stage's layers, reopens every session and *replays*: it prefills the prompt followed by all
tokens generated so far, then continues. Because sampling depends only on (seed, index) and the
logits, the replayed run yields exactly the tokens an uninterrupted run would.
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
from infernet_ref.node.errors import RemoteJobError
from infernet_ref.node.log import JsonLog
from infernet_ref.node.planner import Placement
from infernet_ref.node.transport import JobPeer, PeerClosed, open_peer

SEED_MULT = 1000003


class StageFailed(InfernetError):
    """Stage ``stage`` of a replica failed; ``provider`` is the key to avoid next time."""

    def __init__(self, stage: int, provider: str, why: str) -> None:
        super().__init__(f"stage {stage} on {provider[:12]} failed: {why}")
        self.stage, self.provider, self.why = stage, provider, why


def position_seed(seed: int, index: int) -> int:
    """The sampler seed for output index ``index`` (spec/job.md §Determinism)."""
    return (seed * SEED_MULT + index) % (1 << 63)


@dataclass
class GenerateSpec:
    job: str
    model: str
    prompt: list[int]
    max_new_tokens: int
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    stop_ids: tuple[int, ...] = ()
    eos_ids: tuple[int, ...] = ()
    dtype: str = "float32"


@dataclass
class StageLink:
    placement: Placement
    peer: JobPeer
    session: str


@dataclass
class ReplicaDriver:
    spec: GenerateSpec
    replica: int
    placements: list[Placement]
    secret_key: bytes
    log: JsonLog
    replace: Callable[[Placement, set[str]], Placement]
    on_token: Callable[[int, int], Awaitable[None]] | None = None
    stage_timeout: float = 30.0
    max_reroutes: int = 3
    tokens: list[int] = field(default_factory=list)
    reroutes: int = 0
    failed_providers: set[str] = field(default_factory=set)
    used_providers: list[str] = field(default_factory=list)
    hop_seconds: list[float] = field(default_factory=list)  # driver wall time per decode step
    compute_seconds: float = 0.0  # the stages' reported compute time over decode steps
    _attempt: int = 0

    async def run(self) -> list[int]:
        """Generate until max_new_tokens, a stop id or EOS; reroute failed stages."""
        while True:
            links: list[StageLink] = []
            try:
                links = await self._setup()
                await self._generate(links)
                return self.tokens
            except (
                asyncio.CancelledError
            ):  # the job was cancelled: tell the providers (spec/job.md)
                await self._teardown(links, cancel=True)
                links = []
                raise
            except StageFailed as failure:
                self.log.warning(
                    "driver.stage_failed",
                    job=self.spec.job,
                    replica=self.replica,
                    stage=failure.stage,
                    why=failure.why,
                    tokens=len(self.tokens),
                )
                self.failed_providers.add(failure.provider)
                if self.reroutes >= self.max_reroutes:
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
                    replay_tokens=len(self.spec.prompt) + len(self.tokens),
                )
            finally:
                await self._teardown(links)

    def _session_id(self) -> str:
        """One id for every stage of this attempt: frames then pass between stages unchanged."""
        text = f"{self.spec.job}/{self.replica}/{self._attempt}"
        return "s" + hashlib.sha256(text.encode()).hexdigest()[:20]

    async def _setup(self) -> list[StageLink]:
        self._attempt += 1
        links: list[StageLink] = []
        try:
            for p in self.placements:
                links.append(await self._open_stage(p))
        except BaseException:
            await self._teardown(links)
            raise
        return links

    async def _open_stage(self, p: Placement) -> StageLink:
        shard = {
            "stage": p.stage,
            "layer_start": p.layer_start,
            "layer_end": p.layer_end,
            "num_layers": self.placements[-1].layer_end,
            "tp": p.tp,
        }
        job, key = self.spec.job, p.provider.pubkey
        max_tokens = len(self.spec.prompt) + self.spec.max_new_tokens
        try:
            peer = await open_peer(
                p.provider.endpoint, self.secret_key, log=self.log, timeout=self.stage_timeout
            )
        except (InfernetError, OSError, TimeoutError) as exc:
            raise StageFailed(p.stage, key, f"connect: {exc}") from exc
        try:
            if peer.peer_pubkey != key:
                raise StageFailed(
                    p.stage, key, f"endpoint answered as {peer.peer_pubkey}, not the announced key"
                )
            session = self._session_id()
            await self._call(
                peer,
                p,
                "job.offer",
                {
                    "job": job,
                    "model": self.spec.model,
                    "shard": shard,
                    "max_tokens": max_tokens,
                    "dtype": self.spec.dtype,
                },
            )
            await self._call(
                peer,
                p,
                "job.assign",
                {"job": job, "model": self.spec.model, "shard": shard, "replica": self.replica},
                timeout=max(self.stage_timeout, 300),
            )
            await self._call(
                peer,
                p,
                "stage.open",
                {
                    "job": job,
                    "session": session,
                    "shard": shard,
                    "max_tokens": max_tokens,
                    "dtype": self.spec.dtype,
                },
            )
        except BaseException:
            await peer.close()
            raise
        self.used_providers.append(key)
        return StageLink(p, peer, session)

    async def _call(
        self,
        peer: JobPeer,
        p: Placement,
        msg_type: str,
        body: dict[str, Any],
        *,
        payload: bytes | None = None,
        timeout: float | None = None,
    ) -> tuple[Any, bytes | None]:
        try:
            return await peer.request(
                msg_type, body, payload=payload, timeout=timeout or self.stage_timeout
            )
        except RemoteJobError as exc:
            raise StageFailed(
                p.stage, p.provider.pubkey, f"{msg_type}: {exc.code} {exc.message}"
            ) from exc
        except (PeerClosed, TimeoutError, InfernetError, OSError) as exc:
            raise StageFailed(
                p.stage, p.provider.pubkey, f"{msg_type}: {type(exc).__name__} {exc}"
            ) from exc

    async def _generate(self, links: list[StageLink]) -> None:
        import torch  # noqa: PLC0415

        from infernet_ref.runtime.frames import ActivationFrame, decode_frame, encode_frame  # noqa: PLC0415
        from infernet_ref.runtime.sampling import SamplingParams, sample  # noqa: PLC0415

        sp = self.spec
        params = SamplingParams(
            max_tokens=sp.max_new_tokens,
            temperature=sp.temperature,
            top_k=sp.top_k,
            top_p=sp.top_p,
            seed=sp.seed,
        )
        ids, pos, step = list(sp.prompt) + list(self.tokens), 0, 0
        while len(self.tokens) < sp.max_new_tokens and not self._stopped():
            t0 = time.perf_counter()
            data: bytes = encode_frame(
                ActivationFrame(
                    links[0].session, pos, "input_ids", torch.tensor(ids, dtype=torch.int64)
                )
            )
            for link in links:
                data = await self._step(link, step, pos, data)
            logits = decode_frame(data)
            if logits.kind != "logits":
                raise StageFailed(
                    len(links) - 1,
                    links[-1].placement.provider.pubkey,
                    f"last stage answered {logits.kind}",
                )
            # the runtime seeds output index t with position_seed(seed, t) (spec/job.md §Determinism)
            token = int(
                sample(logits.tensor.unsqueeze(0), [params], [sp.seed], [len(self.tokens)])[0]
            )
            if step > 0:
                self.hop_seconds.append(time.perf_counter() - t0)
            pos += len(ids)
            step += 1
            self.tokens.append(token)
            ids = [token]
            if self.on_token is not None:
                await self.on_token(len(self.tokens) - 1, token)

    def placements_keys(self) -> list[str]:
        return [p.provider.pubkey for p in self.placements]

    def _stopped(self) -> bool:
        last = self.tokens[-1] if self.tokens else None
        return last is not None and (last in self.spec.stop_ids or last in self.spec.eos_ids)

    async def _step(self, link: StageLink, step: int, pos: int, data: bytes) -> bytes:
        reply, out = await self._call(
            link.peer,
            link.placement,
            "stage.forward",
            {"session": link.session, "step": step, "position": pos},
            payload=data,
        )
        if out is None:
            raise StageFailed(
                link.placement.stage, link.placement.provider.pubkey, "stage.output without payload"
            )
        if step > 0:  # decode steps only: the timing split the benchmark reports
            self.compute_seconds += float(reply.body_dict.get("compute_ms", 0.0)) / 1000
        return out

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
