"""DHT values: signed NOSTR records, their keys and their validation (spec/dht.md §Values, §Keys).

Theory of operation: the DHT stores only NIP-01 events of three addressable kinds
(notes/CONTRACTS.md): 38200 provider announcements, 38201 content provider records and 38202 node
records. Each kind has a key derivation (a domain-separated sha256), and an event may be stored
only under a key derived from its own fields, so nobody can plant a record under a key it does
not describe. :func:`validate_record` is the one gate every STORE and every value a lookup
receives passes: size, NIP-01 shape/id/signature (``infernet_ref.nostr.verify_event``), kind,
key binding, clock skew and expiry. It returns the record's expiry time. Signature checks are
cached by (id, sig) because a swarm hands the same record around many times.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from infernet_ref.dht.wire import ErrorCode
from infernet_ref.encoding import json_decode
from infernet_ref.errors import InfernetError, RemoteProtocolError
from infernet_ref.nostr import public_key, sign_event, verify_event
from infernet_ref.specs import validate_data

#: notes/CONTRACTS.md event kinds.
KIND_PROVIDER = 38200
KIND_CONTENT_PROVIDER = 38201
KIND_NODE_RECORD = 38202
KINDS = frozenset({KIND_PROVIDER, KIND_CONTENT_PROVIDER, KIND_NODE_RECORD})

#: spec/dht.md §Values: the largest event (compact NIP-01 JSON, UTF-8) a node stores.
MAX_EVENT_BYTES = 3072
#: spec/dht.md §Values: a value lives at most this long after ``created_at`` (24 h, paper §2.5).
MAX_TTL = 86400
#: spec/dht.md §Values: ``created_at`` may be at most this far in the future.
MAX_SKEW = 600

_DOMAIN = b"infernet/dht/v1/"
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class RecordError(RemoteProtocolError):
    """A value broke spec/dht.md §Values; ``code`` is INVALID_VALUE or VALUE_REJECTED."""


def provider_key(model_cid: str) -> bytes:
    """spec/dht.md §Keys: sha256("infernet/dht/v1/provider" || 0x00 || model CID)."""
    return hashlib.sha256(_DOMAIN + b"provider\x00" + model_cid.encode()).digest()


def content_provider_key(cid: str) -> bytes:
    """spec/dht.md §Keys: sha256("infernet/dht/v1/content" || 0x00 || CID)."""
    return hashlib.sha256(_DOMAIN + b"content\x00" + cid.encode()).digest()


def node_record_key(node_id: bytes) -> bytes:
    """spec/dht.md §Keys: sha256("infernet/dht/v1/node" || 0x00 || node ID (32 bytes))."""
    return hashlib.sha256(_DOMAIN + b"node\x00" + node_id).digest()


def node_id_of(pubkey: bytes) -> bytes:
    """spec/dht.md §Identity: node ID = sha256(x-only public key)."""
    return hashlib.sha256(pubkey).digest()


def tag_value(event: dict[str, Any], name: str) -> str | None:
    """The first value of the first tag called ``name``."""
    for tag in event["tags"]:
        if len(tag) >= 2 and tag[0] == name:
            return str(tag[1])
    return None


def event_size(event: dict[str, Any]) -> int:
    """Size of the compact NIP-01 JSON form in bytes (spec/dht.md §Values)."""
    try:
        return len(_dumps(event).encode())
    except (TypeError, ValueError, UnicodeEncodeError):
        return MAX_EVENT_BYTES + 1


def parse_announcement(event: dict[str, Any]) -> dict[str, Any]:
    """Decode and check a kind-38200 content (spec/schemas/provider-announcement.schema.json)."""
    try:
        info = json_decode(event["content"].encode(), max_size=MAX_EVENT_BYTES)
        validate_data(info, "provider-announcement")
    except InfernetError as exc:
        raise RecordError(
            f"announcement content is invalid: {exc}", ErrorCode.INVALID_VALUE
        ) from exc
    if not isinstance(info, dict):
        raise RecordError("announcement content is not an object", ErrorCode.INVALID_VALUE)
    return info


def record_keys(event: dict[str, Any]) -> list[bytes]:
    """Every key ``event`` may be stored under (spec/dht.md §Keys)."""
    kind = event["kind"]
    node_id = node_id_of(bytes.fromhex(event["pubkey"]))
    d = tag_value(event, "d")
    if kind == KIND_PROVIDER:
        if d != node_id.hex():
            raise RecordError(
                "announcement 'd' tag must be the publisher's node ID", ErrorCode.VALUE_REJECTED
            )
        info = parse_announcement(event)
        return [node_record_key(node_id)] + [provider_key(m["cid"]) for m in info["models"]]
    if kind == KIND_CONTENT_PROVIDER:
        if d is None or tag_value(event, "endpoint") is None:
            raise RecordError(
                "content record needs 'd' (CID) and 'endpoint' tags", ErrorCode.VALUE_REJECTED
            )
        return [content_provider_key(d)]
    if kind == KIND_NODE_RECORD:
        if d != "node":
            raise RecordError("node record 'd' tag must be 'node'", ErrorCode.VALUE_REJECTED)
        return [node_record_key(node_id)]
    raise RecordError(f"kind {kind} is not stored in the DHT", ErrorCode.VALUE_REJECTED)


def expiry_of(event: dict[str, Any]) -> float:
    """created_at + MAX_TTL, or the NIP-40 ``expiration`` tag when that is sooner."""
    exp = float(event["created_at"] + MAX_TTL)
    tag = tag_value(event, "expiration")
    if tag is not None:
        try:
            exp = min(exp, float(int(tag)))
        except ValueError as exc:
            raise RecordError(
                "'expiration' tag is not an integer", ErrorCode.INVALID_VALUE
            ) from exc
    return exp


class RecordValidator:
    """spec/dht.md §Values validation with a bounded cache of verified signatures."""

    def __init__(
        self, verify: Callable[[Any], bool] = verify_event, cache_size: int = 8192
    ) -> None:
        self._verify = verify
        self._cache: OrderedDict[tuple[Any, Any], None] = OrderedDict()
        self._cache_size = cache_size

    def _verified(self, event: dict[str, Any]) -> bool:
        ck = (event.get("id"), event.get("sig"))
        if not (isinstance(ck[0], str) and isinstance(ck[1], str)):
            return False
        if ck in self._cache:
            self._cache.move_to_end(ck)
            # The id binds every other field; recompute it so a cached (id, sig) cannot
            # vouch for altered content.
            return _id_matches(event)
        if not self._verify(event):
            return False
        self._cache[ck] = None
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return True

    def validate(self, key: bytes, event: Any, now: float) -> float:
        """Check ``event`` for storage under ``key`` at wall time ``now``; return its expiry."""
        if not isinstance(event, dict):
            raise RecordError("value is not an event object", ErrorCode.INVALID_VALUE)
        if event_size(event) > MAX_EVENT_BYTES:
            raise RecordError(
                f"event larger than {MAX_EVENT_BYTES} bytes", ErrorCode.VALUE_REJECTED
            )
        if not self._verified(event):
            raise RecordError(
                "event id or signature does not verify (NIP-01)", ErrorCode.INVALID_VALUE
            )
        if event["kind"] not in KINDS:
            raise RecordError(
                f"kind {event['kind']} is not stored in the DHT", ErrorCode.VALUE_REJECTED
            )
        if event["created_at"] > now + MAX_SKEW:
            raise RecordError("created_at is too far in the future", ErrorCode.VALUE_REJECTED)
        exp = expiry_of(event)
        if exp <= now:
            raise RecordError("event has expired", ErrorCode.VALUE_REJECTED)
        if key not in record_keys(event):
            raise RecordError("key is not derived from this event", ErrorCode.VALUE_REJECTED)
        return exp


def _id_matches(event: dict[str, Any]) -> bool:
    try:
        ser = _dumps(
            [
                0,
                event["pubkey"],
                event["created_at"],
                event["kind"],
                event["tags"],
                event["content"],
            ]
        )
        return bool(hashlib.sha256(ser.encode()).hexdigest() == event["id"])
    except (TypeError, ValueError, KeyError, UnicodeEncodeError):
        return False


def build_announcement(
    sk: bytes, info: dict[str, Any], *, created_at: int, ttl: int | None = None
) -> dict[str, Any]:
    """A signed kind-38200 provider announcement (spec/dht.md §Provider announcements)."""
    validate_data(info, "provider-announcement")
    tags = [["d", node_id_of(public_key(sk)).hex()]]
    tags += [["m", m["cid"]] for m in info["models"]]
    if ttl is not None:
        tags.append(["expiration", str(created_at + ttl)])
    content = _dumps(info)
    return sign_event(
        {"kind": KIND_PROVIDER, "tags": tags, "content": content, "created_at": created_at}, sk
    )


def build_content_record(
    sk: bytes, cid: str, endpoint: str, *, created_at: int, ttl: int | None = None
) -> dict[str, Any]:
    """A signed kind-38201 "this node provides CID" record (spec/dht.md §Keys)."""
    tags = [["d", cid], ["endpoint", endpoint]]
    if ttl is not None:
        tags.append(["expiration", str(created_at + ttl)])
    return sign_event(
        {"kind": KIND_CONTENT_PROVIDER, "tags": tags, "content": "", "created_at": created_at}, sk
    )


def build_node_record(sk: bytes, info: dict[str, Any], *, created_at: int) -> dict[str, Any]:
    """A signed kind-38202 node record; ``info`` is the node-info document (JSON object)."""
    return sign_event(
        {
            "kind": KIND_NODE_RECORD,
            "tags": [["d", "node"]],
            "content": _dumps(info),
            "created_at": created_at,
        },
        sk,
    )
