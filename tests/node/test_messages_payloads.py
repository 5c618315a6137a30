"""Message boundary, encrypted payloads, result hash and node-info documents (spec/job.md, spec/node.md)."""

from __future__ import annotations

import contextlib
import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infernet_ref.errors import LocalProtocolError
from infernet_ref.node.errors import JobProtocolError
from infernet_ref.node.messages import body_table, build_message, encode_message, parse_message
from infernet_ref.node.nodeinfo import make_node_info, verify_node_info
from infernet_ref.node.payloads import open_json, output_sha256, seal_json
from infernet_ref.nostr import generate_secret_key, public_key, sign_event
from infernet_ref.specs.registry import default_registry


def test_every_type_has_a_body_schema_and_examples_validate() -> None:
    schema = default_registry().schema("job-messages")
    table = body_table()
    assert set(table) == set(schema["properties"]["type"]["enum"])
    checked = 0
    for msg_type, def_name in table.items():
        for example in schema["$defs"][def_name].get("examples", []):
            msg = parse_message(encode_message(build_message(msg_type, "e1", example)))
            assert msg.type == msg_type
            checked += 1
    assert checked >= 12


def test_build_refuses_invalid_bodies() -> None:
    with pytest.raises(LocalProtocolError):
        build_message("job.status", "m1", {"job": "short"})
    with pytest.raises(LocalProtocolError):
        build_message("job.nope", "m1", {})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(sorted(body_table())),
    st.dictionaries(
        st.sampled_from(["job", "session", "code", "message", "step", "payload", "model", "x"]),
        json_values,
        max_size=5,
    ),
)
def test_fuzz_typed_envelopes_parse_or_raise_typed(msg_type: str, body: dict[str, object]) -> None:
    frame = json.dumps({"v": 1, "type": msg_type, "id": "f1", "body": body})
    try:
        msg = parse_message(frame)
    except JobProtocolError as exc:
        code = exc.code
    else:
        code = None
        assert msg.type == msg_type
    assert code in (None, 4000, 4004, 4005, 4006)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_bytes(data: bytes) -> None:
    with contextlib.suppress(JobProtocolError):
        parse_message(data)


def test_output_hash_matches_hand_computation() -> None:
    assert output_sha256([]) == hashlib.sha256(b"").hexdigest()
    assert (
        output_sha256([1, 258, 2**32 - 1])
        == hashlib.sha256(bytes.fromhex("0000000100000102ffffffff")).hexdigest()
    )


@pytest.mark.parametrize("size", [10, 70_000])
def test_sealed_json_round_trip_small_and_chunked(size: int) -> None:
    a, b = generate_secret_key(), generate_secret_key()
    obj = {"prompt_ids": list(range(size))[: size // 5] or [1], "pad": "x" * size}
    sealed = seal_json(obj, a, public_key(b).hex())
    assert sealed["scheme"] == ("nip44" if size < 65535 else "nip44-chunked")
    assert open_json(sealed, b, sender=public_key(a).hex()) == obj


def test_sealed_json_refusals() -> None:
    a, b, c = generate_secret_key(), generate_secret_key(), generate_secret_key()
    sealed = seal_json({"ids": [1]}, a, public_key(b).hex())
    with pytest.raises(JobProtocolError) as exc:
        open_json(sealed, c, sender=None)
    assert exc.value.code == 4003
    with pytest.raises(JobProtocolError) as exc:
        open_json(sealed, b, sender=public_key(c).hex())
    assert exc.value.code == 4003
    forged = dict(sealed, data=sealed["data"][:-8] + "AAAAAAA=")
    with pytest.raises(JobProtocolError) as exc:
        open_json(forged, b, sender=None)
    assert exc.value.code == 4000


def _info(sk: bytes) -> dict[str, object]:
    return make_node_info(
        sk,
        roles=["provider"],
        endpoints={"ws": "ws://127.0.0.1:1/job"},
        capabilities={"job_protocol": [1], "max_message_size": 1 << 20},
        started_at=1,
        now=1_700_000_000,
    )


def test_node_info_verifies_and_tampering_is_caught() -> None:
    sk = generate_secret_key()
    ev = _info(sk)
    content = verify_node_info(ev)
    assert content["node_id"] == hashlib.sha256(public_key(sk)).hexdigest()
    bad = dict(ev, content=ev["content"].replace("provider", "aggregator"))
    with pytest.raises(JobProtocolError):
        verify_node_info(bad)
    other = generate_secret_key()  # another key re-signs a document that names the first key
    resigned = sign_event(
        {
            "kind": 38202,
            "tags": [["d", "node"]],
            "content": ev["content"],
            "created_at": 1_700_000_000,
        },
        other,
    )
    with pytest.raises(JobProtocolError, match="signer"):
        verify_node_info(resigned)
    wrong_kind = sign_event(
        {"kind": 1, "tags": [["d", "node"]], "content": ev["content"], "created_at": 1}, sk
    )
    with pytest.raises(JobProtocolError, match="38202"):
        verify_node_info(wrong_kind)


def test_driver_seed_rule_is_the_runtime_rule() -> None:
    from infernet_ref.node.driver import position_seed
    from infernet_ref.runtime.sampling import token_seed

    for seed in (0, 7, 2**62 + 3):
        for t in (0, 1, 99):
            assert position_seed(seed, t) == token_seed(seed, t) == (seed * 1000003 + t) % 2**63
