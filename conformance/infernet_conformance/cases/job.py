"""``job.*``: black-box checks of a node's job-protocol endpoint (spec/job.md).

Target: ``--target job=ws://HOST:PORT/job``. The client is the third-party ``websockets``
library; auth events are built and BIP-340-signed here with ``coincurve`` and ``hashlib`` from
the NIP-01 rules, so the cases do not lean on the reference implementation's code. Cases check
authentication (challenge first, refusal before auth, bad signature, foreign challenge, stale
and replayed events), error codes for malformed, unknown-type, wrong-version, schema-invalid,
oversized and unannounced-binary input with the connection staying usable, and heartbeats.

The ``job.route.*`` cases talk to a provider (``--target provider=ws://HOST:PORT/job?model=<CID>
&model_dir=<path>``, the provider serving every layer of that model) as a driver of directly
routed sessions (spec/job.md §Direct routing): forwards only from ``route.prev``, inputs only
sealed by ``route.client``, and a whole single-stage ring whose tokens are compared with Hugging
Face ``transformers`` greedy decoding. Activation frames are safetensors blobs built here from
the format's rules; sealed payloads use the reference NIP-44 code (checked elsewhere against
the NIP-44 vectors). ``job.inputs.misaddressed`` needs ``?model=<CID>`` on the job target.
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
async def _connect(
    ctx: CaseContext, max_size: int = 64 * 2**20, name: str = "job"
) -> AsyncIterator[Any]:
    try:
        from websockets.asyncio.client import connect  # noqa: PLC0415
        from websockets.typing import Subprotocol  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        raise CaseSkipped("the `websockets` package is needed for job.* cases") from None
    url = ctx.require(name).url
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


# ---- directly routed sessions (spec/job.md §Direct routing, §Encryption) ----------------------
ROUTE = f"{SECTION} §Direct routing"
PROMPT = [1, 2, 3, 4, 5, 6]


def _model_target(ctx: CaseContext, name: str) -> tuple[str, dict[str, Any]]:
    """(model CID, the model's config.json) from ``?model=&model_dir=`` on target ``name``."""
    from urllib.parse import parse_qs, urlsplit  # noqa: PLC0415

    q = parse_qs(urlsplit(ctx.require(name).url).query)
    if "model" not in q or "model_dir" not in q:
        raise CaseSkipped(f"add ?model=<CID>&model_dir=<path> to the {name} target")
    with open(os.path.join(q["model_dir"][0], "config.json"), encoding="utf-8") as f:
        cfg: dict[str, Any] = json.load(f)
    return q["model"][0], cfg


def _pub(sk: bytes) -> str:
    from coincurve import PrivateKey  # noqa: PLC0415

    return str(PrivateKey(sk).public_key_xonly.format().hex())


async def _login(ws: Any, ctx: CaseContext, sk: bytes) -> tuple[str, str]:
    """Authenticate as ``sk``; returns the node's key and endpoint from its challenge."""
    ch = await _challenge(ws, ctx)
    tags = [["endpoint", ch["endpoint"]], ["challenge", ch["challenge"]]]
    await ws.send(_msg("auth.response", {"event": _event(sk, 22242, tags, "", int(time.time()))}))
    reply = await _recv_json(ws, ctx)
    check(reply["type"] == "auth.ok", f"auth failed: {reply}")
    return str(ch["node"]), str(ch["endpoint"])


async def _reply_to(ws: Any, ctx: CaseContext, msg_id: str) -> dict[str, Any]:
    """The next message answering ``msg_id``; a routed failure report also ends the wait."""
    for _ in range(64):
        msg = await _recv_json(ws, ctx)
        if msg.get("re") == msg_id or msg["type"] == "stage.failed":
            return msg
    raise CaseFailed(f"no reply to {msg_id}")


async def _call(
    ws: Any, ctx: CaseContext, msg_type: str, body: dict[str, Any], msg_id: str
) -> dict[str, Any]:
    await ws.send(_msg(msg_type, body, msg_id))
    reply = await _reply_to(ws, ctx, msg_id)
    check(reply["type"] not in ("sys.error", "job.reject"), f"{msg_type} refused: {reply['body']}")
    return reply


def _ids_frame(session: str, position: int, ids: list[int]) -> bytes:
    """An ``input_ids`` activation frame (spec/runtime.md §5.1): safetensors, I64, little-endian."""
    data = b"".join(int(t).to_bytes(8, "little", signed=True) for t in ids)
    header = {
        "__metadata__": {
            "format": "infernet.activation.v1",
            "session": session,
            "position": str(position),
        },
        "input_ids": {"dtype": "I64", "shape": [len(ids)], "data_offsets": [0, len(data)]},
    }
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return len(h).to_bytes(8, "little") + h + data


async def _send_forward(
    ws: Any, session: str, frame: bytes, msg_id: str, *, step: int, position: int
) -> None:
    payload = {"size": len(frame), "sha256": hashlib.sha256(frame).hexdigest()}
    body = {
        "session": session,
        "step": step,
        "position": position,
        "payload": {**payload, "format": "safetensors"},
    }
    await ws.send(_msg("stage.forward", body, msg_id))
    await ws.send(frame)


async def _open_routed(
    ws: Any,
    ctx: CaseContext,
    model: str,
    cfg: dict[str, Any],
    *,
    prev: str,
    nxt: tuple[str, str],
    client: str,
    new_tokens: int = 4,
) -> str:
    """Offer, assign and open a routed single-stage session of the whole model; its id."""
    layers = int(cfg["num_hidden_layers"])
    shard = {"stage": 0, "layer_start": 0, "layer_end": layers, "num_layers": layers, "tp": 1}
    job, session = "j-" + os.urandom(8).hex(), "s" + os.urandom(8).hex()
    max_tokens = len(PROMPT) + new_tokens
    offer = {"job": job, "model": model, "shard": shard, "max_tokens": max_tokens}
    await _call(ws, ctx, "job.offer", offer, "o1")
    await _call(ws, ctx, "job.assign", {"job": job, "model": model, "shard": shard}, "o2")
    route = {
        "prev": prev,
        "next": {"node": nxt[0], "endpoint": nxt[1]},
        "client": client,
        "generation": {
            "prompt_tokens": len(PROMPT),
            "max_new_tokens": new_tokens,
            "sampling": {"temperature": 0, "seed": 0},
        },
    }
    body = {"job": job, "session": session, "shard": shard, "max_tokens": max_tokens}
    reply = await _call(ws, ctx, "stage.open", {**body, "route": route}, "o3")
    check(reply["type"] == "stage.ready", f"stage.open answered {reply['type']}")
    return session


@case(
    "job.route.forward_from_wrong_key",
    section=ROUTE,
    description="a routed session takes stage.forward only from route.prev: from its own driver "
    "(another key) it gets 4041",
)
async def _(ctx: CaseContext) -> None:
    model, cfg = _model_target(ctx, "provider")
    async with _connect(ctx, name="provider") as ws:
        sk, other = os.urandom(32), _pub(os.urandom(32))
        _, endpoint = await _login(ws, ctx, sk)
        sid = await _open_routed(
            ws, ctx, model, cfg, prev=other, nxt=(other, endpoint), client=_pub(sk)
        )
        await _send_forward(ws, sid, _ids_frame(sid, 0, PROMPT), "f1", step=0, position=0)
        _expect_error(await _reply_to(ws, ctx, "f1"), {4041}, "forward from a key not route.prev")
        await _still_usable(ws, ctx)


@case(
    "job.route.inputs_wrong_sender",
    section=f"{SECTION} §Encryption",
    description="stage.inputs sealed by a key other than route.client gets 4003",
)
async def _(ctx: CaseContext) -> None:
    from infernet_ref.node.payloads import seal_json  # noqa: PLC0415

    model, cfg = _model_target(ctx, "provider")
    async with _connect(ctx, name="provider") as ws:
        sk = os.urandom(32)
        node, endpoint = await _login(ws, ctx, sk)
        sid = await _open_routed(
            ws, ctx, model, cfg, prev=node, nxt=(node, endpoint), client=_pub(os.urandom(32))
        )
        forged = seal_json({"prompt_ids": PROMPT}, os.urandom(32), node)
        await ws.send(_msg("stage.inputs", {"session": sid, "inputs": forged}, "i1"))
        _expect_error(await _reply_to(ws, ctx, "i1"), {4003}, "inputs not sealed by route.client")
        await _still_usable(ws, ctx)


@case(
    "job.route.inputs_unknown_session",
    section=f"{SECTION} §Dispatch and pipeline sessions",
    description="stage.inputs for a session that was never opened gets 4041",
)
async def _(ctx: CaseContext) -> None:
    async with _connect(ctx, name="provider") as ws:
        sk = os.urandom(32)
        node, _ = await _login(ws, ctx, sk)
        sealed = {"scheme": "nip44", "from": _pub(sk), "to": node, "data": "AAAA"}
        body = {"session": "s" + os.urandom(8).hex(), "inputs": sealed}
        await ws.send(_msg("stage.inputs", body, "i1"))
        _expect_error(await _reply_to(ws, ctx, "i1"), {4041}, "inputs for an unknown session")
        await _still_usable(ws, ctx)


def _greedy(model_dir: str, prompt: list[int], n: int) -> list[int]:
    try:
        import torch  # noqa: PLC0415
        from transformers import AutoModelForCausalLM  # noqa: PLC0415
    except ImportError:  # pragma: no cover
        raise CaseSkipped("transformers is needed to compute the expected output") from None
    model: Any = AutoModelForCausalLM.from_pretrained(model_dir)
    model.eval()
    with torch.inference_mode():
        ids = torch.tensor([prompt])
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=0,
        )
    return [int(t) for t in out[0, len(prompt) :].tolist()]


@case(
    "job.route.single_stage_tokens",
    section=f"{SECTION} §Direct routing, §Result hash",
    description="a single-stage routed ring streams stage.token 0..n-1 sealed to the client, equal "
    "to transformers greedy decoding, the last with count, finish and SHA-256(salt || ids)",
)
async def _(ctx: CaseContext) -> None:
    from urllib.parse import parse_qs, urlsplit  # noqa: PLC0415

    from infernet_ref.node.payloads import open_json, seal_json  # noqa: PLC0415

    model, cfg = _model_target(ctx, "provider")
    n = 6
    want = _greedy(parse_qs(urlsplit(ctx.require("provider").url).query)["model_dir"][0], PROMPT, n)
    async with _connect(ctx, name="provider") as ws:
        sk, client_sk, salt = os.urandom(32), os.urandom(32), os.urandom(32)
        node, endpoint = await _login(ws, ctx, sk)
        sid = await _open_routed(
            ws,
            ctx,
            model,
            cfg,
            prev=node,
            nxt=(node, endpoint),
            client=_pub(client_sk),
            new_tokens=n,
        )
        sealed = seal_json({"prompt_ids": PROMPT, "salt": salt.hex()}, client_sk, node)
        await _call(ws, ctx, "stage.inputs", {"session": sid, "inputs": sealed}, "i1")
        got: list[int] = []
        last: dict[str, Any] = {}
        while not last.get("done"):
            msg = await _recv_json(ws, ctx)
            if msg["type"] == "stage.failed":
                raise CaseFailed(f"the ring failed: {msg['body']}")
            if msg["type"] != "stage.token":
                continue
            last = msg["body"]
            check(last["index"] == len(got), f"token index {last['index']}, expected {len(got)}")
            check(last["tokens"]["from"] == node, "tokens not sealed by the stage-0 provider")
            got.extend(open_json(last["tokens"], client_sk, sender=node)["ids"])
            check(len(got) <= n, "more tokens than max_new_tokens")
        check(got == want, f"tokens {got} differ from transformers greedy {want}")
        check(last.get("count") == n and last.get("finish") == "length", f"bad last token {last}")
        sha = hashlib.sha256(salt + b"".join(t.to_bytes(4, "big") for t in want)).hexdigest()
        check(last.get("output_sha256") == sha, "output_sha256 is not SHA-256(salt || ids)")
        check(open_json(last["output"], client_sk, sender=node)["ids"] == want, "bad output")
        await _call(ws, ctx, "stage.close", {"session": sid}, "c1")


@case(
    "job.inputs.misaddressed",
    section=f"{SECTION} §Submission",
    description="an aggregator refuses job.inputs not sealed to the replica's stage-0 provider (4003)",
)
async def _(ctx: CaseContext) -> None:
    from urllib.parse import parse_qs, urlsplit  # noqa: PLC0415

    q = parse_qs(urlsplit(ctx.require("job").url).query)
    if "model" not in q:
        raise CaseSkipped("add ?model=<CID> to the job target")
    async with _connect(ctx) as ws:
        sk = os.urandom(32)
        await _login(ws, ctx, sk)
        job = "j-" + os.urandom(8).hex()
        submit = {
            "job": job,
            "model": q["model"][0],
            "prompt_tokens": len(PROMPT),
            "params": {"max_new_tokens": 2, "sampling": {"temperature": 0, "seed": 0}},
            "redundancy": 1,
        }
        reply = await _call(ws, ctx, "job.submit", submit, "j1")
        check(reply["type"] == "job.accept", f"job.submit answered {reply['type']}")
        stranger = _pub(os.urandom(32))
        sealed = {"scheme": "nip44", "from": _pub(sk), "to": stranger, "data": "AAAA"}
        await ws.send(_msg("job.inputs", {"job": job, "replica": 0, "inputs": sealed}, "j2"))
        _expect_error(await _reply_to(ws, ctx, "j2"), {4003}, "misaddressed job.inputs")
        await _call(ws, ctx, "job.cancel", {"job": job}, "j3")
