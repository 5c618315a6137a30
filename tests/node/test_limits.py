"""Per-client admission limits (spec/job.md §Submission, 4008): the pure token bucket, and a
live aggregator refusing a flooding client while serving another."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from test_swarm import one_provider

from infernet_ref.node.client import submit_job
from infernet_ref.node.daemon import Node
from infernet_ref.node.limits import ClientLimits
from infernet_ref.nostr import generate_secret_key


def test_bucket_burst_refill_and_active_cap() -> None:
    lim = ClientLimits(per_minute=3, max_active=2)
    assert [lim.admit("a", 0, 0.0) for _ in range(3)] == [None, None, None]
    refused = lim.admit("a", 0, 0.0)
    assert refused is not None
    assert "retry in 20.0 s" in refused  # one token comes back every 20 s
    assert lim.admit("b", 0, 0.0) is None  # other keys are not affected
    assert lim.admit("a", 0, 19.9) is not None
    assert lim.admit("a", 0, 20.0) is None
    assert lim.admit("a", 2, 3600.0) is not None  # two running already
    assert lim.admit("a", 1, 3600.0) is None


def test_the_table_stays_bounded() -> None:
    lim = ClientLimits(per_minute=1, max_active=1, max_clients=50)
    for i in range(1000):
        assert lim.admit(f"k{i}", 0, float(i)) is None  # each key once; old ones refilled
        assert len(lim._buckets) <= 50
    busy = ClientLimits(per_minute=1, max_active=1, max_clients=10)
    for i in range(100):  # every bucket empty (same instant): the table still does not grow
        busy.admit(f"k{i}", 0, 0.0)
        assert len(busy._buckets) <= 10


async def test_aggregator_refuses_a_flooding_client(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    path, _, cid = tiny_model
    _, agg = await one_provider(
        tmp_path, path, cid, no_nodes, submits_per_minute=3, max_active_jobs_per_client=1
    )
    flood, other = generate_secret_key(), generate_secret_key()
    kw: dict[str, Any] = {"model": cid, "prompt_ids": [1, 2, 3], "max_new_tokens": 3}
    # two at once from one key: one runs, the other is refused (one active job per client)
    both = await asyncio.gather(
        submit_job(agg.endpoint, flood, **kw), submit_job(agg.endpoint, flood, **kw)
    )
    states = sorted(o.state for o in both)
    assert states == ["completed", "rejected"], [o.error for o in both]
    refused = next(o for o in both if o.state == "rejected")
    assert refused.error is not None
    assert refused.error["code"] == 4008
    assert agg.store.find_job(refused.job, "aggregator") is None  # never accepted: not stored
    # a refusal takes no token: two more fit the bucket (3 a minute), the next is refused
    for _ in range(2):
        assert (await submit_job(agg.endpoint, flood, **kw)).state == "completed"
    fourth = await submit_job(agg.endpoint, flood, **kw)
    assert fourth.state == "rejected"
    assert fourth.error is not None
    assert fourth.error["code"] == 4008
    assert (await submit_job(agg.endpoint, other, **kw)).state == "completed"


async def test_client_allow_list_keeps_the_prompt_from_other_providers(
    tmp_path: Path, tiny_model: Any, no_nodes: list[Node]
) -> None:
    """spec/job.md §Encryption: a client that restricts the keys it seals to cancels a job whose
    plan names another stage-0 provider, and the prompt never leaves it."""
    path, _, cid = tiny_model
    prov, agg = await one_provider(tmp_path, path, cid, no_nodes)
    kw: dict[str, Any] = {"model": cid, "prompt_ids": [1, 2, 3], "max_new_tokens": 3}
    out = await submit_job(agg.endpoint, generate_secret_key(), allow_providers=["ab" * 32], **kw)
    assert out.state == "failed"
    assert out.error is not None
    assert out.error["code"] == 4003
    assert prov.provider is not None
    assert not prov.provider.sessions
    for _ in range(100):  # the aggregator records the cancel
        rec = agg.store.find_job(out.job, "aggregator")
        if rec is not None and rec.terminal:
            break
        await asyncio.sleep(0.05)
    assert rec is not None
    assert rec.state.value == "cancelled"
    ok = await submit_job(agg.endpoint, generate_secret_key(), allow_providers=[prov.pubkey], **kw)
    assert ok.state == "completed", ok.error
