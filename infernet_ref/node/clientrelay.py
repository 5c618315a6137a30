"""Relaying a job's sealed data between its client and its replicas' stage-0 providers
(spec/job.md §Submission, §Failure and replay, §Encryption).

Theory of operation. The aggregator never opens what it relays. ``job.inputs`` is checked for
addressing only — sealed by the job's owner to the replica's current stage-0 provider — and
handed to that replica's driver: at once when it is waiting, else kept as the replica's first
inputs. When stage 0 must move, the driver asks through :meth:`ClientRelay._inputs_source`,
which sends the client ``job.replay`` and waits for the re-sealed history. Every replica's sealed
tokens go to the client as ``job.progress``, since the client needs them for such a replay.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from infernet_ref.errors import InfernetError
from infernet_ref.node.driver import ReplicaError
from infernet_ref.node.errors import ErrorCode, JobProtocolError
from infernet_ref.node.messages import Message
from infernet_ref.node.transport import JobPeer

if TYPE_CHECKING:
    from infernet_ref.node.aggregator import RunningJob


class ClientRelay:
    """``job.inputs``, ``job.replay`` and token progress of the :class:`Aggregator` (a mixin)."""

    running: dict[str, RunningJob]
    stage_timeout: float
    _own: Callable[[JobPeer, str], Any]  # the Aggregator's ownership check (4040, 4003)

    def _on_token(self, run: RunningJob) -> Callable[[int, int, dict[str, Any]], Awaitable[None]]:
        async def on_token(replica: int, index: int, sealed: dict[str, Any]) -> None:
            if replica == 0:
                run.done_tokens = index + 1
            if run.client is not None:  # every replica: the client needs them for a replay
                body = {
                    "job": run.job,
                    "state": "running",
                    "done": index + 1,
                    "tokens": sealed,
                    "replica": replica,
                }
                with contextlib.suppress(InfernetError):
                    await run.client.send("job.progress", body)

        return on_token

    def _inputs_source(
        self, run: RunningJob
    ) -> Callable[[int, str, int], Awaitable[dict[str, Any]]]:
        """The driver's ``inputs``: the client's first job.inputs, or a job.replay answered."""

        async def inputs(replica: int, key: str, generated: int) -> dict[str, Any]:
            first = run.initial.get(replica)
            if generated == 0 and first is not None and first["to"] == key:
                return first
            run.stage0[replica] = key
            fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
            run.waiting[replica] = fut
            try:
                if first is not None or generated:
                    if run.client is None:
                        raise ReplicaError(
                            "stage 0 moved and the client is not connected to re-seal its inputs",
                            ErrorCode.PROVIDER_FAILED,
                        )
                    body = {"job": run.job, "replica": replica, "provider": key}
                    await run.client.send("job.replay", {**body, "generated": generated})
                    try:  # an unanswered replay fails the job with 5001, first inputs with 4300
                        async with asyncio.timeout(self.stage_timeout):
                            return await fut
                    except TimeoutError:
                        raise ReplicaError(
                            "the client did not answer job.replay in time",
                            ErrorCode.PROVIDER_FAILED,
                        ) from None
                async with asyncio.timeout(self.stage_timeout):
                    return await fut
            finally:
                run.waiting.pop(replica, None)

        return inputs

    def _inputs(self, peer: JobPeer, msg: Message) -> None:
        """job.inputs: checked for addressing, handed unopened to the replica's driver."""
        b = msg.body_dict
        rec = self._own(peer, b["job"])
        run = self.running.get(rec.job)
        replica, sealed = b["replica"], b["inputs"]
        if run is None or replica not in run.stage0:
            raise JobProtocolError(
                f"job {rec.job} has no replica {replica} running", ErrorCode.INVALID_STATE
            )
        if sealed["to"] != run.stage0[replica] or sealed["from"] != run.owner:
            raise JobProtocolError(
                "inputs must be sealed by the job's owner to the replica's stage-0 provider",
                ErrorCode.FORBIDDEN,
            )
        fut = run.waiting.get(replica)
        if fut is not None and not fut.done():
            fut.set_result(sealed)
            run.initial.setdefault(replica, sealed)
        elif replica not in run.initial:
            run.initial[replica] = sealed
        else:
            raise JobProtocolError(
                f"replica {replica} is not waiting for inputs", ErrorCode.INVALID_STATE
            )
