"""Provider records in a loopback DHT, then a fetch from the providers found there."""

from __future__ import annotations

import asyncio
from pathlib import Path

from content_streams import MIB, gen_bytes

from infernet_ref.content.builder import build_path
from infernet_ref.content.exchange import ExchangeClient, serve_content
from infernet_ref.content.providers import (
    ContentAnnouncer,
    find_providers,
    provider_record,
    record_endpoint,
)
from infernet_ref.content.store import BlockStore
from infernet_ref.dht import DHTNode
from infernet_ref.nostr import generate_secret_key

HELLO = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"


def test_record_checks() -> None:
    sk = generate_secret_key()
    rec = provider_record(sk, HELLO, "ws://127.0.0.1:1/content", now=1_700_000_000)
    assert record_endpoint(rec, HELLO) == "ws://127.0.0.1:1/content"
    assert (
        record_endpoint(rec, "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku") is None
    )
    forged = dict(rec, tags=[["d", HELLO], ["endpoint", "ws://evil:1/content"]])
    assert record_endpoint(forged, HELLO) is None
    assert record_endpoint({"kind": 38201}, HELLO) is None
    bad_url = provider_record(sk, HELLO, "http://x:1/", now=1_700_000_000)
    assert record_endpoint(bad_url, HELLO) is None


async def test_announce_find_fetch(tmp_path: Path) -> None:
    data = gen_bytes(2 * MIB + 3)
    store = BlockStore(tmp_path / "s", fsync=False)
    (tmp_path / "f").write_bytes(data)
    root = build_path(tmp_path / "f", store.put).cid
    srv, _ = await serve_content(store)
    endpoint = f"ws://127.0.0.1:{srv.port}/content"
    boot = await DHTNode.create(generate_secret_key())
    nodes = [boot]
    for _ in range(3):
        nodes.append(await DHTNode.create(generate_secret_key(), bootstrap=[boot.address]))
    try:
        ann = ContentAnnouncer(nodes[1], generate_secret_key(), endpoint, interval=0.2)
        await ann.announce(root)
        ann.start()
        await asyncio.sleep(0.5)  # at least one re-announcement with a fresh created_at
        await ann.stop()
        found = await find_providers(nodes[3], root)
        assert found == [endpoint]
        dst = BlockStore(tmp_path / "d", fsync=False)
        async with ExchangeClient(found, store=dst) as client:
            await client.fetch_dag(root)
        assert len(dst) == len(store)
    finally:
        for n in nodes:
            await n.close()
        await srv.close()
