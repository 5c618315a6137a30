"""Hypothesis fuzzing of the sans-I/O cores.

Invariant (STYLE.md): any bytes give events, or a protocol failure carrying the right close
code as the last event — never another exception — and buffered memory stays bounded.
"""

from __future__ import annotations

import contextlib

from hypothesis import given, settings
from hypothesis import strategies as st

from infernet_ref.ws.connection import Connection, Role, State
from infernet_ref.ws.errors import HandshakeError
from infernet_ref.ws.events import CloseReceived, Event, Message, ProtocolFailed
from infernet_ref.ws.extensions import parse_extensions
from infernet_ref.ws.extensions.deflate import DeflateConfig, DeflateParams, PerMessageDeflate
from infernet_ref.ws.handshake import ClientHandshake, ServerHandshake
from infernet_ref.ws.http import HandshakeLimits

MAX = 4096
CODES = {1002, 1007, 1009}


def _core(role: Role, compressed: bool) -> Connection:
    deflate = None
    if compressed:
        deflate = PerMessageDeflate(DeflateParams(False, False, 15, 15), DeflateConfig(min_size=0))
    return Connection(role, max_message_size=MAX, deflate=deflate)


def _feed_all(conn: Connection, chunks: list[bytes]) -> list[Event]:
    events: list[Event] = []
    for chunk in chunks:
        got = conn.receive_data(chunk)
        assert isinstance(got, list)
        if events and isinstance(events[-1], (ProtocolFailed, CloseReceived)):
            assert got == []  # nothing is read after a failure or a close frame
        events += got
        # Bounded memory: at most one frame in progress plus the chunk just received.
        assert len(conn._buf) <= MAX + 14 + len(chunk)
        conn.data_to_send()
    for ev in events[:-1]:
        assert not isinstance(ev, ProtocolFailed)
    if events and isinstance(events[-1], ProtocolFailed):
        assert events[-1].code in CODES
        assert conn.state is State.CLOSED
    for ev in events:
        if isinstance(ev, Message):
            assert isinstance(ev.data, (str, bytes))
            assert len(ev.data) <= MAX
    return events


chunked = st.lists(st.binary(max_size=300), max_size=30)


@given(chunks=chunked, role=st.sampled_from(list(Role)), compressed=st.booleans())
@settings(max_examples=300)
def test_arbitrary_bytes(chunks: list[bytes], role: Role, compressed: bool) -> None:
    _feed_all(_core(role, compressed), chunks)


message = st.one_of(st.text(max_size=200), st.binary(max_size=200))
op = st.one_of(
    st.tuples(st.just("msg"), message),
    st.tuples(st.just("frag"), st.lists(st.binary(max_size=50), min_size=1, max_size=4)),
    st.tuples(st.just("ping"), st.binary(max_size=125)),
)


def _stream(sender: Connection, ops: list[tuple[str, object]]) -> tuple[bytes, list[str | bytes]]:
    wire = b""
    expected: list[str | bytes] = []
    for kind, value in ops:
        if kind == "msg":
            assert isinstance(value, (str, bytes))
            wire += sender.send_message(value)
            expected.append(value)
        elif kind == "frag":
            assert isinstance(value, list)
            for i, part in enumerate(value):
                wire += sender.send_fragment(part, fin=i == len(value) - 1)
            expected.append(b"".join(value))
        else:
            assert isinstance(value, bytes)
            wire += sender.send_ping(value)
    return wire, expected


@given(ops=st.lists(op, max_size=8), compressed=st.booleans(), data=st.data())
@settings(max_examples=150)
def test_valid_streams_round_trip_in_any_chunking(
    ops: list[tuple[str, object]], compressed: bool, data: st.DataObject
) -> None:
    client, server = _core(Role.CLIENT, compressed), _core(Role.SERVER, compressed)
    wire, expected = _stream(client, ops)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    chunks = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    events = _feed_all(server, chunks)
    assert [e.data for e in events if isinstance(e, Message)] == expected


@given(ops=st.lists(op, min_size=1, max_size=6), compressed=st.booleans(), data=st.data())
@settings(max_examples=200)
def test_mutated_streams(
    ops: list[tuple[str, object]], compressed: bool, data: st.DataObject
) -> None:
    client, server = _core(Role.CLIENT, compressed), _core(Role.SERVER, compressed)
    wire = bytearray(_stream(client, ops)[0])
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(wire) - 1))
        action = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        if action == "flip":
            wire[pos] ^= data.draw(st.integers(1, 255))
        elif action == "delete":
            del wire[pos]
        else:
            wire[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        if not wire:
            break
    _feed_all(server, [bytes(wire)])


@given(st.binary(max_size=2000))
@settings(max_examples=200)
def test_server_handshake_parser(raw: bytes) -> None:
    server = ServerHandshake(
        deflate=DeflateConfig(), limits=HandshakeLimits(max_line=200, max_head=1000)
    )
    status = 0
    try:
        request = server.receive_data(raw)
        if request is not None:
            server.accept(request)
    except HandshakeError as exc:
        status = exc.status
    assert status == 0 or 400 <= status < 600


@given(
    st.lists(
        st.sampled_from(
            [
                "GET / HTTP/1.1",
                "Host: x",
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Version: 13",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits",
                "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8, permessage-deflate",
                "Sec-WebSocket-Protocol: infernet.v1",
                "Origin: http://x",
                "Content-Length: 5",
                "X: \x00\xff",
                "",
            ]
        ),
        max_size=12,
    )
)
def test_server_handshake_header_soup(lines: list[str]) -> None:
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    server = ServerHandshake(subprotocols=("infernet.v1",), deflate=DeflateConfig())
    try:
        request = server.receive_data(raw)
        if request is not None:
            server.accept(request)
    except HandshakeError:
        pass


@given(st.binary(max_size=1000))
def test_client_handshake_parser(raw: bytes) -> None:
    client = ClientHandshake("h", "/", deflate=DeflateConfig(), subprotocols=("infernet.v1",))
    with contextlib.suppress(HandshakeError):
        client.receive_data(raw)


@given(st.text(max_size=200))
def test_extension_header_parser(header: str) -> None:
    try:
        items = parse_extensions(header)
    except HandshakeError:
        return
    for name, params in items:
        assert name
        assert all(isinstance(p, str) for p, _ in params)


UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@given(
    garbage=st.lists(st.binary(min_size=1, max_size=200), min_size=1, max_size=5),
    upgrade=st.booleans(),
)
@settings(max_examples=25)
def test_live_server_survives_hostile_bytes(garbage: list[bytes], upgrade: bool) -> None:
    """End to end: hostile bytes (after a valid upgrade or instead of one) never take the
    server down; the next client is served normally."""
    import asyncio

    from infernet_ref import ws

    async def echo(conn: ws.WebSocket) -> None:
        async for message in conn:
            await conn.send(message)

    crashes: list[dict[str, object]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: crashes.append(ctx))
        async with ws.serve(echo, open_timeout=1, close_timeout=0.5) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            if upgrade:
                writer.write(UPGRADE)
            for chunk in garbage:
                writer.write(chunk)
            await writer.drain()
            with contextlib.suppress(TimeoutError, ConnectionError):
                await asyncio.wait_for(reader.read(65536), 0.3)
            writer.close()
            async with ws.connect(f"ws://127.0.0.1:{server.port}/") as c:
                await c.send("still alive")
                assert await c.recv() == "still alive"

    asyncio.run(main())
    assert crashes == []  # no exception escaped a protocol callback


frame_like = st.builds(
    lambda b0, b1, ext, rest: bytes([b0, b1]) + ext + rest,
    st.integers(0, 255),
    st.integers(0, 255),
    st.sampled_from([b"", b"\x00\x7e", b"\x00\x80", b"\x01\x00"]),
    st.binary(max_size=300),
)


@given(data=st.one_of(frame_like, st.binary(max_size=300)), role=st.sampled_from(list(Role)))
@settings(max_examples=300)
def test_fast_path_agrees_with_the_generic_parser(data: bytes, role: Role) -> None:
    """One read holding one frame takes the fast path; byte by byte takes the generator."""
    fast, slow = _core(role, False), _core(role, False)
    whole = fast.receive_data(data)
    split: list[Event] = []
    for i in range(len(data)):
        split += slow.receive_data(data[i : i + 1])
    assert whole == split
    assert fast.data_to_send() == slow.data_to_send() or role is Role.CLIENT  # masks differ
