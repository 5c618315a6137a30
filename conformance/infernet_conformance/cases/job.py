"""``job.*``: black-box checks of a node's job-protocol endpoint (spec/job.md).

Target: ``--target job=ws://HOST:PORT/job``. The client is the third-party ``websockets``
library; auth events are built and BIP-340-signed here with ``coincurve`` and ``hashlib`` from
the NIP-01 rules, so the cases do not lean on the reference implementation's code. Cases check
authentication (challenge first, refusal before auth, bad signature, foreign challenge, stale
and replayed events), error codes for malformed, unknown-type, wrong-version, schema-invalid,
oversized and unannounced-binary input with the connection staying usable, and heartbeats.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from infernet_conformance import CaseContext, CaseFailed, CaseSkipped, case, check

SECTION = "spec/job.md"


def _event(
    sk: bytes, kind: int, tags: list[list[str]], content: str, created_at: int
) -> dict[str, Any]:
    from coincurve import PrivateKey  # noqa: PLC0415

    key = PrivateKey(sk)
    pubkey = key.public_key_xonly.format().hex()
    ser = json.dumps(
        [0, pubkey, created_at, kind, tags, content], separators=(",", ":"), ensure_ascii=False
    )
    eid = hashlib.sha256(ser.encode()).hexdigest()
    sig = key.sign_schnorr(bytes.fromhex(eid), os.urandom(32)).hex()
    return {
        "id": eid,
        "pubkey": pubkey,
        "created_at": created_at,
        "kind": kind,
        "tags": tags,
        "content": content,
        "sig": sig,
    }


def _msg(msg_type: str, body: dict[str, Any], msg_id: str = "t1") -> str:
    return json.dumps({"v": 1, "type": msg_type, "id": msg_id, "body": body}, separators=(",", ":"))


@asynccontextmanager
async def _connect(ctx: CaseContext, max_size: int = 64 * 2**20) -> AsyncIterator[Any]:
    try:
        from websockets.asyncio.client import connect  # noqa: PLC0415
        from websockets.typing import Subprotocol  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        raise CaseSkipped("the `websockets` package is needed for job.* cases") from None
    url = ctx.require("job").url
    async with connect(
        url, subprotocols=[Subprotocol("infernet.v1")], compression=None, max_size=max_size
    ) as ws:
        yield ws


async def _recv_json(ws: Any, ctx: CaseContext) -> dict[str, Any]:
    raw = await asyncio.wait_for(ws.recv(), ctx.timeout)
    check(isinstance(raw, str), "expected a text frame")
    msg: dict[str, Any] = json.loads(raw)
    check(
        isinstance(msg, dict) and msg.get("v") == 1 and isinstance(msg.get("body"), dict),
        f"not an envelope: {raw[:200]}",
    )
    return msg


async def _challenge(ws: Any, ctx: CaseContext) -> dict[str, Any]:
    msg = await _recv_json(ws, ctx)
    check(
        msg["type"] == "auth.challenge", f"first message must be auth.challenge, got {msg['type']}"
    )
    body: dict[str, Any] = msg["body"]
    check(
        isinstance(body.get("challenge"), str) and len(body["challenge"]) >= 16,
        "challenge must be >= 16 characters",
    )
    check(
        isinstance(body.get("endpoint"), str) and body["endpoint"].startswith(("ws://", "wss://")),
        "challenge needs an endpoint URL",
    )
    return body


async def _auth(
    ws: Any, ctx: CaseContext, sk: bytes | None = None, **override: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Answer the challenge; returns (reply, the event sent)."""
    ch = await _challenge(ws, ctx)
    created = override.pop("created_at", int(time.time()))
    tags = [
        ["endpoint", override.pop("endpoint", ch["endpoint"])],
        ["challenge", override.pop("challenge", ch["challenge"])],
    ]
    ev = _event(sk or os.urandom(32), override.pop("kind", 22242), tags, "", created)
    ev.update(override)
    await ws.send(_msg("auth.response", {"event": ev}, "a1"))
    return await _recv_json(ws, ctx), ev


def _expect_error(msg: dict[str, Any], codes: set[int], what: str) -> None:
    check(msg["type"] == "sys.error", f"{what}: expected sys.error, got {msg['type']}")
    check(
        msg["body"].get("code") in codes,
        f"{what}: expected code {sorted(codes)}, got {msg['body'].get('code')}",
    )


async def _still_usable(ws: Any, ctx: CaseContext) -> None:
    await ws.send(_msg("sys.heartbeat", {"seq": 7}, "hb-check"))
    for _ in range(8):
        msg = await _recv_json(ws, ctx)
        if msg["type"] == "sys.heartbeat" and msg.get("re") == "hb-check":
            return
    raise CaseFailed("connection did not answer a heartbeat after the error")


@case(
    "job.auth.challenge_first",
    section=f"{SECTION} §Authentication",
    description="the server speaks first with a fresh auth.challenge",
)
async def _(ctx: CaseContext) -> None:
    async with _connect(ctx) as a, _connect(ctx) as b:
        ca, cb = await _challenge(a, ctx), await _challenge(b, ctx)
        check(ca["challenge"] != cb["challenge"], "two connections got the same challenge")


@case(
    "job.auth.ok",
    section=f"{SECTION} §Authentication",
    description="a valid kind-22242 response is accepted with auth.ok naming the key",
)
async def _(ctx: CaseContext) -> None:
    async with _connect(ctx) as ws:
        reply, ev = await _auth(ws, ctx)
        check(
            reply["type"] == "auth.ok" and reply["body"].get("pubkey") == ev["pubkey"],
            f"expected auth.ok for {ev['pubkey']}, got {reply}",
        )
        await _still_usable(ws, ctx)


@case(
    "job.auth.required",
    section=f"{SECTION} §Authentication",
    description="a job message before authentication gets 4001 and the connection stays usable",
)
async def _(ctx: CaseContext) -> None:
    async with _connect(ctx) as ws:
        await _challenge(ws, ctx)
        await ws.send(_msg("job.status", {"job": "j-00000001"}))
        _expect_error(await _recv_json(ws, ctx), {4001}, "unauthenticated job.status")


async def _refused(ctx: CaseContext, what: str, **override: Any) -> None:
    async with _connect(ctx) as ws:
        reply, _ = await _auth(ws, ctx, **override)
        _expect_error(reply, {4002}, what)
        try:
            extra = await asyncio.wait_for(ws.recv(), ctx.timeout)
        except Exception:
            return
        raise CaseFailed(
            f"{what}: connection not closed after a failed auth (got {str(extra)[:80]})"
        )


@case(
    "job.auth.bad_signature",
    section=f"{SECTION} §Authentication",
    description="an auth event with a broken signature is refused (4002) and the connection closed",
)
async def _(ctx: CaseContext) -> None:
    await _refused(ctx, "bad signature", sig="00" * 64)


@case(
    "job.auth.wrong_challenge",
    section=f"{SECTION} §Authentication",
    description="an auth event for another challenge is refused (4002)",
)
async def _(ctx: CaseContext) -> None:
    await _refused(ctx, "wrong challenge", challenge=os.urandom(16).hex())


@case(
    "job.auth.stale",
    section=f"{SECTION} §Authentication",
    description="an auth event created an hour ago is refused (4002)",
)
async def _(ctx: CaseContext) -> None:
    await _refused(ctx, "stale", created_at=int(time.time()) - 3600)


@case(
    "job.auth.wrong_kind",
    section=f"{SECTION} §Authentication",
    description="an event of kind 1 does not authenticate (4002)",
)
async def _(ctx: CaseContext) -> None:
    await _refused(ctx, "kind 1", kind=1)


@case(
    "job.auth.replay",
    section=f"{SECTION} §Authentication",
    description="an auth event accepted once is refused on another connection (4002)",
)
async def _(ctx: CaseContext) -> None:
    async with _connect(ctx) as ws:
        reply, ev = await _auth(ws, ctx)
        check(reply["type"] == "auth.ok", "first auth should succeed")
    async with _connect(ctx) as ws2:
        await _challenge(ws2, ctx)
        await ws2.send(_msg("auth.response", {"event": ev}, "a2"))
        _expect_error(await _recv_json(ws2, ctx), {4002}, "replayed auth event")


async def _authed_error(
    ctx: CaseContext,
    frame: str | bytes,
    codes: set[int],
    what: str,
    *,
    allow_close: int | None = None,
) -> None:
    async with _connect(ctx) as ws:
        reply, _ = await _auth(ws, ctx)
        check(reply["type"] == "auth.ok", "auth failed")
        await ws.send(frame)
        try:
            msg = await _recv_json(ws, ctx)
        except Exception as exc:
            code = getattr(getattr(exc, "rcvd", None), "code", None)
            if allow_close is not None and code == allow_close:
                return
            raise CaseFailed(f"{what}: no error reply ({type(exc).__name__}: {exc})") from exc
        _expect_error(msg, codes, what)
        await _still_usable(ws, ctx)


@case(
    "job.msg.malformed_json",
    section=f"{SECTION} §Messages rule 1",
    description="text that is not JSON gets 4000; the connection stays usable",
)
async def _(ctx: CaseContext) -> None:
    await _authed_error(ctx, '{"v":1,"type":', {4000}, "malformed JSON")


@case(
    "job.msg.unknown_type",
    section=f"{SECTION} §Messages rule 1",
    description="an undefined message type gets 4004",
)
async def _(ctx: CaseContext) -> None:
    await _authed_error(ctx, _msg("job.frobnicate", {}), {4004}, "unknown type")


@case(
    "job.msg.version",
    section=f"{SECTION} §Messages rule 1",
    description="an envelope with v=2 gets 4006",
)
async def _(ctx: CaseContext) -> None:
    await _authed_error(
        ctx,
        json.dumps({"v": 2, "type": "job.status", "id": "x", "body": {"job": "j-00000001"}}),
        {4006},
        "v=2",
    )


@case(
    "job.msg.schema",
    section=f"{SECTION} §Messages rule 1",
    description="a body violating its schema (job id too short) gets 4000",
)
async def _(ctx: CaseContext) -> None:
    await _authed_error(ctx, _msg("job.status", {"job": "x"}), {4000}, "schema-invalid body")


@case(
    "job.msg.unannounced_binary",
    section=f"{SECTION} §Binary frames",
    description="a binary frame no envelope announced gets 4000",
)
async def _(ctx: CaseContext) -> None:
    await _authed_error(ctx, b"\x00\x01\x02", {4000}, "unannounced binary frame")


@case(
    "job.msg.oversized",
    section=f"{SECTION} §Messages rule 2",
    description="a text frame above the node's max_message_size gets 4005 or a clean close 1009",
)
async def _(ctx: CaseContext) -> None:
    from infernet_conformance.cases.node import fetch_info  # noqa: PLC0415

    info = await fetch_info(ctx)
    limit = int(info["capabilities"]["max_message_size"])
    if limit > 32 * 2**20:
        raise CaseSkipped(f"max_message_size {limit} is too large to probe cheaply")
    big = _msg("job.status", {"job": "j-00000001", "pad": "x" * (limit + 16)})
    await _authed_error(ctx, big, {4005}, "oversized message", allow_close=1009)


@case(
    "job.heartbeat.echo",
    section=f"{SECTION} §Cancellation and heartbeats",
    description="sys.heartbeat is answered with sys.heartbeat carrying re",
)
async def _(ctx: CaseContext) -> None:
    async with _connect(ctx) as ws:
        reply, _ = await _auth(ws, ctx)
        check(reply["type"] == "auth.ok", "auth failed")
        await _still_usable(ws, ctx)


@case(
    "job.status.unknown_job",
    section=f"{SECTION} §Error codes",
    description="job.status for a job that does not exist gets 4040 (or 4003 on a node without the aggregator role)",
)
async def _(ctx: CaseContext) -> None:
    await _authed_error(
        ctx, _msg("job.status", {"job": "j-" + os.urandom(8).hex()}), {4040, 4003}, "unknown job"
    )
