"""Interop with the ``websockets`` library (outside oracle), both directions.

Random text and binary messages from 0 bytes to 16 MiB, fragmented sends, with and without
permessage-deflate (and with every deflate parameter), over TLS, and close codes.
"""

from __future__ import annotations

import os
import random
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.server import serve as ws_serve
from websockets.extensions.permessage_deflate import (
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)

from infernet_ref import ws

pytestmark = pytest.mark.interop

MiB = 1024 * 1024
SIZES = [0, 1, 125, 126, 65535, 65536, 100_003, MiB + 1]


def _text(n: int, rng: random.Random) -> str:
    alphabet = "abcdefghij κόσμε €𝄞\n"
    return "".join(rng.choice(alphabet) for _ in range(n // 2))


def _messages(seed: int, big: bool) -> list[str | bytes]:
    rng = random.Random(seed)
    out: list[str | bytes] = []
    for n in SIZES:
        out.append(rng.randbytes(n))
        if n <= 100_003:
            out.append(_text(n, rng))
    if big:
        out.append(rng.randbytes(16 * MiB))
    return out


async def _ws_echo(conn: Any) -> None:
    async for message in conn:
        await conn.send(message)


async def _our_echo(conn: ws.WebSocket) -> None:
    async for message in conn:
        await conn.send(message)


@asynccontextmanager
async def websockets_server(**kw: Any) -> AsyncIterator[int]:
    async with ws_serve(
        _ws_echo, "127.0.0.1", 0, max_size=None, subprotocols=["infernet.v1"], **kw
    ) as server:
        yield server.sockets[0].getsockname()[1]


@pytest.mark.parametrize("compression", [True, False], ids=["deflate", "plain"])
async def test_our_client_against_websockets_server(compression: bool) -> None:
    kw: dict[str, Any] = {} if compression else {"compression": None}
    async with (
        websockets_server(**kw) as port,
        ws.connect(f"ws://127.0.0.1:{port}/", compression=compression) as c,
    ):
        assert c.subprotocol == "infernet.v1"
        extensions = c.response_headers.get("sec-websocket-extensions")
        assert (extensions is not None) == compression
        for message in _messages(1, big=not compression):
            await c.send(message)
            assert await c.recv() == message
        # Fragmented sends: websockets reassembles them into one message.
        await c.send([b"frag", b"", b"mented", os.urandom(70000)])
        assert len(await c.recv()) == 10 + 70000
        await c.send(["κό", "σμε"])
        assert await c.recv() == "κόσμε"


@pytest.mark.parametrize("compression", [True, False], ids=["deflate", "plain"])
async def test_websockets_client_against_our_server(compression: bool) -> None:
    async with await ws.serve(_our_echo, compression=compression) as server:
        kw: dict[str, Any] = {} if compression else {"compression": None}
        url = f"ws://127.0.0.1:{server.port}/"
        async with ws_connect(url, max_size=None, subprotocols=["infernet.v1"], **kw) as c:
            assert c.subprotocol == "infernet.v1"
            assert (c.response.headers.get("Sec-WebSocket-Extensions") is not None) == compression
            for message in _messages(2, big=not compression):
                await c.send(message)
                assert await c.recv() == message
            await c.send(iter([b"a", b"b", os.urandom(100000)]))
            assert len(await c.recv()) == 100002
            await c.send(iter(["fr", "ag", "é"]))
            assert await c.recv() == "fragé"


SERVER_FACTORIES: list[Callable[[], ServerPerMessageDeflateFactory]] = [
    lambda: ServerPerMessageDeflateFactory(
        server_no_context_takeover=True,
        client_no_context_takeover=True,
        server_max_window_bits=10,
        client_max_window_bits=9,
    ),
    lambda: ServerPerMessageDeflateFactory(server_max_window_bits=9),
    lambda: ServerPerMessageDeflateFactory(
        client_no_context_takeover=True,
        require_client_max_window_bits=True,
        client_max_window_bits=12,
    ),
]


@pytest.mark.parametrize("factory", SERVER_FACTORIES)
async def test_deflate_parameters_against_websockets_server(
    factory: Callable[[], ServerPerMessageDeflateFactory],
) -> None:
    async with (
        websockets_server(compression=None, extensions=[factory()]) as port,
        ws.connect(f"ws://127.0.0.1:{port}/") as c,
    ):
        assert "permessage-deflate" in (c.response_headers.get("sec-websocket-extensions") or "")
        for i in range(6):
            message = ("repeated text " * 200) + str(i)
            await c.send(message)
            assert await c.recv() == message


OUR_CLIENT_CONFIGS = [
    ws.DeflateConfig(
        server_no_context_takeover=True,
        client_no_context_takeover=True,
        server_max_window_bits=11,
        client_max_window_bits=12,
    ),
    ws.DeflateConfig(server_max_window_bits=9, client_max_window_bits=9),
]


@pytest.mark.parametrize("config", OUR_CLIENT_CONFIGS)
async def test_our_deflate_offers_against_websockets_server(config: ws.DeflateConfig) -> None:
    async with (
        websockets_server() as port,
        ws.connect(f"ws://127.0.0.1:{port}/", compression=config) as c,
    ):
        answer = c.response_headers.get("sec-websocket-extensions") or ""
        if config.server_no_context_takeover:
            assert "server_no_context_takeover" in answer
        for i in range(6):
            message = b"binary block " * 300 + bytes([i])
            await c.send(message)
            assert await c.recv() == message


CLIENT_FACTORIES = [
    ClientPerMessageDeflateFactory(
        server_no_context_takeover=True,
        client_no_context_takeover=True,
        server_max_window_bits=10,
        client_max_window_bits=9,
    ),
    ClientPerMessageDeflateFactory(client_max_window_bits=True),
]


@pytest.mark.parametrize("factory", CLIENT_FACTORIES)
@pytest.mark.parametrize(
    "config",
    [
        ws.DeflateConfig(),
        ws.DeflateConfig(
            client_no_context_takeover=True, server_max_window_bits=10, client_max_window_bits=10
        ),
    ],
)
async def test_websockets_deflate_offers_against_our_server(
    factory: ClientPerMessageDeflateFactory, config: ws.DeflateConfig
) -> None:
    async with await ws.serve(_our_echo, compression=config) as server:
        url = f"ws://127.0.0.1:{server.port}/"
        async with ws_connect(url, compression=None, extensions=[factory]) as c:
            assert "permessage-deflate" in (
                c.response.headers.get("Sec-WebSocket-Extensions") or ""
            )
            for i in range(6):
                message = ("text " * 500) + str(i)
                await c.send(message)
                assert await c.recv() == message


async def test_tls_both_ways(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    big = os.urandom(3 * MiB)
    async with (
        websockets_server(ssl=server_tls) as port,
        ws.connect(f"wss://127.0.0.1:{port}/", ssl=client_tls) as c,
    ):
        await c.send(big)
        assert await c.recv() == big
        await c.send("tls text")
        assert await c.recv() == "tls text"
    async with (
        await ws.serve(_our_echo, ssl=server_tls) as server,
        ws_connect(f"wss://127.0.0.1:{server.port}/", ssl=client_tls, max_size=None) as c,
    ):
        await c.send(big)
        assert await c.recv() == big


async def test_close_codes_both_ways() -> None:
    seen: list[tuple[int, str]] = []

    async def record(conn: Any) -> None:
        try:
            await conn.recv()
        except websockets.ConnectionClosed as exc:
            seen.append((exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (1006, ""))

    async with ws_serve(record, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        c = await ws.connect(f"ws://127.0.0.1:{port}/")
        await c.close(4000, "application says bye")
        assert c.close_code == 4000
    assert seen == [(4000, "application says bye")]

    async def closer(conn: ws.WebSocket) -> None:
        await conn.close(1001, "going")

    async with await ws.serve(closer) as ours, ws_connect(f"ws://127.0.0.1:{ours.port}/") as c2:
        with pytest.raises(websockets.ConnectionClosedOK) as info:
            await c2.recv()
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (1001, "going")
