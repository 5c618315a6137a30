"""Exchange: sans-I/O sessions, and client/server over real WebSockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest
from content_streams import MIB, gen_bytes
from hypothesis import given, settings
from hypothesis import strategies as st

from infernet_ref.content.builder import build_path
from infernet_ref.content.cid import CID, Codec
from infernet_ref.content.errors import ExchangeError, FetchError, HashMismatch
from infernet_ref.content.exchange import ContentServer, ExchangeClient, serve_content
from infernet_ref.content.exchange.session import (
    ClientSession,
    DontHaveReceived,
    Fatal,
    SendText,
    ServerSession,
)
from infernet_ref.content.exchange.wire import (
    WantEntry,
    decode_block_frame,
    encode_block_frame,
    encode_want,
)
from infernet_ref.content.rangefetch import read_range
from infernet_ref.content.reader import export_to_path
from infernet_ref.content.store import BlockStore
from infernet_ref.ws import WebSocket, serve

A = CID.for_block(Codec.RAW, b"a")
B = CID.for_block(Codec.RAW, b"b")
C = CID.for_block(Codec.RAW, b"c")


def test_server_session_priority_order_replace_cancel() -> None:
    s = ServerSession()
    assert (
        s.receive_text(encode_want("1", [WantEntry(A, 1), WantEntry(B, 5), WantEntry(C, 5)])) == []
    )
    s.receive_text(encode_want("2", [WantEntry(A, 9)]))  # replace: A now first
    s.receive_text(
        json.dumps({"v": 1, "type": "content.cancel", "id": "3", "body": {"cids": [str(C)]}})
    )
    assert [s.next_want().cid for _ in range(2)] == [A, B]  # type: ignore[union-attr]
    assert s.next_want() is None


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"v":1,"type":"content.want","id":"x","body":{}}',
        '{"v":1,"type":"content.want","id":"x","body":{"entries":[{"cid":"bafy"}]}}',
        '{"v":1,"type":"content.want","id":"x","body":{"entries":[{"cid":"bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e","priority":-1}]}}',
    ],
)
def test_server_session_refuses_malformed(text: str) -> None:
    evs = ServerSession().receive_text(text)
    assert len(evs) == 1
    assert isinstance(evs[0], Fatal)
    assert '"code":4400' in evs[0].text


def test_server_session_limits() -> None:
    s = ServerSession(max_wants=3)
    too_many = [WantEntry(CID.for_block(Codec.RAW, bytes([i])), 1) for i in range(4)]
    evs = s.receive_text(encode_want("1", too_many))
    assert isinstance(evs[0], Fatal)
    assert '"code":4413' in evs[0].text
    entries = [{"cid": str(A)}] * 1025
    evs = ServerSession().receive_text(
        json.dumps({"v": 1, "type": "content.want", "id": "x", "body": {"entries": entries}})
    )
    assert isinstance(evs[0], Fatal)
    assert '"code":4413' in evs[0].text
    evs = ServerSession().receive_text('{"v":1,"type":"content.frobnicate","id":"x","body":{}}')
    assert isinstance(evs[0], SendText)
    assert '"code":4415' in evs[0].text


@given(st.text(max_size=300))
@settings(max_examples=200, deadline=None)
def test_server_session_fuzz(text: str) -> None:
    for ev in ServerSession().receive_text(text):
        assert isinstance(ev, SendText | Fatal)


@given(st.binary(max_size=300))
@settings(max_examples=200, deadline=None)
def test_client_block_frame_fuzz(data: bytes) -> None:
    c = ClientSession()
    c.want([WantEntry(A)])
    with contextlib.suppress(ExchangeError, HashMismatch):
        c.receive_block(data)


def test_client_session_verifies() -> None:
    c = ClientSession()
    c.want([WantEntry(A), WantEntry(B)])
    with pytest.raises(HashMismatch):
        c.receive_block(encode_block_frame(A, b"x"))
    ev = c.receive_block(encode_block_frame(A, b"a"))
    assert ev is not None
    assert ev.data == b"a"
    with pytest.raises(ExchangeError, match="unsolicited"):
        c.receive_block(encode_block_frame(A, b"a"))  # no longer wanted
    c.cancel([B])
    assert (
        c.receive_block(encode_block_frame(B, b"b")) is None
    )  # late block after cancel: discarded
    c.want([WantEntry(C)])
    (ev2,) = c.receive_text(
        f'{{"v":1,"type":"content.dont_have","id":"s","body":{{"cids":["{C}"]}}}}'
    )
    assert isinstance(ev2, DontHaveReceived)
    assert ev2.cids == (C,)
    cid, view = decode_block_frame(encode_block_frame(A, b"a"))
    assert cid == A
    assert bytes(view) == b"a"


def _source(tmp_path: Path, name: str, data: bytes) -> tuple[BlockStore, CID, Path]:
    store = BlockStore(tmp_path / f"store-{name}", fsync=False)
    d = tmp_path / f"src-{name}"
    d.mkdir()
    (d / "weights.bin").write_bytes(data)
    (d / "config.json").write_text('{"a": 1}')
    root = build_path(d, store.put).cid
    store.pin(root)
    return store, root, d


@pytest.mark.parametrize("offload", [False, True], ids=["inline", "threads"])
async def test_fetch_from_three_providers_and_export(tmp_path: Path, offload: bool) -> None:
    data = gen_bytes(9 * MIB + 123)
    servers = []
    for i in range(3):
        store, root, _src = _source(tmp_path, str(i), data)
        srv, _cs = await serve_content(store, offload=offload)
        servers.append(srv)
    urls = [f"ws://127.0.0.1:{s.port}/content" for s in servers]
    dst = BlockStore(tmp_path / "dst", fsync=False)
    seen: list[int] = []
    async with ExchangeClient(urls, store=dst, window=4, offload=offload) as client:
        stats = await client.fetch_dag(root, progress=seen.append)
    assert sum(seen) == len(data) + 8
    assert stats.blocks_fetched == 13
    assert len(stats.per_provider) >= 2  # the load was spread
    export_to_path(dst, root, tmp_path / "out")
    assert (tmp_path / "out" / "weights.bin").read_bytes() == data
    for s in servers:
        await s.close()


async def test_bad_provider_dropped_and_reported(tmp_path: Path) -> None:
    data = gen_bytes(3 * MIB)
    good_store, root, _ = _source(tmp_path, "good", data)
    good, _ = await serve_content(good_store)
    evil_store, _, _ = _source(tmp_path, "evil", data)

    class Evil(ContentServer):
        def _load(self, cid: CID) -> tuple[bytearray, int] | None:
            loaded = super()._load(cid)
            if loaded is not None:
                loaded[0][-1] ^= 1  # flip a bit of the block after it was verified
            return loaded

    evil_cs = Evil(evil_store)
    evil = await serve(evil_cs.handle, compression=False, max_message_size=4 * MIB)
    reports: list[tuple[str, str]] = []
    dst = BlockStore(tmp_path / "dst", fsync=False)
    urls = [f"ws://127.0.0.1:{evil.port}/content", f"ws://127.0.0.1:{good.port}/content"]
    async with ExchangeClient(
        urls, store=dst, on_bad_peer=lambda u, r: reports.append((u, r))
    ) as client:
        await client.fetch_dag(root)
    assert reports
    assert reports[0][0] == urls[0]
    assert "hash" in reports[0][1]
    assert dst.verify().ok
    assert len(dst) == len(good_store)
    await good.close()
    await evil.close()


async def test_unknown_cid_dont_have_then_fetch_error(tmp_path: Path) -> None:
    store, _root, _ = _source(tmp_path, "s", b"x" * 100)
    srv, cs = await serve_content(store)
    async with ExchangeClient([f"ws://127.0.0.1:{srv.port}/content"]) as client:
        with pytest.raises(FetchError, match="no provider has"):
            await client.get_block(CID.for_block(Codec.RAW, b"nobody has this"))
    assert cs.stats.dont_have == 1
    await srv.close()


async def test_resume_keeps_verified_blocks(tmp_path: Path) -> None:
    data = gen_bytes(6 * MIB)
    store, root, _ = _source(tmp_path, "s", data)
    srv, cs = await serve_content(store)
    url = f"ws://127.0.0.1:{srv.port}/content"
    dst = BlockStore(tmp_path / "dst", fsync=False)
    async with ExchangeClient([url], store=dst, window=1) as client:
        three = asyncio.Event()
        leaves: list[int] = []

        def progress(n: int) -> None:
            leaves.append(n)
            if len(leaves) >= 3:
                three.set()

        task = asyncio.create_task(client.fetch_dag(root, progress=progress, concurrency=1))
        await asyncio.wait_for(three.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not client._requests  # interrupted wants were cancelled ...
        assert not any(p.session.inflight for p in client.providers.values())  # ... on the wire too
    have = len(dst)
    # a stored block that rotted on disk is dropped and fetched again, not trusted
    rotten = next(c for c in dst.cids() if c.codec == Codec.RAW)
    next((tmp_path / "dst" / "blocks").rglob(str(rotten))).write_bytes(b"bit rot")
    have -= 1
    sent_before = cs.stats.blocks_sent
    async with ExchangeClient([url], store=dst) as client:
        stats = await client.fetch_dag(root)
    assert stats.blocks_local >= have - 1
    assert len(dst) == len(store)
    assert cs.stats.blocks_sent - sent_before == len(store) - have
    assert dst.verify().ok
    await srv.close()


async def test_range_over_network_touches_only_needed_blocks(tmp_path: Path) -> None:
    data = gen_bytes(8 * MIB)
    store, root, _ = _source(tmp_path, "s", data)
    srv, cs = await serve_content(store)
    from infernet_ref.content.reader import resolve_path

    wcid = resolve_path(store, root, "weights.bin")
    async with ExchangeClient([f"ws://127.0.0.1:{srv.port}/content"]) as client:
        got = await read_range(wcid, 3 * MIB - 5, 4 * MIB + 5, client)
    assert got == data[3 * MIB - 5 : 4 * MIB + 5]
    assert cs.stats.blocks_sent == 4  # root + 3 leaves
    await srv.close()


async def test_server_survives_disconnect_mid_transfer(tmp_path: Path) -> None:
    """A third-party client (the `websockets` library) asks for everything, then vanishes."""
    from websockets.asyncio.client import connect

    data = gen_bytes(8 * MIB)
    store, root, _ = _source(tmp_path, "s", data)
    srv, _cs = await serve_content(store)
    url = f"ws://127.0.0.1:{srv.port}/content"
    leaves = [c for c in store.cids() if c.codec == Codec.RAW]
    ws = await connect(url, compression=None, max_size=4 * MIB, subprotocols=["infernet.v1"])  # type: ignore[list-item]
    await ws.send(encode_want("1", [WantEntry(c) for c in leaves]))
    first = await ws.recv()
    assert isinstance(first, bytes)
    assert decode_block_frame(first)[0] in leaves
    ws.transport.abort()
    dst = BlockStore(tmp_path / "dst", fsync=False)
    async with ExchangeClient([url], store=dst) as client:
        await client.fetch_dag(root)
    assert len(dst) == len(store)
    await srv.close()


async def test_served_handler_on_node_path(tmp_path: Path) -> None:
    """ContentServer.handle mounts on any WebSocket server (a node's /content path)."""
    store, root, _ = _source(tmp_path, "s", b"hello")
    cs = ContentServer(store)

    async def handler(ws: WebSocket) -> None:
        await cs.handle(ws)

    srv = await serve(handler, compression=False)
    async with ExchangeClient([f"ws://127.0.0.1:{srv.port}/anything"]) as client:
        assert await client.get_block(root) == store.get(root)
    await srv.close()


@given(
    st.one_of(
        st.dictionaries(
            st.sampled_from(["cid", "size", "x"]),
            st.one_of(
                st.integers(-5, 3 * MIB), st.text(max_size=70), st.booleans(), st.just(str(A))
            ),
        ),
        st.fixed_dictionaries({"cid": st.just(str(A)), "size": st.integers(-1, 2 * MIB + 1)}),
    )
)
@settings(max_examples=300, deadline=None)
def test_block_header_fast_check_equals_schema(header: dict[str, object]) -> None:
    from infernet_ref.content.errors import ContentError
    from infernet_ref.content.exchange.wire import check_block_header
    from infernet_ref.errors import InfernetError
    from infernet_ref.specs import validate_data

    try:
        validate_data(header, "content-block-header")
        schema_ok = True
    except InfernetError:
        schema_ok = False
    try:
        check_block_header(header)
        fast_ok = True
    except ContentError:
        fast_ok = False
    if schema_ok and not fast_ok:
        # the schema checks the Cid *pattern*; the fast path also parses it (stricter)
        from infernet_ref.content.cid import parse_cid

        with pytest.raises(ContentError):
            parse_cid(str(header["cid"]))
    else:
        assert schema_ok == fast_ok


async def test_scheduler_prefers_the_faster_provider(tmp_path: Path) -> None:
    import time as _time

    data = gen_bytes(24 * MIB)
    fast_store, root, _ = _source(tmp_path, "fast", data)
    slow_store, _, _ = _source(tmp_path, "slow", data)

    class Slow(ContentServer):
        def _load(self, cid: CID) -> bytes | None:
            _time.sleep(0.15)  # on a worker thread (offload=True): the loop stays free
            return super()._load(cid)

    fast, _ = await serve_content(fast_store)
    slow = await serve(
        Slow(slow_store, offload=True).handle, compression=False, max_message_size=4 * MIB
    )
    urls = [f"ws://127.0.0.1:{slow.port}/content", f"ws://127.0.0.1:{fast.port}/content"]
    dst = BlockStore(tmp_path / "dst", fsync=False)
    async with ExchangeClient(urls, store=dst, window=4) as client:
        stats = await client.fetch_dag(root)
    got = stats.per_provider
    assert got.get(urls[1], 0) > 2 * got.get(urls[0], 0), got
    await fast.close()
    await slow.close()
