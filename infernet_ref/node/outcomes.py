"""How a job ends at the aggregator (spec/job.md §Result hash and verification, the job state
machine).

Theory of operation. When every replica has finished, their result hashes are compared
(:func:`~infernet_ref.node.verify.compare`), each provider's outcome goes into its reputation
record (results, mismatches, failures), the job moves to its terminal state in one persisted
transition (through ``verifying`` with redundancy), and exactly one ``job.result`` goes to the
client — its output still sealed by the winning replica's stage-0 provider.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from infernet_ref.errors import InfernetError
from infernet_ref.node.driver import GenerateSpec, ReplicaResult, StageFailed
from infernet_ref.node.errors import ErrorCode, JobProtocolError, PlanningError
from infernet_ref.node.jobstate import JobState
from infernet_ref.node.log import JsonLog
from infernet_ref.node.store import Store
from infernet_ref.node.transport import PeerClosed
from infernet_ref.node.verify import compare

if TYPE_CHECKING:
    from infernet_ref.node.aggregator import RunningJob

ROLE = "aggregator"


class JobOutcomes:
    """Verification, terminal states and ``job.result`` of the :class:`Aggregator` (a mixin)."""

    store: Store
    log: JsonLog

    async def _finish(self, run: RunningJob, spec: GenerateSpec, results: list[Any]) -> None:
        job = run.job
        now = time.time()
        failures = [r for r in results if isinstance(r, BaseException)]
        done = [r for r in results if isinstance(r, ReplicaResult)]
        for d in run.drivers:
            for key in d.failed_providers:
                self.store.peer_outcome(key, ok=False, now=now)
        if failures:
            first = failures[0]
            code = (
                first.error_code
                if isinstance(first, JobProtocolError)
                else ErrorCode.PROVIDER_FAILED
                if isinstance(first, StageFailed | PlanningError)
                else ErrorCode.INTERNAL
            )
            self._terminal(job, JobState.FAILED, error=str(first), error_code=int(code))
            await self._result(
                run, JobState.FAILED, error={"code": int(code), "message": str(first)[:1000]}
            )
            return
        hashes = [r.output_sha256 for r in done]
        for i, (d, h) in enumerate(zip(run.drivers, hashes, strict=True)):
            self.store.record_result(job, i, h, d.used_providers, now=now)
        v = compare(hashes, [d.placements_keys() for d in run.drivers])
        majority, winner, mismatched, verdict = v.majority, v.winner, list(v.mismatched), v.verdict
        for d in run.drivers:
            for key in d.placements_keys():
                bad = key in mismatched  # verify.compare names who is at fault
                self.store.peer_outcome(key, ok=True, now=now, result=not bad, mismatch=bad)
        verification = v.to_wire()
        plan = self.store.get_job(job, ROLE).plan
        if plan is not None and plan.get("sampled"):
            verification["sampled"] = True
        if verdict == "mismatch":
            self.log.warning(
                "job.verification_mismatch", job=job, hashes=hashes, mismatched=mismatched
            )
        output = done[winner]
        reroutes = sum(d.reroutes for d in run.drivers)
        self.store.transition(
            job,
            ROLE,
            JobState.VERIFYING if len(hashes) > 1 else JobState.COMPLETED,
            now=now,
            output={"count": output.count, "sealed": output.output, "finish": output.finish},
            output_sha256=majority,
            verification=verification,
            reroutes=reroutes,
        )
        if len(hashes) > 1:
            self.store.transition(job, ROLE, JobState.COMPLETED, now=time.time(), note=verdict)
        providers = sorted({k for d in run.drivers for k in d.used_providers})
        await self._result(
            run,
            JobState.COMPLETED,
            output=output,
            sha=majority,
            verification=verification,
            providers=providers,
            plan=plan,
            reroutes=reroutes,
        )
        self.log.info(
            "job.completed",
            job=job,
            tokens=output.count,
            sha256=majority,
            verdict=verdict,
            reroutes=reroutes,
            **run.drivers[0].timing(),
        )

    def _terminal(self, job: str, state: JobState, **fields: Any) -> None:
        rec = self.store.find_job(job, ROLE)
        if rec is not None and not rec.terminal:
            note = fields.pop("note", None)
            self.store.transition(job, ROLE, state, now=time.time(), note=note, **fields)

    async def _progress(self, run: RunningJob, state: JobState, *, note: str | None = None) -> None:
        if run.client is None:
            return
        body: dict[str, Any] = {"job": run.job, "state": state.value, "done": run.done_tokens}
        if note:
            body["note"] = note
        with contextlib.suppress(InfernetError):
            await run.client.send("job.progress", body)

    async def _result(
        self,
        run: RunningJob,
        state: JobState,
        *,
        output: ReplicaResult | None = None,
        sha: str | None = None,
        verification: dict[str, Any] | None = None,
        providers: list[str] | None = None,
        plan: dict[str, Any] | None = None,
        reroutes: int = 0,
        error: dict[str, Any] | None = None,
    ) -> None:
        if run.client is None:
            return
        body: dict[str, Any] = {"job": run.job, "state": state.value, "reroutes": reroutes}
        if output is not None:
            body.update(output=output.output, output_sha256=sha, tokens=output.count)
        for k, v in (
            ("verification", verification),
            ("providers", providers),
            ("plan", plan),
            ("error", error),
        ):
            if v is not None:
                body[k] = v
        with contextlib.suppress(InfernetError, PeerClosed):
            await run.client.send("job.result", body)

    # ---- cancel / status --------------------------------------------------------------------
