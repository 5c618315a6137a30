"""The asyncio adapter: serve/connect, plain HTTP, policies, timeouts, backpressure, shutdown, TLS."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from infernet_ref import ws
from infernet_ref.ws.frames import Opcode, encode_frame
from infernet_ref.ws.handshake import accept_key

UPGRADE = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


async def echo(conn: ws.WebSocket) -> None:
    async for message in conn:
        await conn.send(message)


async def raw_upgrade(
    port: int, path: str = "/"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(UPGRADE.format(path=path).encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    return reader, writer


async def read_close(reader: asyncio.StreamReader) -> int:
    """Read server frames until a close frame; return its code."""
    while True:
        b0, b1 = await reader.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(await reader.readexactly(2), "big")
        elif n == 127:
            n = int.from_bytes(await reader.readexactly(8), "big")
        payload = await reader.readexactly(n)
        if b0 & 0x0F == Opcode.CLOSE:
            return int.from_bytes(payload[:2], "big")


async def test_round_trip_and_attributes() -> None:
    seen: dict[str, object] = {}

    async def handler(conn: ws.WebSocket) -> None:
        seen.update(path=conn.path, proto=conn.subprotocol, ua=conn.request_headers.get("x-test"))
        await echo(conn)

    async with await ws.serve(handler) as server:
        async with ws.connect(
            f"ws://127.0.0.1:{server.port}/job?x=1", extra_headers=[("X-Test", "yes")]
        ) as c:
            await c.send("text")
            assert await c.recv() == "text"
            await c.send(b"bin")
            assert await c.recv() == b"bin"
            assert c.subprotocol == "infernet.v1"
            assert c.remote_address == server.address
            assert await c.ping() >= 0
        assert c.close_code == 1000
        with pytest.raises(ws.ConnectionClosedOK):
            await c.recv()
        with pytest.raises(ws.ConnectionClosed):
            await c.send("late")
    assert seen == {"path": "/job?x=1", "proto": "infernet.v1", "ua": "yes"}


async def test_http_handler_plain_get_and_passthrough() -> None:
    async def http(req: ws.HttpRequest) -> ws.HttpResponse | None:
        if req.path == "/.well-known/infernet":
            return ws.HttpResponse(200, [("Content-Type", "application/json")], b'{"ok":true}')
        if req.path == "/missing":
            return ws.HttpResponse(404, body=b"no such path\n")
        return None

    async with await ws.serve(echo, http_handler=http) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /.well-known/infernet HTTP/1.1\r\nHost: x\r\n\r\n")
        response = await reader.read()
        writer.close()
        assert response.startswith(b"HTTP/1.1 200 OK\r\n")
        assert response.endswith(b'\r\n\r\n{"ok":true}')
        with pytest.raises(ws.HandshakeError) as info:
            await ws.connect(f"ws://127.0.0.1:{server.port}/missing")
        assert info.value.status == 404
        async with ws.connect(f"ws://127.0.0.1:{server.port}/job") as c:
            await c.send("through")
            assert await c.recv() == "through"


async def test_plain_get_without_handler_is_426() -> None:
    async with await ws.serve(echo) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = await reader.read()
        writer.close()
        assert response.startswith(b"HTTP/1.1 426 ")
        assert b"Upgrade: websocket" in response
        assert b"this is a WebSocket endpoint" in response


async def test_origin_policy_refuses_with_403() -> None:
    async with ws.serve(
        echo, origins={"https://good.example"}
    ) as server:  # no await: also a context
        with pytest.raises(ws.HandshakeError) as info:
            await ws.connect(f"ws://127.0.0.1:{server.port}/", origin="https://evil.example")
        assert info.value.status == 403
        async with ws.connect(f"ws://127.0.0.1:{server.port}/", origin="https://good.example") as c:
            await c.send("hi")
            assert await c.recv() == "hi"


async def test_slow_loris_handshake_is_cut_off() -> None:
    async with await ws.serve(echo, open_timeout=0.3) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finishes the head
        data = await asyncio.wait_for(reader.read(), 5)
        assert data == b""
        writer.close()


async def test_protocol_violation_gets_close_code_and_server_keeps_serving() -> None:
    async with await ws.serve(echo) as server:
        reader, writer = await raw_upgrade(server.port)
        writer.write(encode_frame(Opcode.TEXT, b"unmasked"))  # clients must mask: 1002
        assert await asyncio.wait_for(read_close(reader), 5) == 1002
        assert await asyncio.wait_for(reader.read(), 5) == b""  # then the server closes TCP
        writer.close()
        async with ws.connect(f"ws://127.0.0.1:{server.port}/") as c:
            await c.send("still serving")
            assert await c.recv() == "still serving"


async def test_handler_exception_closes_with_1011() -> None:
    async def broken(conn: ws.WebSocket) -> None:
        await conn.recv()
        raise RuntimeError("boom")

    async with await ws.serve(broken) as server, ws.connect(f"ws://127.0.0.1:{server.port}/") as c:
        await c.send("x")
        with pytest.raises(ws.ConnectionClosedError) as info:
            await c.recv()
        assert info.value.code == 1011


async def test_application_close_code_and_reason() -> None:
    async def closer(conn: ws.WebSocket) -> None:
        await conn.close(4001, "auth failed")

    async with await ws.serve(closer) as server:
        c = await ws.connect(f"ws://127.0.0.1:{server.port}/")
        with pytest.raises(ws.ConnectionClosedError) as info:
            await c.recv()
        assert (info.value.code, info.value.reason) == (4001, "auth failed")
        await c.wait_closed()
        assert c.close_code == 4001


async def test_graceful_shutdown_closes_with_1001() -> None:
    done = []

    async def handler(conn: ws.WebSocket) -> None:
        try:
            await echo(conn)
        finally:
            done.append(conn.path)

    server = await ws.serve(handler)
    clients = [await ws.connect(f"ws://127.0.0.1:{server.port}/{i}") for i in range(3)]
    await asyncio.wait_for(server.close(), 10)
    for c in clients:
        with pytest.raises(ws.ConnectionClosedOK) as info:
            await c.recv()
        assert info.value.code == 1001
        await c.wait_closed()
    assert sorted(done) == ["/0", "/1", "/2"]
    with pytest.raises(OSError):
        await ws.connect(f"ws://127.0.0.1:{server.port}/", open_timeout=2)


@pytest.mark.parametrize(
    "limits",
    [{"max_queue": 4}, {"max_queue": 10_000, "max_queue_bytes": 256 * 1024}],
    ids=["count", "bytes"],
)
async def test_backpressure_bounds_buffers(limits: dict[str, int]) -> None:
    release = asyncio.Event()
    received: list[int] = []

    async def slow(conn: ws.WebSocket) -> None:
        await release.wait()
        async for message in conn:
            received.append(len(message))

    async with await ws.serve(slow, compression=False, **limits) as server:
        c = await ws.connect(f"ws://127.0.0.1:{server.port}/", compression=False, write_limit=16384)
        chunk = b"x" * 65536
        sent = 0

        async def pump() -> None:
            nonlocal sent
            for _ in range(400):  # 25 MiB: far more than the socket buffers hold
                await c.send(chunk)
                sent += 1

        task = asyncio.ensure_future(pump())
        (conn,) = server.connections
        for _ in range(100):  # wait until the server has stopped reading
            await asyncio.sleep(0.05)
            assert conn._transport is not None
            if not conn._transport.is_reading():
                break
        await asyncio.sleep(0.3)
        assert not task.done()  # the sender is blocked on drain
        assert sent < 400
        # The server holds at most its limits plus what one read (256 KiB at most, i.e. 4 of
        # these messages) delivered after crossing them.
        per_read = 256 * 1024 // len(chunk)
        assert len(conn._messages) <= limits["max_queue"] + per_read
        assert conn._queued_bytes <= limits.get("max_queue_bytes", 1 << 40) + (per_read + 1) * len(
            chunk
        )
        release.set()
        await asyncio.wait_for(task, 30)
        await c.close()
    assert len(received) == 400


async def test_keepalive_timeout_aborts_dead_peer() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(
            line.split(b":", 1)[1].strip().decode()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key")
        )
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n".encode()
        )
        try:
            await reader.read()  # read pings, never answer them
        finally:
            writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    c = await ws.connect(
        f"ws://127.0.0.1:{port}/", ping_interval=0.1, ping_timeout=0.2, compression=False
    )
    with pytest.raises(ws.ConnectionClosedError) as info:
        await asyncio.wait_for(c.recv(), 5)
    assert info.value.code == 1006
    assert "keepalive" in info.value.reason
    # A peer that never answers our close frame is dropped after close_timeout.
    c2 = await ws.connect(f"ws://127.0.0.1:{port}/", ping_interval=None, close_timeout=0.2)
    await asyncio.wait_for(c2.close(), 5)
    assert c2.close_code == 1006
    server.close()
    await server.wait_closed()


async def test_tls(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    async with await ws.serve(echo, ssl=server_tls) as server:
        async with ws.connect(f"wss://127.0.0.1:{server.port}/", ssl=client_tls) as c:
            for message in ("secure", b"\x00" * 300_000):
                await c.send(message)
                assert await c.recv() == message
        with pytest.raises(ssl.SSLError):
            await ws.connect(f"wss://127.0.0.1:{server.port}/")  # system trust store: untrusted


def test_uvloop_round_trip() -> None:
    pytest.importorskip("uvloop")

    async def main() -> str | bytes:
        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        async with (
            await ws.serve(echo) as server,
            ws.connect(f"ws://127.0.0.1:{server.port}/") as c,
        ):
            await c.send("uv")
            return await c.recv()

    assert ws.run(main(), use_uvloop=True) == "uv"


async def test_ping_flood_from_a_peer_that_never_reads_is_bounded() -> None:
    """A client floods pings and never reads the pongs: the server stops reading instead of
    buffering pongs without limit (spec/ws.md §3)."""
    async with await ws.serve(echo, write_limit=16384, close_timeout=1) as server:
        _reader, writer = await raw_upgrade(server.port)
        ping = encode_frame(Opcode.PING, b"p" * 125, mask_key=b"\x01\x02\x03\x04")
        burst = ping * 1000  # 131 KB of pings, 127 KB of pongs each
        sent = 0

        async def flood() -> None:
            nonlocal sent
            for _ in range(400):  # up to 52 MB of pings
                writer.write(burst)
                await writer.drain()
                sent += 1

        task = asyncio.ensure_future(flood())
        await asyncio.sleep(2.0)
        (conn,) = server.connections
        assert conn._transport is not None
        buffered = conn._transport.get_write_buffer_size()
        assert not task.done()  # the server stopped reading, so the flood is blocked
        assert buffered < 1024 * 1024, buffered
        task.cancel()
        writer.close()
