"""``content.*``: black-box checks of a content-exchange endpoint (spec/content.md §7).

Target: ``--target content=ws://HOST:PORT/content`` — add ``?cid=<CIDv1>`` naming a block the
node serves to enable the cases that need one. The client here is the third-party ``websockets``
library, and blocks are checked with ``hashlib`` against the CID's digest decoded here, so the
cases do not lean on the reference implementation's own code.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from infernet_conformance import CaseContext, CaseSkipped, case, check

SECTION = "spec/content.md §7"


def _digest_of(cid: str) -> bytes:
    """sha2-256 digest of a base32 CIDv1 with a one-byte codec varint (raw 0x55, dag-pb 0x70)."""
    body = cid[1:].upper()
    raw = base64.b32decode(body + "=" * (-len(body) % 8))
    check(raw[0] == 1 and raw[2:4] == b"\x12\x20", f"?cid={cid} is not a sha2-256 CIDv1")
    return raw[4:36]


def _random_cid() -> str:
    raw = b"\x01\x55\x12\x20" + hashlib.sha256(os.urandom(16)).digest()
    return "b" + base64.b32encode(raw).decode().rstrip("=").lower()


def _want(entries: list[dict[str, Any]], msg_id: str = "w1") -> str:
    return json.dumps({"v": 1, "type": "content.want", "id": msg_id, "body": {"entries": entries}})


def _endpoint(ctx: CaseContext) -> tuple[str, str | None]:
    ep = ctx.require("content")
    parts = urlsplit(ep.url)
    cid = parse_qs(parts.query).get("cid", [None])[0]
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/content", "", "")), cid


def _served_cid(ctx: CaseContext) -> tuple[str, str]:
    url, cid = _endpoint(ctx)
    if cid is None:
        raise CaseSkipped("add ?cid=<a CID the node serves> to the content target")
    return url, cid


@asynccontextmanager
async def _connect(url: str) -> AsyncIterator[Any]:
    try:
        from websockets.asyncio.client import connect  # noqa: PLC0415
    except ImportError:  # pragma: no cover - the suite's own dependency
        raise CaseSkipped("the `websockets` package is needed for content.* cases") from None
    from websockets.typing import Subprotocol  # noqa: PLC0415

    protocols = [Subprotocol("infernet.v1")]
    async with connect(url, subprotocols=protocols, compression=None, max_size=8 * 2**20) as ws:
        yield ws


async def _recv(ws: Any, ctx: CaseContext) -> Any:
    return await asyncio.wait_for(ws.recv(), ctx.timeout)


def _split_frame(frame: bytes) -> tuple[dict[str, Any], bytes]:
    n, shift, i = 0, 0, 0
    while True:
        check(i < len(frame) and i < 4, "block frame: bad header-length varint")
        b = frame[i]
        n |= (b & 0x7F) << shift
        i += 1
        if b < 0x80:
            break
        shift += 7
    header = json.loads(frame[i : i + n])
    return header, frame[i + n :]


async def _expect_error(ws: Any, ctx: CaseContext, code: int) -> None:
    msg = await _recv(ws, ctx)
    check(isinstance(msg, str), "expected a content.error text message")
    obj = json.loads(msg)
    check(obj.get("type") == "content.error", f"expected content.error, got {obj.get('type')!r}")
    check(
        obj["body"].get("code") == code,
        f"expected error code {code}, got {obj['body'].get('code')}",
    )
    try:
        await asyncio.wait_for(ws.recv(), ctx.timeout)
    except Exception as exc:  # websockets raises ConnectionClosed
        rcvd = getattr(exc, "rcvd", None)
        check(
            rcvd is None or rcvd.code == 1008,
            f"expected close code 1008, got {getattr(rcvd, 'code', None)}",
        )
        return
    raise AssertionError("connection stayed open after a fatal content.error")


@case(
    "content.block.verify",
    section=f"{SECTION}.4",
    description="a served block frame has a valid header and hashes to its CID",
)
async def _(ctx: CaseContext) -> None:
    url, cid = _served_cid(ctx)
    async with _connect(url) as ws:
        await ws.send(_want([{"cid": cid, "priority": 1}]))
        frame = await _recv(ws, ctx)
        check(isinstance(frame, bytes), "expected a binary block frame")
        header, block = _split_frame(frame)
        check(header.get("cid") == cid, f"header names {header.get('cid')!r}, wanted {cid}")
        check(header.get("size") == len(block), "header size differs from the block length")
        check(
            hashlib.sha256(block).digest() == _digest_of(cid),
            "served block does not hash to its CID",
        )


@case(
    "content.want.have",
    section=f"{SECTION}.2",
    description="want type 'have' for a served CID is answered with content.have",
)
async def _(ctx: CaseContext) -> None:
    url, cid = _served_cid(ctx)
    async with _connect(url) as ws:
        await ws.send(_want([{"cid": cid, "want": "have"}]))
        obj = json.loads(await _recv(ws, ctx))
        check(
            obj["type"] == "content.have" and cid in obj["body"]["cids"],
            f"expected content.have, got {obj}",
        )


@case(
    "content.want.unknown_dont_have",
    section=f"{SECTION}.2",
    description="an unknown CID gets content.dont_have",
)
async def _(ctx: CaseContext) -> None:
    url, _ = _endpoint(ctx)
    unknown = _random_cid()
    async with _connect(url) as ws:
        await ws.send(_want([{"cid": unknown}]))
        msg = await _recv(ws, ctx)
        check(isinstance(msg, str), "expected a text message")
        obj = json.loads(msg)
        check(obj["type"] == "content.dont_have", f"expected content.dont_have, got {obj['type']}")
        check(unknown in obj["body"]["cids"], "dont_have does not name the CID")


@case(
    "content.want.priority",
    section=f"{SECTION}.2",
    description="entries of one want are answered highest priority first",
)
async def _(ctx: CaseContext) -> None:
    url, _ = _endpoint(ctx)
    cids = [_random_cid() for _ in range(3)]
    async with _connect(url) as ws:
        await ws.send(
            _want(
                [
                    {"cid": cids[0], "priority": 1},
                    {"cid": cids[1], "priority": 9},
                    {"cid": cids[2], "priority": 5},
                ]
            )
        )
        order: list[str] = []
        while len(order) < 3:
            obj = json.loads(await _recv(ws, ctx))
            check(obj["type"] == "content.dont_have", f"unexpected {obj['type']}")
            order += obj["body"]["cids"]
        check(order == [cids[1], cids[2], cids[0]], "dont_have answers are not in priority order")


@case(
    "content.want.malformed_refused",
    section=f"{SECTION}.6",
    description="a malformed want-list gets content.error 4400 and close 1008",
)
async def _(ctx: CaseContext) -> None:
    url, _ = _endpoint(ctx)
    async with _connect(url) as ws:
        await ws.send(
            json.dumps(
                {
                    "v": 1,
                    "type": "content.want",
                    "id": "x",
                    "body": {"entries": [{"cid": "not-a-cid"}]},
                }
            )
        )
        await _expect_error(ws, ctx, 4400)


@case(
    "content.want.not_json_refused",
    section=f"{SECTION}.6",
    description="text that is not JSON gets content.error 4400 and close 1008",
)
async def _(ctx: CaseContext) -> None:
    url, _ = _endpoint(ctx)
    async with _connect(url) as ws:
        await ws.send("{not json")
        await _expect_error(ws, ctx, 4400)


@case(
    "content.want.oversized_refused",
    section=f"{SECTION}.1",
    description="a want with 1025 entries gets content.error 4413 and close 1008",
)
async def _(ctx: CaseContext) -> None:
    url, _ = _endpoint(ctx)
    async with _connect(url) as ws:
        await ws.send(_want([{"cid": _random_cid()} for _ in range(1025)]))
        await _expect_error(ws, ctx, 4413)


@case(
    "content.binary_from_client_refused",
    section=f"{SECTION}.6",
    description="a binary message from a client gets 4400 and close 1008",
)
async def _(ctx: CaseContext) -> None:
    url, _ = _endpoint(ctx)
    async with _connect(url) as ws:
        await ws.send(b"\x00\x01")
        await _expect_error(ws, ctx, 4400)


@case(
    "content.peer.disconnect_mid_transfer",
    section=f"{SECTION}",
    description="the node keeps serving after a peer vanishes mid-transfer",
)
async def _(ctx: CaseContext) -> None:
    url, cid = _endpoint(ctx)
    async with _connect(url) as ws:
        entries: list[dict[str, Any]] = [{"cid": _random_cid()} for _ in range(1000)]
        if cid is not None:
            entries.insert(0, {"cid": cid, "priority": 9})
        await ws.send(_want(entries))
        await _recv(ws, ctx)
        ws.transport.abort()
    await asyncio.sleep(0.2)
    unknown = _random_cid()
    async with _connect(url) as ws2:
        await ws2.send(_want([{"cid": unknown}]))
        obj = json.loads(await _recv(ws2, ctx))
        check(obj["type"] == "content.dont_have", "node did not answer after a peer disconnected")
