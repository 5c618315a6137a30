"""NIP-01 events: serialization rules pinned, id, signing, verification, hostile input."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infernet_ref.encoding import canonical_json
from infernet_ref.errors import InfernetError, LocalProtocolError
from infernet_ref.nostr import (
    EventEncodingError,
    EventError,
    Signer,
    check_event,
    event_id,
    public_key,
    serialize_event,
    sign_event,
    verify_event,
)
from infernet_ref.nostr.event import _shape_error, serialize_checked
from infernet_ref.specs import validate_data

SK = bytes.fromhex("67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa")
PK = "7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e"
AUX = bytes(32)

# NIP-01: \n \" \\ \r \t \b \f escaped by name; other C0 as \u00XX (lower-case hex, as JSON.stringify
# does); DEL, U+2028, U+2029 and all non-ASCII verbatim.
NAMED = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"}


def template(
    content: str = "hello", tags: list[list[str]] | None = None, kind: int = 1
) -> dict[str, Any]:
    return {"kind": kind, "created_at": 1700000000, "tags": tags or [], "content": content}


@pytest.mark.parametrize("code", [*range(0x20), 0x22, 0x5C, 0x7F, 0x2028, 0x2029, 0xE9, 0x1F600])
def test_every_escape_rule_is_pinned(code: int) -> None:
    ch = chr(code)
    expected = NAMED.get(ch) or (f"\\u{code:04x}" if code < 0x20 else ch)
    ev = {"pubkey": PK, "created_at": 1, "kind": 1, "tags": [[ch]], "content": ch}
    want = f'[0,"{PK}",1,1,[["{expected}"]],"{expected}"]'.encode()
    assert serialize_event(ev) == want
    assert canonical_json([0, PK, 1, 1, [[ch]], ch]) == want


@settings(max_examples=150, deadline=None)
@given(
    content=st.text(),
    tags=st.lists(st.lists(st.text(max_size=20), min_size=1, max_size=4), max_size=4),
    created_at=st.integers(0, 2**32 - 1),
    kind=st.integers(0, 65535),
)
def test_serialization_agrees_with_canonical_json(
    content: str, tags: list[list[str]], created_at: int, kind: int
) -> None:
    ev = {"pubkey": PK, "created_at": created_at, "kind": kind, "tags": tags, "content": content}
    try:
        ours = serialize_event(ev)
    except EventEncodingError:
        with pytest.raises(InfernetError):
            canonical_json([0, PK, created_at, kind, tags, content])
        return
    assert ours == canonical_json([0, PK, created_at, kind, tags, content])
    assert serialize_checked(PK, created_at, kind, tags, content).encode() == ours
    assert json.loads(ours) == [0, PK, created_at, kind, tags, content]


def test_lone_surrogate_is_refused() -> None:
    with pytest.raises(EventEncodingError, match="lone surrogate"):
        event_id({"pubkey": PK, "created_at": 1, "kind": 1, "tags": [], "content": "a\ud800b"})
    with pytest.raises(EventEncodingError):
        sign_event(template("\udfff"), SK)
    ev = sign_event(template("x"), SK)
    ev["content"] = "\ud800"
    assert verify_event(ev) is False
    with pytest.raises(EventError):
        check_event(ev)


def test_sign_and_verify_round_trip() -> None:
    ev = sign_event(template(), SK, aux=AUX)
    assert ev["pubkey"] == PK == public_key(SK).hex()
    assert list(ev) == ["id", "pubkey", "created_at", "kind", "tags", "content", "sig"]
    assert ev["id"] == hashlib.sha256(serialize_event(ev)).hexdigest() == event_id(ev)
    assert verify_event(ev)
    check_event(ev)
    validate_data(ev, "nostr-event")
    assert sign_event(template(), SK, aux=AUX) == ev  # deterministic for a fixed aux


def test_sign_defaults_created_at_and_accepts_tuples() -> None:
    ev = sign_event({"kind": 7, "tags": (("e", "x"),), "content": "+"}, SK.hex())
    assert isinstance(ev["created_at"], int)
    assert ev["created_at"] > 1_600_000_000
    assert ev["tags"] == [["e", "x"]]
    assert verify_event(ev)


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": -1},
        {"kind": 65536},
        {"kind": True},
        {"kind": 1.0},
        {"created_at": -5},
        {"created_at": 2**32},
        {"tags": [[]]},
        {"tags": [["e", 5]]},
        {"content": 5},
        {"pubkey": "00" * 32},
        {"nonsense": 1},
    ],
)
def test_sign_refuses_invalid_templates(bad: dict[str, Any]) -> None:
    with pytest.raises(LocalProtocolError):
        sign_event({**template(), **bad}, SK)


MUTATIONS: list[tuple[str, Any, str]] = [
    ("id", "0" * 64, "$.id"),
    ("id", None, "$.id"),
    ("id", "AB" * 32, "$.id"),
    ("pubkey", "ab" * 31, "$.pubkey"),
    ("pubkey", "00" * 32, "$.pubkey"),  # not on the curve (after a matching id, checked below)
    ("sig", "0" * 127 + "g", "$.sig"),
    ("sig", "1" * 128, "$.sig"),
    ("created_at", 1700000001, "$.id"),
    ("created_at", "1700000000", "$.created_at"),
    ("kind", 2, "$.id"),
    ("tags", [["t", "x"]], "$.id"),
    ("tags", "x", "$.tags"),
    ("tags", [[1]], "$.tags[0][0]"),
    ("content", "hello!", "$.id"),
    ("content", "x" * ((1 << 20) + 1), "$.content"),
]


@pytest.mark.parametrize(("field", "value", "path"), MUTATIONS)
def test_tampering_fails_both_ways(field: str, value: Any, path: str) -> None:
    ev = sign_event(template(), SK, aux=AUX)
    ev[field] = value
    if field == "pubkey" and path == "$.pubkey" and value == "00" * 32:
        ev["id"] = event_id(ev)  # id matches; the point does not exist
    assert verify_event(ev) is False
    with pytest.raises(EventError) as info:
        check_event(ev)
    assert info.value.path == path


def test_signature_of_other_event_fails() -> None:
    a = sign_event(template("a"), SK, aux=AUX)
    b = sign_event(template("b"), SK, aux=AUX)
    a["sig"] = b["sig"]
    assert not verify_event(a)


@pytest.mark.parametrize(
    "hostile",
    [
        None,
        1,
        "x",
        [],
        {},
        {"id": 1},
        dict.fromkeys(("id", "pubkey", "created_at", "kind", "tags", "content", "sig")),
    ],
)
def test_verify_never_raises_on_junk(hostile: Any) -> None:
    assert verify_event(hostile) is False
    with pytest.raises(EventError):
        check_event(hostile)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False)
    | st.text(max_size=70),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = ("id", "pubkey", "created_at", "kind", "tags", "content", "sig")


@st.composite
def near_events(draw: st.DrawFn) -> dict[str, Any]:
    """Valid events with a few fields replaced by arbitrary JSON values, removed or added."""
    ev = copy.deepcopy(BASE)
    for field in draw(st.sets(st.sampled_from(FIELDS), max_size=3)):
        action = draw(st.sampled_from(["replace", "drop"]))
        if action == "drop":
            del ev[field]
        else:
            ev[field] = draw(json_values)
    if draw(st.booleans()):
        ev[draw(st.text(max_size=5))] = draw(json_values)
    return ev


BASE = sign_event(template("base", [["p", PK], ["t", "x", "y"]]), SK, aux=AUX)


@settings(max_examples=200, deadline=None)
@given(near_events())
def test_shape_rules_equal_the_json_schema(ev: dict[str, Any]) -> None:
    """The hand-compiled fast path accepts exactly what nostr-event.schema.json accepts."""
    try:
        validate_data(ev, "nostr-event")
        schema_ok = True
    except InfernetError:
        schema_ok = False
    assert (_shape_error(ev) is None) is schema_ok
    result = verify_event(ev)
    assert result is (ev == BASE)
    try:
        check_event(ev)
        checked = True
    except EventError:
        checked = False
    assert checked is result


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_verify_event_total_on_any_json(value: Any) -> None:
    assert verify_event(value) is False


def test_vectors() -> None:
    """spec/vectors/nostr/events.json: signed events (stress contents) and ``invalid_*`` events."""
    from .conftest import emit_vectors
    from .stress import STRESS, STRESS_TAGS

    valid = []
    for i, (name, content) in enumerate(STRESS.items()):
        tags = STRESS_TAGS if name == "ascii" else [["t", name]]
        ev = sign_event(
            {"kind": 1, "created_at": 1_700_000_000 + i, "tags": tags, "content": content},
            SK,
            aux=AUX,
        )
        assert verify_event(ev)
        valid.append({"name": name, "serialized": serialize_event(ev).decode(), "event": ev})
    base = sign_event(template("base"), SK, aux=AUX)
    invalid = {
        "invalid_id": {**base, "id": "0" * 64},
        "invalid_sig": {
            **base,
            "sig": base["sig"][:-2] + ("00" if base["sig"][-2:] != "00" else "01"),
        },
        "invalid_content_changed": {**base, "content": "Base"},
        "invalid_upper_case_hex": {**base, "id": base["id"].upper()},
        "invalid_pubkey_not_on_curve": {**base, "pubkey": "00" * 32},
        "invalid_extra_field": {**base, "extra": 1},
        "invalid_missing_sig": {k: v for k, v in base.items() if k != "sig"},
        "invalid_kind_string": {**base, "kind": "1"},
        "invalid_negative_created_at": {**base, "created_at": -1},
        "invalid_tag_not_strings": {**base, "tags": [["e", 1]]},
        "invalid_empty_tag": {**base, "tags": [[]]},
    }
    for ev in invalid.values():
        assert verify_event(ev) is False
    emit_vectors(
        "events.json",
        {
            "secret_key": SK.hex(),
            "aux_rand": AUX.hex(),
            "valid": valid,
            "invalid": [{"name": k, "event": v} for k, v in invalid.items()],
        },
    )


def test_key_cache_keeps_verdicts() -> None:
    """The parsed-key cache changes speed only: bad signatures under a cached key still fail."""
    from infernet_ref.nostr.event import _KEY_CACHE, clear_key_cache

    clear_key_cache()
    ev = sign_event(template("cached"), SK, aux=AUX)
    assert verify_event(ev)
    assert ev["pubkey"] in _KEY_CACHE
    forged = {**ev, "sig": sign_event(template("other"), SK, aux=AUX)["sig"]}
    assert not verify_event(forged)
    off_curve = {**ev, "pubkey": "00" * 32}
    off_curve["id"] = event_id(off_curve)
    assert not verify_event(off_curve)
    assert "00" * 32 not in _KEY_CACHE  # only keys that parse are remembered
    clear_key_cache()
    assert verify_event(ev)


def test_schema_examples_are_real_events() -> None:
    """Every example in the nostr schemas verifies (no placeholder signatures in the spec)."""
    from infernet_ref.specs import default_registry

    doc = default_registry().schema("nostr-event")
    assert doc["examples"]
    for example in doc["examples"]:
        assert verify_event(example)


def test_signer_and_raw_key_sign_alike() -> None:
    from coincurve import PrivateKey

    from infernet_ref.nostr import Signer

    a = sign_event(template("same"), SK, aux=AUX)
    assert sign_event(template("same"), Signer(SK), aux=AUX) == a
    assert sign_event(template("same"), PrivateKey(SK), aux=AUX) == a
    assert sign_event(template("same"), SK.hex(), aux=AUX) == a


_SIGNER = Signer(SK)
edge_strings = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["", "\ud800", "x" * 65536, "x" * 65537, "é" * 65537, PK.upper()]),
)
edge_values = st.one_of(
    json_values,
    edge_strings,
    st.sampled_from([0, -1, 2**32 - 1, 2**32, 65535, 65536, True, 1.0]),
    st.lists(st.lists(edge_strings, max_size=3), max_size=3),
    st.lists(st.lists(st.just("t"), min_size=64, max_size=65), min_size=1, max_size=1),
    st.just([["t"]] * 2001),
    st.just("c" * (1 << 20)),
    st.just("c" * ((1 << 20) + 1)),
)


def _resign(ev: dict[str, Any]) -> dict[str, Any]:
    """Give ``ev`` a valid id and signature over its fields, when they can be serialized."""
    try:
        digest = hashlib.sha256(
            json.dumps(
                [0, ev["pubkey"], ev["created_at"], ev["kind"], ev["tags"], ev["content"]],
                ensure_ascii=False,
                separators=(",", ":"),
            ).encode()
        ).digest()
        ev["id"], ev["sig"] = digest.hex(), _SIGNER.sign(digest, AUX).hex()
    except (TypeError, ValueError):
        pass  # not serializable (lone surrogate, nan...): the schema or encoding refuses it
    return ev


@st.composite
def resigned_events(draw: st.DrawFn) -> dict[str, Any]:
    """Events whose signed fields are mutated (to edge values too) and then re-signed.

    The id and signature hold whenever the mutated fields can be serialized at all, so
    ``verify_event`` must decide by the shape rules alone: its verdict must be the schema's.
    """
    ev = copy.deepcopy(BASE)
    for field in draw(st.sets(st.sampled_from(("created_at", "kind", "tags", "content")))):
        ev[field] = draw(edge_values)
    _resign(ev)
    for field in draw(st.sets(st.sampled_from(("id", "pubkey", "sig")), max_size=1)):
        ev[field] = draw(st.sampled_from([ev[field].upper(), " " + ev[field][1:], ev[field][:-2]]))
    return ev


def _verdicts_agree(ev: dict[str, Any]) -> bool:
    """Assert verify_event == check_event == the schema (floats aside); return the verdict."""
    try:
        validate_data(ev, "nostr-event")
        schema_ok = True
    except InfernetError:
        schema_ok = False
    try:
        check_event(ev)
        checked = True
    except EventError:
        checked = False
    assert verify_event(ev) is checked
    # JSON Schema's "integer" admits 1.0; both check paths admit only JSON integers (a float
    # would serialize as "1.0" and give another id than JSON.stringify's "1"), so floats differ.
    floats = type(ev["created_at"]) is float or type(ev["kind"]) is float
    if schema_ok and not floats:  # a well-formed re-signed event verifies unless unencodable
        assert checked or "\ud800" in json.dumps(ev, ensure_ascii=False)
    else:
        assert not checked
    return checked


BOUNDARIES: list[tuple[str, Any, bool]] = [
    ("tags", [["t", "x" * 65536]], True),
    ("tags", [["t", "x" * 65537]], False),
    ("tags", [["t", "é" * 65536]], True),
    ("tags", [["é" * 65537]], False),
    ("tags", [["a" * 40000, "b" * 40000]], True),
    ("tags", [["t"] * 64], True),
    ("tags", [["t"] * 65], False),
    ("tags", [["t"]] * 2000, True),
    ("tags", [["t"]] * 2001, False),
    ("tags", [[]], False),
    ("tags", [["t", 1]], False),
    ("tags", [["t"], "t"], False),
    ("tags", [], True),
    ("content", "c" * (1 << 20), True),
    ("content", "c" * ((1 << 20) + 1), False),
    ("created_at", 2**32 - 1, True),
    ("created_at", 2**32, False),
    ("created_at", -1, False),
    ("created_at", True, False),
    ("created_at", 1.0, False),
    ("kind", 65535, True),
    ("kind", 65536, False),
]


@pytest.mark.parametrize(("field", "value", "valid"), BOUNDARIES)
def test_fast_checks_at_every_limit(field: str, value: Any, valid: bool) -> None:
    ev = _resign({**copy.deepcopy(BASE), field: value})
    assert _verdicts_agree(ev) is valid
    for hexfield in ("id", "pubkey", "sig"):  # upper-case hex is refused, though fromhex takes it
        assert verify_event({**ev, hexfield: ev[hexfield].upper()}) is False


@settings(max_examples=200, deadline=None)
@given(resigned_events())
def test_fast_checks_give_the_schema_verdict_on_signed_events(ev: dict[str, Any]) -> None:
    _verdicts_agree(ev)
