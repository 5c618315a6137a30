"""``nostr.relay.*``: black-box checks that a NOSTR relay carries Infernet events intact (spec/nostr.md).

DESIGN: receipts and reputation attestations are NOSTR events "that any NOSTR relay can carry".
Target: ``--target nostr=ws://HOST:PORT`` (a relay, or a node acting as one). Events are built
and BIP-340-signed here with ``hashlib``, ``json`` and ``coincurve`` directly, and the client is
the third-party ``websockets`` library, so the cases do not lean on the reference's own code. A
relay that opens with a NIP-42 ``AUTH`` challenge is answered with a kind-22242 event for the
target URL before anything else.
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

from infernet_conformance import CaseContext, CaseSkipped, case, check

SECTION = "spec/nostr.md §Events"
C0_STRESS = "".join(chr(c) for c in range(0x20)) + '"\\\u2028\u2029\x7f é 分布式 😀 e\u0301'


def _event(
    sk: bytes, kind: int, tags: list[list[str]], content: str, created_at: int | None = None
) -> dict[str, Any]:
    from coincurve import PrivateKey  # noqa: PLC0415

    key = PrivateKey(sk)
    pubkey = key.public_key_xonly.format().hex()
    created = int(time.time()) if created_at is None else created_at
    ser = json.dumps(
        [0, pubkey, created, kind, tags, content], separators=(",", ":"), ensure_ascii=False
    )
    eid = hashlib.sha256(ser.encode()).hexdigest()
    sig = key.sign_schnorr(bytes.fromhex(eid), os.urandom(32)).hex()
    return {
        "id": eid,
        "pubkey": pubkey,
        "created_at": created,
        "kind": kind,
        "tags": tags,
        "content": content,
        "sig": sig,
    }


class _Relay:
    def __init__(self, ws: Any, timeout: float) -> None:
        self.ws, self.timeout = ws, timeout

    async def recv(self) -> list[Any]:
        msg: list[Any] = json.loads(await asyncio.wait_for(self.ws.recv(), self.timeout))
        check(
            isinstance(msg, list) and bool(msg), f"relay sent a non-array message: {str(msg)[:120]}"
        )
        return msg

    async def publish(self, event: dict[str, Any]) -> tuple[bool, str]:
        """(accepted, reason) from the relay's OK (or a NOTICE, counted as a refusal)."""
        await self.ws.send(json.dumps(["EVENT", event], ensure_ascii=False))
        while True:
            msg = await self.recv()
            if msg[0] == "OK":
                return bool(msg[2]), str(msg[3]) if len(msg) > 3 else ""
            if msg[0] == "NOTICE":
                return False, str(msg[1])

    async def query(self, flt: dict[str, Any]) -> list[dict[str, Any]]:
        sub = os.urandom(4).hex()
        await self.ws.send(json.dumps(["REQ", sub, flt]))
        out: list[dict[str, Any]] = []
        while True:
            msg = await self.recv()
            if msg[0] == "EOSE" and msg[1] == sub:
                await self.ws.send(json.dumps(["CLOSE", sub]))
                return out
            if msg[0] == "EVENT" and msg[1] == sub:
                out.append(msg[2])


@asynccontextmanager
async def _relay(ctx: CaseContext, sk: bytes) -> AsyncIterator[_Relay]:
    try:
        from websockets.asyncio.client import connect  # noqa: PLC0415
    except ImportError:  # pragma: no cover - websockets is a dev dependency
        raise CaseSkipped("the `websockets` package is needed for nostr.* cases") from None
    url = ctx.require("nostr").url
    async with connect(url, open_timeout=ctx.timeout, close_timeout=2, max_size=1 << 22) as ws:
        relay = _Relay(ws, ctx.timeout)
        try:  # a relay that requires NIP-42 speaks first
            first = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
        except TimeoutError:
            first = None
        if isinstance(first, list) and first[:1] == ["AUTH"] and len(first) > 1:
            auth = _event(sk, 22242, [["relay", url], ["challenge", str(first[1])]], "")
            await ws.send(json.dumps(["AUTH", auth]))
        yield relay


def _same(sent: dict[str, Any], got: dict[str, Any]) -> bool:
    return all(got.get(k) == sent[k] for k in sent)


@case(
    "nostr.relay.roundtrip",
    section=SECTION,
    description="Infernet kinds 8200, 8201 and 38201 are stored and returned unchanged",
)
async def _(ctx: CaseContext) -> None:
    sk = os.urandom(32)
    async with _relay(ctx, sk) as relay:
        pk = _event(sk, 1, [], "")["pubkey"]
        events = [
            _event(sk, 8200, [["job", "j-conformance-1"], ["p", pk], ["result", "ab" * 32]], ""),
            _event(sk, 8201, [["p", pk], ["job", "j-conformance-1"], ["verdict", "ok"]], ""),
            _event(
                sk,
                38201,
                [
                    ["d", "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"],
                    ["endpoint", "ws://127.0.0.1:1/content"],
                ],
                "",
            ),
        ]
        for ev in events:
            ok, reason = await relay.publish(ev)
            check(ok, f"kind {ev['kind']} refused: {reason}")
        got = {e.get("id"): e for e in await relay.query({"authors": [pk]})}
    for ev in events:
        check(ev["id"] in got, f"kind {ev['kind']} event not returned by REQ authors")
        check(_same(ev, got[ev["id"]]), f"kind {ev['kind']} event came back altered")


@case(
    "nostr.relay.escaping",
    section=SECTION,
    description="content with every C0 control, quotes, U+2028/9 and non-ASCII is accepted and returned intact",
)
async def _(ctx: CaseContext) -> None:
    sk = os.urandom(32)
    ev = _event(sk, 1, [["t", C0_STRESS]], C0_STRESS)
    async with _relay(ctx, sk) as relay:
        ok, reason = await relay.publish(ev)
        check(
            ok,
            f"a correctly signed event with control characters was refused: {reason!r} (NIP-01 escaping: lower-case \\u00XX)",
        )
        got = await relay.query({"ids": [ev["id"]]})
    check(len(got) == 1 and _same(ev, got[0]), "the event did not come back intact")


@case(
    "nostr.relay.bad_signature",
    section=SECTION,
    description="an event whose signature does not verify is refused and not served",
)
async def _(ctx: CaseContext) -> None:
    sk = os.urandom(32)
    ev = _event(sk, 8201, [["verdict", "ok"]], "forged?")
    ev["sig"] = ("0" if ev["sig"][0] != "0" else "1") + ev["sig"][1:]
    async with _relay(ctx, sk) as relay:
        ok, _reason = await relay.publish(ev)
        check(not ok, "relay accepted an event with a broken signature")
        check(
            await relay.query({"ids": [ev["id"]]}) == [],
            "relay serves an event with a broken signature",
        )


@case(
    "nostr.relay.addressable",
    section="spec/nostr.md §Event kinds rule 11",
    description="a newer 38201 record with the same d tag replaces the older one",
)
async def _(ctx: CaseContext) -> None:
    sk = os.urandom(32)
    d = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    now = int(time.time())
    old = _event(sk, 38201, [["d", d], ["endpoint", "ws://127.0.0.1:1/old"]], "", now - 10)
    new = _event(sk, 38201, [["d", d], ["endpoint", "ws://127.0.0.1:1/new"]], "", now)
    async with _relay(ctx, sk) as relay:
        for ev in (old, new):
            ok, reason = await relay.publish(ev)
            check(ok, f"38201 refused: {reason}")
        got = await relay.query({"kinds": [38201], "authors": [old["pubkey"]]})
    check(
        [e.get("id") for e in got] == [new["id"]],
        f"expected only the newer record, got {len(got)} event(s)",
    )
