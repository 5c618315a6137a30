"""The aggregator role: accept jobs, plan, drive replicas, verify, report (spec/job.md).

Theory of operation. ``job.submit`` from an authenticated client is persisted (``queued``) and
planned with :func:`~infernet_ref.node.planner.plan_job` over the providers the directory knows
for the model; the reply is ``job.accept`` with the plan or ``job.reject``. The prompt never comes
here: the client seals it to each replica's stage-0 provider and sends it as ``job.inputs``,
which is passed on unopened. A task drives every replica concurrently
(:class:`~infernet_ref.node.driver.ReplicaDriver`), relaying each sealed token to the client as
``job.progress`` and asking the client to re-seal its history (``job.replay``) when a replica's
stage 0 must move to another provider. With redundancy > 1 the replicas' output hashes are
compared; disagreeing providers are recorded as mismatches and the verdict goes to the client.
Every job ends in one recorded terminal state: completed, failed (with its code), cancelled or
rejected.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from infernet_ref.errors import InfernetError
from infernet_ref.node.clientrelay import ClientRelay
from infernet_ref.node.driver import (
    GenerateSpec,
    ReplicaDriver,
)
from infernet_ref.node.errors import ErrorCode, JobProtocolError, PlanningError, StoreError
from infernet_ref.node.jobstate import JobState
from infernet_ref.node.limits import ClientLimits
from infernet_ref.node.log import JsonLog
from infernet_ref.node.messages import Message
from infernet_ref.node.outcomes import ROLE, JobOutcomes
from infernet_ref.node.planner import (
    JobNeeds,
    JobPlan,
    ModelShape,
    Placement,
    ProviderOffer,
    plan_job,
    replacement,
)
from infernet_ref.node.store import Store
from infernet_ref.node.transport import JobPeer

Directory = Callable[[str], Awaitable[list[ProviderOffer]]]


@dataclass(frozen=True, slots=True)
class ModelInfo:
    cid: str
    shape: ModelShape
    eos_ids: tuple[int, ...] = ()
    max_context: int = 1 << 20

    @classmethod
    def from_dir(cls, cid: str, path: Path) -> ModelInfo:
        return cls.from_config(cid, json.loads((path / "config.json").read_text()))

    @classmethod
    def from_config(cls, cid: str, cfg: dict[str, Any]) -> ModelInfo:
        eos = cfg.get("eos_token_id")
        eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (int(eos),))
        return cls(
            cid,
            ModelShape.from_hf_config(cfg),
            eos_ids,
            int(cfg.get("max_position_embeddings", 1 << 20)),
        )


@dataclass
class RunningJob:
    job: str
    owner: str
    client: JobPeer | None
    task: asyncio.Task[None] | None = None
    stream: bool = False
    done_tokens: int = 0
    drivers: list[ReplicaDriver] = field(default_factory=list)
    stage0: dict[int, str] = field(default_factory=dict)  # replica -> current stage-0 key
    initial: dict[int, dict[str, Any]] = field(default_factory=dict)  # first sealed inputs
    waiting: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)


class Aggregator(ClientRelay, JobOutcomes):
    def __init__(
        self,
        *,
        secret_key: bytes,
        store: Store,
        log: JsonLog,
        directory: Directory,
        models: Callable[[str], Awaitable[ModelInfo]],
        stage_timeout: float = 30.0,
        max_reroutes: int = 3,
        submits_per_minute: float = 60.0,
        max_active_per_client: int = 4,
        validation_rate: float = 0.0,
        rng: random.Random | None = None,
    ) -> None:
        self.sk, self.store, self.log, self.directory, self.models = (
            secret_key,
            store,
            log,
            directory,
            models,
        )
        self.stage_timeout, self.max_reroutes = stage_timeout, max_reroutes
        self.running: dict[str, RunningJob] = {}
        self.active: collections.Counter[str] = collections.Counter()  # owner -> jobs admitted
        self.limits = ClientLimits(submits_per_minute, max_active_per_client)
        self.validation_rate, self.rng = validation_rate, rng or random.Random()

    HANDLED = frozenset({"job.submit", "job.inputs", "job.cancel", "job.status"})

    async def handle(self, peer: JobPeer, msg: Message, payload: bytes | None) -> None:
        try:
            if msg.type == "job.submit":
                await self._submit(peer, msg)
            elif msg.type == "job.inputs":
                self._inputs(peer, msg)
            elif msg.type == "job.cancel":
                await self._cancel(peer, msg)
            else:
                await self._status(peer, msg)
        except JobProtocolError as exc:
            await peer.send_error(exc.error_code, str(exc), re=msg.id, job=msg.body_dict.get("job"))
        except StoreError as exc:
            await peer.send_error(
                ErrorCode.STORAGE, str(exc), re=msg.id, job=msg.body_dict.get("job")
            )

    # ---- submission -------------------------------------------------------------------------
    async def _submit(self, peer: JobPeer, msg: Message) -> None:
        body = msg.body_dict
        job, owner = body["job"], peer.peer_pubkey
        assert owner is not None
        refused = self.limits.admit(owner, self.active[owner], time.monotonic())
        if refused is not None:  # not recorded: it was never accepted (spec/job.md §Submission)
            reject = {"job": job, "code": int(ErrorCode.RATE_LIMITED), "reason": refused}
            await peer.send("job.reject", reject, re=msg.id)
            self.log.info("job.rate_limited", client=owner[:16], reason=refused)
            return
        self.active[owner] += 1  # from admission until the job ends (planning awaits)
        started = False
        try:
            started = await self._admitted(peer, msg, job, owner)
        finally:
            if not started:
                self._release(owner)

    def _release(self, owner: str) -> None:
        self.active[owner] -= 1
        if self.active[owner] <= 0:
            del self.active[owner]

    async def _admitted(self, peer: JobPeer, msg: Message, job: str, owner: str) -> bool:
        """Persist, plan, accept or reject; True when the job's task was started."""
        body = msg.body_dict
        if self.store.find_job(job, ROLE) is not None:
            raise JobProtocolError(f"job {job} already exists", ErrorCode.DUPLICATE)
        self.store.create_job(
            job,
            role=ROLE,
            owner=owner,
            model=body["model"],
            now=time.time(),
            params={
                "params": body["params"],
                "redundancy": body["redundancy"],
                "prompt_tokens": body["prompt_tokens"],
            },
        )
        try:
            info = await self.models(body["model"])
            spec = self._spec(job, owner, body, info)
            needs = JobNeeds(
                spec.prompt_tokens, spec.max_new_tokens, spec.dtype, body["redundancy"]
            )
            if needs.context > info.max_context:
                raise PlanningError(
                    f"context {needs.context} exceeds the model's {info.max_context}",
                    ErrorCode.NO_CAPACITY,
                )
            offers = await self.directory(body["model"])
            plan = plan_job(info.shape, needs, offers)
            sampled = self._sample_plan(info, needs, offers)
            if sampled is not None:
                plan = sampled
        except (PlanningError, InfernetError, OSError) as exc:
            code = exc.code if isinstance(exc, PlanningError) else ErrorCode.UNKNOWN_MODEL
            self.store.transition(
                job, ROLE, JobState.REJECTED, now=time.time(), error=str(exc), error_code=int(code)
            )
            await peer.send(
                "job.reject", {"job": job, "code": int(code), "reason": str(exc)[:1024]}, re=msg.id
            )
            self.log.info("job.rejected", job=job, code=int(code), reason=str(exc))
            return False
        wire = plan.to_wire(info.shape.num_layers)
        if sampled is not None:
            wire["sampled"] = True
        self.store.transition(job, ROLE, JobState.PLANNED, now=time.time(), plan=wire)
        with contextlib.suppress(InfernetError):  # a client gone now: the job still ends (4300)
            await peer.send("job.accept", {"job": job, "plan": wire}, re=msg.id)
        self.log.info(
            "job.accepted",
            job=job,
            strategy=plan.strategy,
            replicas=len(plan.replicas),
            stages=len(plan.replicas[0]),
        )
        run = RunningJob(job, owner, peer, stream=bool(body.get("stream", False)))
        run.stage0 = {i: rep[0].provider.pubkey for i, rep in enumerate(plan.replicas)}
        self.running[job] = run
        run.task = asyncio.create_task(
            self._run(run, spec=spec, info=info, needs=needs, plan=plan, offers=offers)
        )
        return True

    def _sample_plan(
        self, info: ModelInfo, needs: JobNeeds, offers: list[ProviderOffer]
    ) -> JobPlan | None:
        """With probability ``validation_rate``, the plan with one replica more (the last, on
        providers disjoint from the others), when the offers allow it (spec/job.md §Validation
        sampling)."""
        if needs.redundancy >= 8 or self.rng.random() >= self.validation_rate:
            return None
        try:
            return plan_job(info.shape, replace(needs, redundancy=needs.redundancy + 1), offers)
        except PlanningError:
            self.log.info(
                "job.validation_skipped", why="no disjoint providers for one more replica"
            )
            return None

    def _spec(self, job: str, owner: str, body: dict[str, Any], info: ModelInfo) -> GenerateSpec:
        p = body["params"]
        s = p["sampling"]
        return GenerateSpec(
            job=job,
            model=body["model"],
            client=owner,
            prompt_tokens=body["prompt_tokens"],
            max_new_tokens=p["max_new_tokens"],
            temperature=float(s["temperature"]),
            top_k=int(s.get("top_k", 0)),
            top_p=float(s.get("top_p", 1.0)),
            seed=int(s["seed"]),
            stop_ids=tuple(p.get("stop_ids", ())),
            eos_ids=info.eos_ids,
            dtype=p.get("dtype", "float32"),
        )

    # ---- running ----------------------------------------------------------------------------
    async def _run(
        self,
        run: RunningJob,
        *,
        spec: GenerateSpec,
        info: ModelInfo,
        needs: JobNeeds,
        plan: JobPlan,
        offers: list[ProviderOffer],
    ) -> None:
        job = run.job
        in_plan = {pl.provider.pubkey for rep in plan.replicas for pl in rep}

        def make_replace(replica: list[Placement]) -> Callable[[Placement, set[str]], Placement]:
            def replace(failed: Placement, bad: set[str]) -> Placement:
                exclude = bad | in_plan | {pl.provider.pubkey for pl in replica}
                new = replacement(info.shape, needs, failed, offers, exclude)
                in_plan.add(new.provider.pubkey)
                return new

            return replace

        drivers = []
        for i, rep in enumerate(plan.replicas):
            placements = list(rep)
            drivers.append(
                ReplicaDriver(
                    spec,
                    i,
                    placements,
                    self.sk,
                    self.log,
                    make_replace(placements),
                    inputs=self._inputs_source(run),
                    on_token=self._on_token(run),
                    stage_timeout=self.stage_timeout,
                    max_reroutes=self.max_reroutes,
                )
            )
        run.drivers = drivers
        try:
            self.store.transition(job, ROLE, JobState.RUNNING, now=time.time())
            await self._progress(
                run, JobState.RUNNING, note=f"{plan.strategy} plan, {len(plan.replicas)} replica(s)"
            )
            results = await asyncio.gather(*(d.run() for d in drivers), return_exceptions=True)
            await self._finish(run, spec, results)
        except asyncio.CancelledError:
            self._terminal(job, JobState.CANCELLED, note="cancelled by the client")
            await self._result(
                run,
                JobState.CANCELLED,
                error={"code": int(ErrorCode.CANCELLED), "message": "cancelled"},
            )
        except Exception as exc:
            self.log.error("job.crashed", job=job, err=repr(exc))
            self._terminal(
                job, JobState.FAILED, error=repr(exc), error_code=int(ErrorCode.INTERNAL)
            )
            await self._result(
                run,
                JobState.FAILED,
                error={"code": int(ErrorCode.INTERNAL), "message": repr(exc)[:1000]},
            )
        finally:
            self.running.pop(job, None)
            self._release(run.owner)

    def _own(self, peer: JobPeer, job: str) -> Any:
        rec = self.store.find_job(job, ROLE)
        if rec is None:
            raise JobProtocolError(f"unknown job {job}", ErrorCode.UNKNOWN_JOB)
        if rec.owner != peer.peer_pubkey:
            raise JobProtocolError(f"job {job} belongs to another client", ErrorCode.FORBIDDEN)
        return rec

    async def _cancel(self, peer: JobPeer, msg: Message) -> None:
        job = msg.body_dict["job"]
        rec = self._own(peer, job)
        run = self.running.get(job)
        if run is not None and run.task is not None:  # acted on before the reply: a client
            run.task.cancel()  # that cancels and leaves at once is still obeyed
        elif not rec.terminal:
            self._terminal(job, JobState.CANCELLED, note="cancelled by the client")
        with contextlib.suppress(InfernetError):
            await peer.send("sys.ok", {"job": job}, re=msg.id)

    async def _status(self, peer: JobPeer, msg: Message) -> None:
        rec = self._own(peer, msg.body_dict["job"])
        run = self.running.get(rec.job)
        done = run.done_tokens if run is not None else int((rec.output or {}).get("count", 0))
        body: dict[str, Any] = {"job": rec.job, "state": rec.state.value, "done": done}
        if rec.plan is not None:
            body["plan"] = rec.plan
        if rec.error:
            body["note"] = rec.error[:1024]
        await peer.send("job.progress", body, re=msg.id)

    async def client_closed(self, peer: JobPeer) -> None:
        """The submitting client left: the job still runs to its end (job.status can ask)."""
        for run in self.running.values():
            if run.client is peer:
                run.client = None

    async def close(self) -> None:
        """Shutdown: cancel running jobs; each records a terminal state (spec/node.md)."""
        tasks = [r.task for r in self.running.values() if r.task is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    def recover(self) -> int:
        """At start-up, jobs left non-terminal by a crash are recorded as failed (5000)."""
        stale = self.store.list_jobs(
            role=ROLE,
            states={JobState.QUEUED, JobState.PLANNED, JobState.RUNNING, JobState.VERIFYING},
            limit=100000,
        )
        for rec in stale:
            self.store.transition(
                rec.job,
                ROLE,
                JobState.FAILED,
                now=time.time(),
                error="aggregator restarted while the job ran",
                error_code=int(ErrorCode.INTERNAL),
            )
        return len(stale)
