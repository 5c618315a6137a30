"""``dht.*``: black-box checks of a DHT node's UDP endpoint against spec/dht.md.

The target is ``--target udp://host:port``. Cases speak the wire format with a client written
here (deterministic CBOR from ``infernet_ref.encoding``, keys from coincurve, events signed with
``infernet_ref.nostr``) — not the reference DHT — so they can send what a well-behaved node never
would. Queries from the suite are not answered: the node under test may send the suite's socket
a challenge PING (spec/dht.md §Identity 4); the client ignores datagrams whose ``t`` it did not
choose. "ERROR or silence" cases accept either and then check that the node still answers.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import time
from typing import Any

import cbor2
from coincurve import PublicKeyXOnly

from infernet_conformance import CaseContext, CaseFailed, case, check
from infernet_ref.encoding import cbor_encode
from infernet_ref.nostr import sign_event

CID = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"


class _Proto(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait(data)


class Client:
    """A raw DHT client on its own UDP socket."""

    def __init__(self, ctx: CaseContext) -> None:
        self.ep = ctx.require("dht")
        self.timeout = min(ctx.timeout, 3.0)
        self.id = os.urandom(32)
        self.transport: asyncio.DatagramTransport | None = None
        self.proto = _Proto()

    async def __aenter__(self) -> Client:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self.proto, remote_addr=(self.ep.host, self.ep.port)
        )
        self.transport = transport
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.transport is not None:
            self.transport.close()

    @property
    def to(self) -> list[Any]:
        """The node's address as we send to it: [packed IP, port] (spec/dht.md §Identity 2)."""
        assert self.transport is not None
        host, port = self.transport.get_extra_info("peername")[:2]
        return [ipaddress.ip_address(host).packed, int(port)]

    def send_raw(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data)

    async def recv_for(self, t: bytes, timeout: float | None = None) -> dict[str, Any] | None:
        """The next datagram echoing ``t`` (None on timeout); others are skipped."""
        end = time.monotonic() + (timeout or self.timeout)
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            try:
                data = await asyncio.wait_for(self.proto.queue.get(), left)
            except TimeoutError:
                return None
            try:
                msg = cbor2.loads(data)
            except Exception as exc:
                raise CaseFailed(f"node sent a datagram that is not CBOR: {exc}") from exc
            if isinstance(msg, dict) and msg.get("t") == t:
                check(
                    cbor_encode(msg) == data, "reply is not deterministic CBOR (spec/dht.md rule 5)"
                )
                msg["_size"] = len(data)
                return msg

    async def query(
        self, op: str, body: dict[str, Any], *, pad: int = 480, v: int = 1
    ) -> tuple[bytes, dict[str, Any] | None]:
        t = os.urandom(8)
        body = dict(body, id=self.id)
        data = cbor_encode({"v": v, "t": t, "y": "q", "op": op, "body": body})
        if pad and len(data) < pad:
            body["pad"] = bytes(pad - len(data) - 4)
            data = cbor_encode({"v": v, "t": t, "y": "q", "op": op, "body": body})
        self.send_raw(data)
        return t, await self.recv_for(t)

    async def response(self, op: str, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
        _, msg = await self.query(op, body, **kw)
        check(msg is not None, f"no answer to {op} within {self.timeout:.0f} s")
        assert msg is not None
        check(msg["y"] == "r", f"{op} got {msg['y']!r} instead of a response: {msg.get('body')}")
        return msg

    async def still_answers(self) -> None:
        msg = await self.response("PING", {})
        check(msg["op"] == "PING", "node stopped answering PING after hostile input")


def _record(created_at: int | None = None) -> tuple[bytes, dict[str, Any]]:
    sk = os.urandom(32)
    ev = sign_event(
        {
            "kind": 38201,
            "tags": [["d", CID], ["endpoint", "ws://127.0.0.1:9/content"]],
            "content": "",
            "created_at": created_at or int(time.time()),
        },
        sk,
    )
    return hashlib.sha256(b"infernet/dht/v1/content\x00" + CID.encode()).digest(), ev


@case(
    "dht.ping.txid",
    section="spec/dht.md rules 5, 9",
    description="PING is answered with the same 8-byte transaction id, y=r, the responder's 32-byte ID and a token.",
)
async def _(ctx: CaseContext) -> None:
    async with Client(ctx) as c:
        t, msg = await c.query("PING", {})
        check(msg is not None, "no answer to PING")
        assert msg is not None
        check(
            msg["t"] == t and msg["y"] == "r" and msg["op"] == "PING",
            "PING reply does not echo t/op",
        )
        body = msg["body"]
        check(
            isinstance(body.get("id"), bytes) and len(body["id"]) == 32,
            "response lacks a 32-byte id",
        )
        check(
            isinstance(body.get("tk"), bytes) and 1 <= len(body["tk"]) <= 32,
            "response lacks a token",
        )


@case(
    "dht.ping.proof",
    section="spec/dht.md §Identity 1-2",
    description="A challenge is answered with pk and a BIP-340 signature over sha256(domain || c || querier ID || responder address), and id = sha256(pk).",
)
async def _(ctx: CaseContext) -> None:
    async with Client(ctx) as c:
        nonce = os.urandom(16)
        body = (await c.response("PING", {"c": nonce, "to": c.to}))["body"]
        check("pk" in body and "sig" in body, "challenged PING reply carries no key proof")
        ip, port = c.to
        digest = hashlib.sha256(
            b"infernet/dht/v2/challenge\x00" + nonce + c.id + ip + port.to_bytes(2, "big")
        ).digest()
        try:
            ok = PublicKeyXOnly(body["pk"]).verify(body["sig"], digest)
        except (ValueError, TypeError):
            ok = False
        check(ok, "challenge signature does not verify")
        check(
            hashlib.sha256(body["pk"]).digest() == body["id"], "node ID is not sha256(public key)"
        )


@case(
    "dht.ping.proof_not_relayable",
    section="spec/dht.md §Identity 2",
    description="A challenge naming an address other than the node's own ('to') gets no key proof, so a relay cannot pass the node's proof off as its own.",
)
async def _(ctx: CaseContext) -> None:
    async with Client(ctx) as c:
        ip, port = c.to
        other = [ip, port % 65535 + 1]  # the node's IP, another port: a relay's address
        _, msg = await c.query("PING", {"c": os.urandom(16), "to": other})
        if msg is not None:
            check(
                msg["y"] == "e" or "sig" not in msg["body"],
                "node signed a challenge for an address that is not its own",
            )
        _, msg = await c.query("PING", {"c": os.urandom(16)})
        check(msg is None or msg["y"] == "e", "a challenge without 'to' got a response")
        await c.still_answers()


@case(
    "dht.find_node.sorted",
    section="spec/dht.md rule 10",
    description="FIND_NODE answers at most k=20 well-formed contacts, sorted by XOR distance to the target, without the querier.",
)
async def _(ctx: CaseContext) -> None:
    async with Client(ctx) as c:
        for _ in range(3):
            target = os.urandom(32)
            nodes = (await c.response("FIND_NODE", {"target": target}))["body"].get("nodes", [])
            check(isinstance(nodes, list) and len(nodes) <= 20, "more than k contacts")
            for n in nodes:
                check(
                    isinstance(n, list)
                    and len(n) == 3
                    and isinstance(n[0], bytes)
                    and len(n[0]) == 32
                    and isinstance(n[1], bytes)
                    and len(n[1]) in (4, 16)
                    and isinstance(n[2], int)
                    and 1 <= n[2] <= 65535,
                    f"malformed contact {n!r}",
                )
            dist = [int.from_bytes(n[0], "big") ^ int.from_bytes(target, "big") for n in nodes]
            check(dist == sorted(dist), "contacts are not sorted by XOR distance")
            check(len(set(dist)) == len(dist), "duplicate contacts")
            check(all(n[0] != c.id for n in nodes), "the querier was returned as a contact")


@case(
    "dht.store.token_required",
    section="spec/dht.md rule 32",
    description="STORE without a valid write token for the sender's address is refused with ERROR 205.",
)
async def _(ctx: CaseContext) -> None:
    async with Client(ctx) as c:
        key, ev = _record()
        _, msg = await c.query("STORE", {"key": key, "ev": ev, "tk": os.urandom(8)}, pad=0)
        check(msg is not None, "no answer to STORE with a bogus token")
        assert msg is not None
        check(
            msg["y"] == "e" and msg["body"].get("code") == 205,
            f"bogus token not refused with 205: {msg['body']}",
        )
        async with Client(ctx) as other:  # a token issued to another address is no better
            tk = (await other.response("PING", {}))["body"]["tk"]
        _, msg = await c.query("STORE", {"key": key, "ev": ev, "tk": tk}, pad=0)
        check(
            msg is not None and msg["y"] == "e" and msg["body"].get("code") == 205,
            "a token issued to another address was accepted",
        )


@case(
    "dht.store.bad_signature",
    section="spec/dht.md rule 28",
    description="STORE of an event whose signature (or id) does not verify is refused with ERROR 206.",
)
async def _(ctx: CaseContext) -> None:
    async with Client(ctx) as c:
        tk = (await c.response("PING", {}))["body"]["tk"]
        key, ev = _record()
        for bad in (
            dict(ev, sig=ev["sig"][:-2] + ("00" if ev["sig"][-2:] != "00" else "01")),
            dict(ev, tags=[["d", CID], ["endpoint", "ws://evil/"]]),
        ):
            _, msg = await c.query("STORE", {"key": key, "ev": bad, "tk": tk}, pad=0)
            check(
                msg is not None and msg["y"] == "e" and msg["body"].get("code") == 206,
                f"forged event not refused with 206: {msg and msg['body']}",
            )


@case(
    "dht.store.find_value",
    section="spec/dht.md rules 28-31",
    description="A valid record stored with the node's token is returned by FIND_VALUE for its key; a record under a key not derived from it is refused (207).",
)
async def _(ctx: CaseContext) -> None:
    async with Client(ctx) as c:
        tk = (await c.response("PING", {}))["body"]["tk"]
        key, ev = _record()
        body = (await c.response("STORE", {"key": key, "ev": ev, "tk": tk}, pad=0))["body"]
        check(body.get("stored") in (0, 1), "STORE response lacks 'stored'")
        values = (await c.response("FIND_VALUE", {"key": key, "tk": tk}, pad=0))["body"].get(
            "values", []
        )
        check(
            any(v.get("id") == ev["id"] for v in values), "stored record not returned by FIND_VALUE"
        )
        _, msg = await c.query("STORE", {"key": os.urandom(32), "ev": ev, "tk": tk}, pad=0)
        check(
            msg is not None and msg["y"] == "e" and msg["body"].get("code") == 207,
            "record accepted under a key not derived from it",
        )


async def _silence_or_error(
    c: Client, data: bytes, t: bytes | None, codes: tuple[int, ...]
) -> None:
    c.send_raw(data)
    if t is not None:
        msg = await c.recv_for(t, 1.0)
        if msg is not None:
            check(
                msg["y"] == "e" and msg["body"].get("code") in codes,
                f"expected ERROR {codes} or silence, got {msg['y']} {msg['body']}",
            )
            check(
                msg["_size"] <= 3 * len(data) or len(data) < 16, "ERROR larger than 3x the datagram"
            )
    else:
        await asyncio.sleep(0.3)
    await c.still_answers()


@case(
    "dht.malformed.cbor",
    section="spec/dht.md rules 5, 13",
    description="Bytes that are not CBOR, and CBOR that is not deterministic, get silence or ERROR, and the node keeps answering.",
)
async def _(ctx: CaseContext) -> None:
    async with Client(ctx) as c:
        for junk in (b"\xff\xfe\xfd", b"", os.urandom(64), b"\x9f\x01\xff"):
            await _silence_or_error(c, junk, None, ())
        t = os.urandom(8)
        canonical = cbor_encode({"v": 1, "t": t, "y": "q", "op": "PING", "body": {"id": c.id}})
        # The same map with its keys in insertion (not bytewise) order: not deterministic.
        loose = cbor2.dumps({"v": 1, "t": t, "y": "q", "op": "PING", "body": {"id": c.id}})
        if loose != canonical:
            await _silence_or_error(c, loose, t, (203,))


@case(
    "dht.malformed.unknown_op",
    section="spec/dht.md rule 12",
    description="An unknown operation gets ERROR 204 or silence; an unsupported version gets ERROR 208 or silence; a query missing a required field gets ERROR 203 or silence.",
)
async def _(ctx: CaseContext) -> None:
    async with Client(ctx) as c:
        t = os.urandom(8)
        await _silence_or_error(
            c,
            cbor_encode({"v": 1, "t": t, "y": "q", "op": "FROB", "body": {"id": c.id}}),
            t,
            (204,),
        )
        t = os.urandom(8)
        await _silence_or_error(
            c,
            cbor_encode({"v": 9, "t": t, "y": "q", "op": "PING", "body": {"id": c.id}}),
            t,
            (208,),
        )
        t = os.urandom(8)
        await _silence_or_error(
            c,
            cbor_encode({"v": 1, "t": t, "y": "q", "op": "FIND_NODE", "body": {"id": c.id}}),
            t,
            (203,),
        )


@case(
    "dht.malformed.oversized",
    section="spec/dht.md rule 6",
    description="A datagram over 4096 bytes is dropped unread (no answer), and the node keeps answering.",
)
async def _(ctx: CaseContext) -> None:
    async with Client(ctx) as c:
        t = os.urandom(8)
        big = cbor_encode(
            {"v": 1, "t": t, "y": "q", "op": "PING", "body": {"id": c.id, "pad": bytes(5000)}}
        )
        c.send_raw(big)
        msg = await c.recv_for(t, 1.0)
        check(msg is None, "an oversized datagram was answered")
        await c.still_answers()


@case(
    "dht.amplification.unverified",
    section="spec/dht.md rule 14",
    description="Answers to an unverified source (no token, unpadded query) are at most 3 times the query's size.",
)
async def _(ctx: CaseContext) -> None:
    async with Client(ctx) as c:
        for op, body in (
            ("FIND_NODE", {"target": os.urandom(32), "c": os.urandom(16), "to": c.to}),
            ("FIND_VALUE", {"key": os.urandom(32), "c": os.urandom(16), "to": c.to}),
            ("PING", {"c": os.urandom(16), "to": c.to}),
        ):
            t = os.urandom(8)
            data = cbor_encode({"v": 1, "t": t, "y": "q", "op": op, "body": dict(body, id=c.id)})
            c.send_raw(data)
            msg = await c.recv_for(t, 1.0)
            if msg is not None:
                check(
                    msg["_size"] <= 3 * len(data),
                    f"{op}: {msg['_size']} bytes answered to {len(data)}",
                )
