"""The asyncio node over real UDP on 127.0.0.1 (spec/dht.md §API): a small swarm with churn."""

from __future__ import annotations

import asyncio
import json
import random
import time

import pytest

from infernet_ref.dht import DHTConfig, DHTNode
from infernet_ref.errors import LocalProtocolError

from .helpers import content_record

pytestmark = pytest.mark.timeout(120)


async def _swarm(n: int, seed: int) -> list[DHTNode]:
    rng = random.Random(seed)
    cfg = DHTConfig(rate=5000, burst=10000)
    nodes = [await DHTNode.create(rng.randbytes(32), config=cfg)]
    for _ in range(n - 1):
        nodes.append(await DHTNode.create(rng.randbytes(32), config=cfg))
    await asyncio.gather(
        *(nd.bootstrap([nodes[rng.randrange(i)].address]) for i, nd in enumerate(nodes) if i)
    )
    return nodes


async def test_swarm_put_get_find_and_churn() -> None:
    nodes = await _swarm(40, 1)
    try:
        rng = random.Random(2)
        items = []
        for i in range(5):
            key, ev = content_record(
                rng.randbytes(32), cid="bafkrei" + "abcdefgh"[i] * 52, created_at=int(time.time())
            )
            res = await nodes[rng.randrange(40)].put(key, ev)
            assert res.stored >= 10
            items.append((key, ev))
        for key, ev in items:
            got = await nodes[rng.randrange(40)].get(key)
            assert [v["id"] for v in got] == [ev["id"]]
        target = nodes[17].node_id
        found = await nodes[3].find_node(target)
        assert found[0].node_id == target
        assert found[0].address == nodes[17].address
        ids = sorted(
            (nd.node_id for nd in nodes if nd is not nodes[3]),
            key=lambda x: int.from_bytes(x, "big") ^ int.from_bytes(target, "big"),
        )
        assert [c.node_id for c in found] == ids[:20]
        dead = set(rng.sample(range(1, 40), 12))  # 30 % killed without warning
        for i in dead:
            await nodes[i].close(graceful=False)
        alive = [nd for i, nd in enumerate(nodes) if i not in dead]
        for key, ev in items:
            res = await alive[rng.randrange(len(alive))].get_result(key)
            assert [v["id"] for v in res.values] == [ev["id"]]
            assert res.finished - res.started < 3.0  # dead contacts cost adaptive, not fixed, waits
    finally:
        for nd in nodes:
            await nd.close(graceful=False)


async def test_graceful_close_and_api_misuse() -> None:
    nodes = await _swarm(6, 3)
    leaver = nodes[2]
    await leaver.close()
    await asyncio.sleep(0.2)
    assert all(leaver.node_id not in nd.core.table for nd in nodes if nd is not leaver)
    with pytest.raises(LocalProtocolError):
        await nodes[0].get(b"short")
    with pytest.raises(LocalProtocolError):
        await leaver.find_node(bytes(32))
    key, ev = content_record(bytes([1]) * 32, created_at=int(time.time()))
    with pytest.raises(LocalProtocolError):
        await nodes[0].put(key, dict(ev, content="tampered"))
    for nd in nodes:
        await nd.close(graceful=False)


async def test_announcer_publishes_on_change_and_is_found_by_model() -> None:
    import copy

    from infernet_ref.dht.announce import Announcer
    from infernet_ref.dht.records import provider_key

    from .test_values import ANN

    nodes = await _swarm(12, 4)
    try:
        doc = copy.deepcopy(ANN)
        sk = bytes([9]) * 32
        ann = Announcer(nodes[1], sk, lambda: doc, interval=3600)
        assert await ann.check()
        assert not await ann.check()  # unchanged: nothing to do
        doc["uptime"] = 99
        assert not await ann.check()  # uptime alone is not a change
        doc["load"] = {"queue": 7, "free_kv_blocks": 3}
        assert await ann.check()
        got = await nodes[8].get(provider_key(doc["models"][0]["cid"]))
        assert len(got) == 1
        assert json.loads(got[0]["content"])["load"]["queue"] == 7
        assert any(t[0] == "expiration" for t in got[0]["tags"])
    finally:
        for nd in nodes:
            await nd.close(graceful=False)
