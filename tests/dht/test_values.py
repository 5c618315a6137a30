"""Values (spec/dht.md §Values, §Keys, §Write tokens): validation, store rules, caps, tokens."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest

from infernet_ref.dht import records
from infernet_ref.dht.records import (
    MAX_SKEW,
    RecordError,
    RecordValidator,
    build_announcement,
    build_node_record,
    content_provider_key,
    node_record_key,
    provider_key,
)
from infernet_ref.dht.storage import StoreResult, ValueStore
from infernet_ref.dht.tokens import TokenIssuer
from infernet_ref.dht.wire import ErrorCode
from infernet_ref.nostr import public_key, sign_event

from .helpers import CID, NOW, content_record

SK = bytes([3]) * 32
ANN: dict[str, Any] = {
    "v": 1,
    "hardware": {
        "gpus": [{"model": "NVIDIA H100 80GB HBM3", "count": 2, "memory_mib": 81559}],
        "cpu": {"model": "AMD EPYC", "cores": 32},
        "ram_mib": 262144,
        "bandwidth_mbps": {"up": 1000, "down": 1000},
    },
    "models": [{"cid": CID, "name": "tiny", "layers": [0, 12], "total_layers": 24}],
    "load": {"queue": 1, "free_kv_blocks": 100},
    "price": {"amount": "0.5", "currency": "sat", "unit": "1k_tokens"},
    "endpoints": ["ws://127.0.0.1:8765/"],
    "software": {"name": "infernet-ref", "version": "0.1.0"},
    "uptime": 10,
}


def test_key_derivations_are_domain_separated_sha256() -> None:
    assert (
        provider_key(CID) == hashlib.sha256(b"infernet/dht/v1/provider\x00" + CID.encode()).digest()
    )
    assert (
        content_provider_key(CID)
        == hashlib.sha256(b"infernet/dht/v1/content\x00" + CID.encode()).digest()
    )
    nid = bytes(32)
    assert node_record_key(nid) == hashlib.sha256(b"infernet/dht/v1/node\x00" + nid).digest()
    assert len({provider_key(CID), content_provider_key(CID)}) == 2


def test_each_kind_validates_under_its_keys_only() -> None:
    v = RecordValidator()
    ann = build_announcement(SK, ANN, created_at=int(NOW))
    nid = hashlib.sha256(public_key(SK)).digest()
    assert v.validate(provider_key(CID), ann, NOW) == NOW + records.MAX_TTL
    v.validate(node_record_key(nid), ann, NOW)
    with pytest.raises(RecordError) as exc:
        v.validate(content_provider_key(CID), ann, NOW)
    assert exc.value.code == ErrorCode.VALUE_REJECTED
    key, ev = content_record(SK)
    v.validate(key, ev, NOW)
    node = build_node_record(SK, {"name": "n"}, created_at=int(NOW))
    v.validate(node_record_key(nid), node, NOW)
    with pytest.raises(RecordError):
        v.validate(node_record_key(bytes(32)), node, NOW)


def _tampered(ev: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return dict(ev, **changes)


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda ev: _tampered(ev, content="x"), ErrorCode.INVALID_VALUE),  # id mismatch
        (lambda ev: _tampered(ev, sig="00" * 64), ErrorCode.INVALID_VALUE),
        (lambda ev: _tampered(ev, kind="38201"), ErrorCode.INVALID_VALUE),
        (lambda ev: "not an event", ErrorCode.INVALID_VALUE),
        (
            lambda ev: sign_event(
                {"kind": 1, "tags": [], "content": "", "created_at": int(NOW)}, SK
            ),
            ErrorCode.VALUE_REJECTED,
        ),
        (
            lambda ev: content_record(SK, created_at=int(NOW + MAX_SKEW + 5))[1],
            ErrorCode.VALUE_REJECTED,
        ),
        (
            lambda ev: content_record(SK, created_at=int(NOW - records.MAX_TTL - 1))[1],
            ErrorCode.VALUE_REJECTED,
        ),
        (
            lambda ev: content_record(SK, created_at=int(NOW - 100), ttl=50)[1],
            ErrorCode.VALUE_REJECTED,
        ),
        (
            lambda ev: sign_event(
                {
                    "kind": 38201,
                    "tags": [["d", CID], ["endpoint", "ws://x"]],
                    "content": "x" * 4000,
                    "created_at": int(NOW),
                },
                SK,
            ),
            ErrorCode.VALUE_REJECTED,
        ),
        (
            lambda ev: sign_event(
                {"kind": 38201, "tags": [["d", CID]], "content": "", "created_at": int(NOW)}, SK
            ),
            ErrorCode.VALUE_REJECTED,
        ),
    ],
)
def test_bad_values_are_refused_with_a_code(mutate: Any, code: int) -> None:
    key, ev = content_record(SK)
    with pytest.raises(RecordError) as exc:
        RecordValidator().validate(key, mutate(ev), NOW)
    assert exc.value.code == code


def test_signature_cache_cannot_vouch_for_altered_content() -> None:
    v = RecordValidator()
    key, ev = content_record(SK)
    v.validate(key, ev, NOW)
    with pytest.raises(RecordError):
        v.validate(key, dict(ev, tags=[["d", CID], ["endpoint", "ws://evil"]]), NOW)


def test_announcement_content_must_match_schema() -> None:
    bad = dict(ANN, load={"queue": -1, "free_kv_blocks": 0})
    with pytest.raises(Exception, match="minimum"):
        build_announcement(SK, bad, created_at=int(NOW))
    ev = sign_event(
        {
            "kind": 38200,
            "tags": [["d", hashlib.sha256(public_key(SK)).hexdigest()]],
            "content": '{"v":1}',
            "created_at": int(NOW),
        },
        SK,
    )
    with pytest.raises(RecordError):
        RecordValidator().validate(provider_key(CID), ev, NOW)


def test_newest_per_publisher_wins_and_others_coexist() -> None:
    st = ValueStore()
    key, old = content_record(SK, created_at=int(NOW))
    _, new = content_record(SK, created_at=int(NOW) + 5)
    _, other = content_record(bytes([4]) * 32, created_at=int(NOW))
    assert st.put(key, old, NOW + 100) is StoreResult.STORED
    assert st.put(key, new, NOW + 100) is StoreResult.STORED
    assert st.put(key, old, NOW + 100) is StoreResult.UNCHANGED
    assert st.put(key, other, NOW + 100) is StoreResult.STORED
    got = st.get(key, NOW)
    assert [e["id"] for e in got] == [new["id"], other["id"]]
    assert st.expire(NOW + 100) == 2
    assert st.get(key, NOW + 100) == []
    assert st.bytes == 0


def test_caps_refuse_new_slots() -> None:
    st = ValueStore(max_per_key=3, max_per_publisher=2, max_keys=2)
    rng = random.Random(1)
    key, _ = content_record(SK)
    for i in range(3):
        assert st.put(key, content_record(rng.randbytes(32))[1], NOW + 10) is StoreResult.STORED, i
    assert st.put(key, content_record(rng.randbytes(32))[1], NOW + 10) is StoreResult.KEY_FULL
    cids = ["bafkrei" + c * 52 for c in "abc"]
    assert (
        st.put(content_provider_key(cids[0]), content_record(SK, cids[0])[1], NOW + 10)
        is StoreResult.STORED
    )
    assert (
        st.put(content_provider_key(cids[1]), content_record(SK, cids[1])[1], NOW + 10)
        is StoreResult.STORE_FULL
    )
    assert len(st) == 4


def test_tokens_bound_to_address_and_rotate() -> None:
    rng = random.Random(2)
    tk = TokenIssuer(rng.randbytes, 0.0, interval=300)
    a, b = ("1.2.3.4", 5), ("1.2.3.4", 6)
    t0 = tk.issue(a, 0.0)
    assert tk.check(t0, a, 1.0)
    assert not tk.check(t0, b, 1.0)
    assert tk.check(t0, a, 301.0)  # previous secret still accepted
    assert not tk.check(t0, a, 601.0)  # two rotations later it is gone
    assert not tk.check(b"", a, 1.0)
    late = tk.issue(a, 5000.0)
    assert not tk.check(t0, a, 5000.0)
    assert tk.check(late, a, 5000.0)
