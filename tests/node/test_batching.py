"""Continuous batching across sessions (spec/node-worker.md ``stage.forward_batch``): a batched
decode step gives every session what it would get alone — transformers' greedy tokens are the
oracle — a refused batch changes no session, and concurrent jobs on one provider share forwards."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import hf_greedy
from test_swarm import one_provider

from infernet_ref.node.client import submit_job
from infernet_ref.node.daemon import Node
from infernet_ref.node.sandbox import InProcessExecutor, WorkerError, WorkerSpec
from infernet_ref.node.worker import join_batch, split_batch
from infernet_ref.nostr import generate_secret_key
from infernet_ref.runtime.frames import ActivationFrame, decode_frame, encode_frame

PROMPTS = {"a": [1, 2, 3, 4, 5, 6], "b": [7, 8, 9], "c": [11, 12, 13, 14]}


def frame(session: str, pos: int, ids: list[int]) -> bytes:
    return encode_frame(ActivationFrame(session, pos, "input_ids", torch.tensor(ids)))


async def test_batched_decode_equals_transformers_and_refusals_change_nothing(
    tiny_model: Any,
) -> None:
    path, model, _ = tiny_model
    w = await InProcessExecutor(allow_in_process=True).start(WorkerSpec(model_dir=path))
    try:
        out: dict[str, list[int]] = {}
        for s, prompt in PROMPTS.items():  # prefills alone, sampling in the worker
            await w.request({"op": "stage.open", "session": s, "max_tokens": 32})
            greedy = {"sample_index": 0, "temperature": 0, "seed": 0}
            reply, _ = await w.request(
                {"op": "stage.forward", "session": s, **greedy}, frame(s, 0, prompt)
            )
            out[s] = [reply["token"]]
        with pytest.raises(WorkerError) as info:  # one bad member: nothing runs
            await w.request(
                {"op": "stage.forward_batch", "sessions": ["a", "zz"]},
                join_batch([frame("a", 6, [out["a"][-1]]), frame("zz", 0, [1])]),
            )
        assert info.value.error_code == "unknown_session"
        for step in range(1, 8):
            names = list(PROMPTS)
            samples = [{"sample_index": step, "temperature": 0, "seed": 0} for _ in names]
            payload = join_batch(
                [frame(s, len(PROMPTS[s]) + step - 1, [out[s][-1]]) for s in names]
            )
            reply, rest = await w.request(
                {"op": "stage.forward_batch", "sessions": names, "samples": samples}, payload
            )
            assert rest == b""
            for s, tok in zip(names, reply["tokens"], strict=True):
                out[s].append(tok)
        for s, prompt in PROMPTS.items():
            assert out[s] == hf_greedy(model, prompt, 8), s
    finally:
        await w.close()


async def test_batched_hidden_states_equal_single_forwards(tiny_model: Any) -> None:
    path, _, _ = tiny_model
    ex = InProcessExecutor(allow_in_process=True)
    one = await ex.start(WorkerSpec(model_dir=path, layer_end=2))
    many = await ex.start(WorkerSpec(model_dir=path, layer_end=2))
    try:
        singles = []
        for s, prompt in PROMPTS.items():
            for w in (one, many):
                await w.request({"op": "stage.open", "session": s, "max_tokens": 32})
                await w.request({"op": "stage.forward", "session": s}, frame(s, 0, prompt))
            _, data = await one.request(
                {"op": "stage.forward", "session": s}, frame(s, len(prompt), [5])
            )
            singles.append(decode_frame(data))
        _, payload = await many.request(
            {"op": "stage.forward_batch", "sessions": list(PROMPTS)},
            join_batch([frame(s, len(p), [5]) for s, p in PROMPTS.items()]),
        )
        batched = [decode_frame(d) for d in split_batch(payload, len(PROMPTS))]
        for a, b in zip(singles, batched, strict=True):
            assert (a.session, a.position, a.kind) == (b.session, b.position, b.kind)
            torch.testing.assert_close(a.tensor, b.tensor, atol=1e-5, rtol=1e-5)
    finally:
        await one.close()
        await many.close()


async def test_concurrent_jobs_share_forwards(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    path, model, cid = tiny_model
    prov, agg = await one_provider(tmp_path, path, cid, no_nodes)
    assert prov.provider is not None
    worker_call = prov.provider._worker_call

    async def slow_call(*args: Any) -> Any:  # 20 ms a forward: the jobs' steps surely overlap
        await asyncio.sleep(0.02)
        return await worker_call(*args)

    prov.provider._worker_call = slow_call  # type: ignore[method-assign]
    outs = await asyncio.gather(
        *(
            submit_job(
                agg.endpoint, generate_secret_key(), model=cid, prompt_ids=p, max_new_tokens=12
            )
            for p in PROMPTS.values()
        )
    )
    for out, prompt in zip(outs, PROMPTS.values(), strict=True):
        assert out.state == "completed", out.error
        assert out.tokens == hf_greedy(model, prompt, 12)
    batchers = list(prov.provider._batchers.values())
    assert sum(b.batches for b in batchers) >= 1  # the jobs' decode steps did share forwards
    assert sum(b.batched_steps for b in batchers) >= 2 * sum(b.batches for b in batchers)


async def test_batcher_groups_respect_the_limit_and_kind() -> None:
    from infernet_ref.node.batching import Batcher

    sent: list[dict[str, Any]] = []
    gate = asyncio.Event()

    async def call(req: dict[str, Any], payload: bytes) -> tuple[dict[str, Any], bytes]:
        sent.append(req)
        if len(sent) == 1:
            await gate.wait()  # the first step holds the worker while the others queue
        if req["op"] == "stage.forward_batch":
            n = len(req["sessions"])
            if "samples" in req:
                return {"tokens": list(range(n)), "seconds": 0.0}, b""
            return {"seconds": 0.0}, join_batch([b"x"] * n)
        return {"session": req["session"], "token": 7}, b""

    b = Batcher(call, max_batch=2)
    greedy = {"sample_index": 0, "temperature": 0, "seed": 0}
    first = asyncio.create_task(b.step("s0", b"p", 1, greedy))
    await asyncio.sleep(0)
    rest = [
        asyncio.create_task(b.step("s1", b"p", 1, greedy)),
        asyncio.create_task(b.step("s2", b"p", 1, greedy)),
        asyncio.create_task(b.step("s3", b"p", 5, greedy)),  # a prefill: alone
        asyncio.create_task(b.step("s4", b"p", 1, None)),  # another kind: not mixed
        asyncio.create_task(b.step("s5", b"p", 1, greedy)),
    ]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(first, *rest)
    shapes = [req.get("sessions", [req.get("session")]) for req in sent]
    assert shapes == [["s0"], ["s1", "s2"], ["s3"], ["s4"], ["s5"]]
    assert (b.batches, b.batched_steps) == (1, 2)
