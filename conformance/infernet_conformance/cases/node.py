"""``node.*`` (and the end-to-end ``job.run.*``): black-box checks of a node (spec/node.md).

Target: ``--target job=ws://HOST:PORT/job``; node info is read from the same host with a plain
``GET /.well-known/infernet`` (asyncio streams, no client library). The node-info event is
checked from the NIP-01 rules with ``hashlib`` and ``coincurve`` directly, and its content
against ``node-info.schema.json``. ``job.run.tiny_model`` needs ``?model=<CID>&model_dir=<path>``
on the job target: the suite holds the model's files, computes the expected greedy continuation
with Hugging Face ``transformers`` and checks the node's result hash against its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from typing import Any
from urllib.parse import parse_qs, urlsplit

from infernet_conformance import CaseContext, CaseFailed, CaseSkipped, case, check

SECTION = "spec/node.md §Node info"


async def _get(ctx: CaseContext, path: str) -> tuple[int, dict[str, str], bytes]:
    parts = urlsplit(ctx.require("job").url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), ctx.timeout)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
        )
        raw = await asyncio.wait_for(reader.read(4 << 20), ctx.timeout)
        while chunk := await asyncio.wait_for(reader.read(4 << 20), ctx.timeout):
            raw += chunk
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    check(lines[0].startswith("HTTP/1.1 "), f"not an HTTP/1.1 response: {lines[0][:60]!r}")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _verify_event(ev: Any) -> None:
    from coincurve import PublicKeyXOnly  # noqa: PLC0415

    check(
        isinstance(ev, dict)
        and set(ev) == {"id", "pubkey", "created_at", "kind", "tags", "content", "sig"},
        "not a NIP-01 event",
    )
    ser = json.dumps(
        [0, ev["pubkey"], ev["created_at"], ev["kind"], ev["tags"], ev["content"]],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    digest = hashlib.sha256(ser.encode()).digest()
    check(digest.hex() == ev["id"], "event id is not sha256 of its serialization")
    check(
        PublicKeyXOnly(bytes.fromhex(ev["pubkey"])).verify(bytes.fromhex(ev["sig"]), digest),
        "event signature does not verify",
    )


async def fetch_info(ctx: CaseContext) -> dict[str, Any]:
    """GET /.well-known/infernet, verified; returns the content object."""
    status, headers, body = await _get(ctx, "/.well-known/infernet")
    check(status == 200, f"GET /.well-known/infernet answered {status}")
    check(
        headers.get("content-type", "").startswith("application/json"),
        "node info must be application/json",
    )
    ev = json.loads(body)
    _verify_event(ev)
    check(
        ev["kind"] == 38202 and ["d", "node"] in ev["tags"],
        "node info must be kind 38202 with tag [d, node]",
    )
    content = json.loads(ev["content"])
    check(content.get("pubkey") == ev["pubkey"], "content.pubkey differs from the signer")
    check(
        content.get("node_id") == hashlib.sha256(bytes.fromhex(ev["pubkey"])).hexdigest(),
        "node_id is not sha256(pubkey)",
    )
    out: dict[str, Any] = content
    return out


@case(
    "node.info.signed",
    section=SECTION,
    description="GET /.well-known/infernet returns a kind-38202 event whose id, signature and keys verify",
)
async def _(ctx: CaseContext) -> None:
    await fetch_info(ctx)


@case(
    "node.info.schema",
    section=SECTION,
    description="the node-info content validates against node-info.schema.json",
)
async def _(ctx: CaseContext) -> None:
    from infernet_ref.errors import ValidationError  # noqa: PLC0415
    from infernet_ref.specs import validate_data  # noqa: PLC0415

    content = await fetch_info(ctx)
    try:
        validate_data(content, "node-info")
    except ValidationError as exc:
        raise CaseFailed(f"node info invalid: {exc}") from exc


@case(
    "node.info.matches_auth",
    section=SECTION,
    description="the key in node info is the key the job endpoint's challenge names",
)
async def _(ctx: CaseContext) -> None:
    from infernet_conformance.cases.job import _challenge, _connect  # noqa: PLC0415

    content = await fetch_info(ctx)
    async with _connect(ctx) as ws:
        ch = await _challenge(ws, ctx)
    check(ch["node"] == content["pubkey"], "auth.challenge names another key than node info")
    check(
        urlsplit(content["endpoints"]["ws"]).path == urlsplit(ch["endpoint"]).path,
        "node info ws endpoint path differs from the challenge's",
    )


@case(
    "job.run.tiny_model",
    section="spec/job.md §Result hash",
    description="a tiny-model job completes and its result hash equals the suite's own greedy computation",
)
async def _(ctx: CaseContext) -> None:
    q = parse_qs(urlsplit(ctx.require("job").url).query)
    if "model" not in q or "model_dir" not in q:
        raise CaseSkipped("add ?model=<CID>&model_dir=<path> to the job target")
    from infernet_conformance.cases.job import _greedy  # noqa: PLC0415
    from infernet_ref.node.client import submit_job  # noqa: PLC0415
    from infernet_ref.nostr import generate_secret_key  # noqa: PLC0415

    prompt, n = [1, 2, 3, 4, 5], 8
    expected = _greedy(q["model_dir"][0], prompt, n)  # transformers: the suite's own computation
    salt = os.urandom(32)  # spec/job.md §Result hash: SHA-256(salt || ids as u32 big-endian)
    want = hashlib.sha256(salt + b"".join(int(t).to_bytes(4, "big") for t in expected)).hexdigest()
    url = ctx.require("job").url.split("?")[0]
    out = await submit_job(
        url,
        generate_secret_key(),
        model=q["model"][0],
        prompt_ids=prompt,
        max_new_tokens=n,
        salt=salt,
        timeout=max(ctx.timeout, 120),
    )
    check(out.state == "completed", f"job ended {out.state}: {out.error}")
    check(
        out.output_sha256 == want,
        f"result hash {out.output_sha256} != expected {want} (tokens {out.tokens} vs {expected})",
    )
