"""The node-info document: a signed kind-38202 event (spec/node.md §Node info).

:func:`make_node_info` signs the canonical JSON of a ``node-info.schema.json`` object;
:func:`verify_node_info` is what a reader (and the conformance suite) runs: NIP-01 id and
signature, kind and ``d`` tag, the content's schema, and the two equalities ``content.pubkey ==
event.pubkey`` and ``content.node_id == sha256(pubkey)``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from infernet_ref.encoding import canonical_json, json_decode
from infernet_ref.errors import InfernetError
from infernet_ref.node.errors import JobProtocolError
from infernet_ref.specs import validate_data
from infernet_ref.version import __version__

KIND_NODE_INFO = 38202  # notes/CONTRACTS.md
SOFTWARE = f"infernet-ref/{__version__}"


def make_node_info(
    secret_key: bytes,
    *,
    roles: list[str],
    endpoints: dict[str, str],
    capabilities: dict[str, Any],
    started_at: int,
    now: int,
) -> dict[str, Any]:
    """Sign the node-info event of this node."""
    from infernet_ref.nostr import public_key, sign_event  # noqa: PLC0415

    pk = public_key(secret_key)
    content = {
        "v": 1,
        "software": SOFTWARE,
        "pubkey": pk.hex(),
        "node_id": hashlib.sha256(pk).hexdigest(),
        "roles": roles,
        "endpoints": endpoints,
        "capabilities": capabilities,
        "started_at": started_at,
    }
    validate_data(content, "node-info")
    template = {
        "kind": KIND_NODE_INFO,
        "tags": [["d", "node"]],
        "content": canonical_json(content).decode(),
        "created_at": now,
    }
    return sign_event(template, secret_key)


def verify_node_info(event: Any) -> dict[str, Any]:
    """Return the verified content of a node-info event or raise JobProtocolError naming the rule."""
    from infernet_ref.nostr import verify_event  # noqa: PLC0415

    if not verify_event(event):
        raise JobProtocolError("node-info event id or signature does not verify")
    if event["kind"] != KIND_NODE_INFO or ["d", "node"] not in event["tags"]:
        raise JobProtocolError("node-info must be kind 38202 with tag [d, node]")
    try:
        content = json_decode(event["content"].encode(), max_size=65536)
        validate_data(content, "node-info")
    except InfernetError as exc:
        raise JobProtocolError(f"node-info content invalid: {exc}") from exc
    if content["pubkey"] != event["pubkey"]:
        raise JobProtocolError("node-info content.pubkey differs from the signer")
    if content["node_id"] != hashlib.sha256(bytes.fromhex(event["pubkey"])).hexdigest():
        raise JobProtocolError("node-info node_id is not sha256(pubkey)")
    out: dict[str, Any] = content
    return out
