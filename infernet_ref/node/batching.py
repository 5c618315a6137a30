"""Continuous batching of stage steps across sessions on one worker (spec/node-worker.md
``stage.forward_batch``).

Theory of operation. Every step a provider runs on a worker goes through that worker's
:class:`Batcher`. While one call is in flight the steps of other sessions queue up; when it
returns, every queued one-token step (decode) of the same kind — sampled by the worker or not —
goes out as one ``stage.forward_batch``, so concurrent jobs share each forward the way
continuous batching does. Multi-token steps (prefills) run alone. A refused batch changes no
session (the worker checks every frame first), so its steps are retried one by one and each gets
its own answer. The first step after an idle period never waits for company.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from infernet_ref.node.errors import JobProtocolError

#: Steps in one batched forward at most (the worker schema allows 64).
MAX_BATCH = 16

#: (worker request header, payload) -> (reply header, reply payload); raises JobProtocolError.
Call = Callable[[dict[str, Any], bytes], Awaitable[tuple[dict[str, Any], bytes]]]


@dataclass
class _Step:
    session: str
    payload: bytes
    tokens: int
    sample: dict[str, Any] | None
    done: asyncio.Future[tuple[dict[str, Any], bytes]]


@dataclass
class Batcher:
    call: Call
    max_batch: int = MAX_BATCH
    queue: list[_Step] = field(default_factory=list)
    batches: int = 0  # batched forwards sent
    batched_steps: int = 0  # steps that went in them
    _task: asyncio.Task[None] | None = None

    async def step(
        self, session: str, payload: bytes, tokens: int, sample: dict[str, Any] | None
    ) -> tuple[dict[str, Any], bytes]:
        """Run one step of ``session`` (alone or in a batch); the worker's reply for it."""
        done: asyncio.Future[tuple[dict[str, Any], bytes]] = (
            asyncio.get_running_loop().create_future()
        )
        self.queue.append(_Step(session, payload, tokens, sample, done))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await done

    def _take(self) -> list[_Step]:
        first = self.queue[0]
        group = [first]
        if first.tokens == 1:
            seen = {first.session}
            for s in self.queue[1:]:
                if len(group) >= self.max_batch:
                    break
                same_kind = (s.sample is None) == (first.sample is None)
                if s.tokens == 1 and same_kind and s.session not in seen:
                    group.append(s)
                    seen.add(s.session)
        for s in group:
            self.queue.remove(s)
        return group

    async def _drain(self) -> None:
        while self.queue:
            group = self._take()
            try:
                if len(group) == 1:
                    await self._alone(group[0])
                else:
                    await self._together(group)
            except BaseException as exc:  # every waiter must learn the outcome
                for s in group:
                    if not s.done.done():
                        s.done.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise

    async def _alone(self, s: _Step) -> None:
        req: dict[str, Any] = {"op": "stage.forward", "session": s.session, **(s.sample or {})}
        try:
            s.done.set_result(await self.call(req, s.payload))
        except JobProtocolError as exc:
            s.done.set_exception(exc)

    async def _together(self, group: list[_Step]) -> None:
        from infernet_ref.node.worker import join_batch, split_batch  # noqa: PLC0415

        req: dict[str, Any] = {"op": "stage.forward_batch", "sessions": [s.session for s in group]}
        if group[0].sample is not None:
            req["samples"] = [s.sample for s in group]
        try:
            header, payload = await self.call(req, join_batch([s.payload for s in group]))
        except JobProtocolError:
            for s in group:  # nothing ran: each step alone gets its own answer
                await self._alone(s)
            return
        self.batches += 1
        self.batched_steps += len(group)
        tokens = header.get("tokens")
        outs = [b""] * len(group) if tokens is not None else split_batch(payload, len(group))
        for i, s in enumerate(group):
            reply = {"session": s.session, "seconds": header.get("seconds", 0.0)}
            if tokens is not None:
                reply["token"] = tokens[i]
            s.done.set_result((reply, outs[i]))
