"""Wire format (spec/dht.md §Wire format): round trips, schema agreement, hostile bytes."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infernet_ref.dht import fastcbor, wire
from infernet_ref.dht.wire import ErrorCode, Kind, Op, WireError
from infernet_ref.encoding import cbor_encode, json_view
from infernet_ref.errors import ValidationError
from infernet_ref.specs import validate_data

from .helpers import content_record

ID = bytes(range(32))
T = b"\x00\x01\x02\x03\x04\x05\x06\x07"
EV = content_record(bytes([7]) * 32)[1]

GOOD: list[tuple[str, str, dict[str, Any]]] = [
    (Kind.QUERY, Op.PING, {"id": ID}),
    (Kind.QUERY, Op.PING, {"id": ID, "c": bytes(16), "to": [bytes(4), 1], "pad": bytes(30)}),
    (Kind.QUERY, Op.FIND_NODE, {"id": ID, "target": ID, "tk": b"12345678"}),
    (Kind.QUERY, Op.FIND_VALUE, {"id": ID, "key": ID, "o": 16}),
    (Kind.QUERY, Op.STORE, {"id": ID, "key": ID, "tk": b"12345678", "ev": EV}),
    (Kind.QUERY, Op.LEAVE, {"id": ID, "pk": ID, "ts": 1700000000, "sig": bytes(64)}),
    (Kind.RESPONSE, Op.PING, {"id": ID, "tk": b"12345678", "pk": ID, "sig": bytes(64)}),
    (
        Kind.RESPONSE,
        Op.FIND_NODE,
        {"id": ID, "nodes": [[ID, b"\x7f\x00\x00\x01", 4000], [ID, bytes(16), 65535]]},
    ),
    (Kind.RESPONSE, Op.FIND_VALUE, {"id": ID, "values": [EV], "more": True, "nodes": []}),
    (Kind.RESPONSE, Op.STORE, {"id": ID, "stored": 1}),
    (Kind.ERROR, Op.STORE, {"code": 205, "msg": "bad token"}),
]


def _schema_ok(y: str, op: str, body: dict[str, Any]) -> bool:
    doc = json_view({"v": 1, "t": T, "y": y, "op": op, "body": body})
    try:
        validate_data(doc, "dht-messages")
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(("y", "op", "body"), GOOD)
def test_round_trip_and_schema(y: str, op: str, body: dict[str, Any]) -> None:
    data = wire.encode(T, y, op, body)
    assert data == cbor_encode({"v": 1, "t": T, "y": y, "op": op, "body": body})
    dg = wire.decode(data)
    assert (dg.t, dg.y, dg.op, dg.body, dg.size) == (T, y, op, body, len(data))
    assert _schema_ok(y, op, body)


def _mutations(body: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for k in list(body):
        b = dict(body)
        del b[k]
        out.append(b)
        for bad in (b"", bytes(31), bytes(33), "text", -1, 1 << 40, [], None, True):
            b = dict(body)
            b[k] = bad
            out.append(b)
    b = dict(body)
    b["zzz"] = 1
    out.append(b)
    return out


@pytest.mark.parametrize(("y", "op", "body"), GOOD)
def test_hand_checks_agree_with_schema(y: str, op: str, body: dict[str, Any]) -> None:
    """The hand-written checks accept a body exactly when spec/schemas/dht-messages does."""
    for mutated in _mutations(body):
        if any(isinstance(body.get(k), str) and isinstance(v, bytes) for k, v in mutated.items()):
            continue  # the JSON view cannot tell bytes from text; the wire (stricter) refuses these
        data = fastcbor.encode({"v": 1, "t": T, "y": y, "op": op, "body": mutated})
        try:
            wire.decode(data)
            accepted = True
        except WireError:
            accepted = False
        assert accepted == _schema_ok(y, op, mutated), (y, op, mutated)


def test_error_codes_and_txid() -> None:
    with pytest.raises(WireError) as exc:
        wire.decode(wire.encode(T, Kind.QUERY, "NOPE", {"id": ID}))
    assert exc.value.code == ErrorCode.UNKNOWN_OP
    assert exc.value.txid == T
    with pytest.raises(WireError) as exc:
        wire.decode(fastcbor.encode({"v": 2, "t": T, "y": "q", "op": "PING", "body": {"id": ID}}))
    assert exc.value.code == ErrorCode.VERSION
    with pytest.raises(WireError) as exc:  # a bad *response* is never answered
        wire.decode(wire.encode(T, Kind.RESPONSE, Op.PING, {"id": b"short"}))
    assert exc.value.txid is None
    with pytest.raises(WireError):
        wire.decode(bytes(wire.MAX_DATAGRAM + 1))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_give_datagram_or_wire_error(data: bytes) -> None:
    with contextlib.suppress(WireError):
        wire.decode(data)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(GOOD), st.data())
def test_mutated_datagrams_never_escape(
    good: tuple[str, str, dict[str, Any]], data: st.DataObject
) -> None:
    raw = bytearray(wire.encode(T, good[0], good[1], copy.deepcopy(good[2])))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    with contextlib.suppress(WireError):
        wire.decode(bytes(raw))


def test_ip_packing() -> None:
    assert wire.unpack_ip(wire.pack_ip("127.0.0.1")) == "127.0.0.1"
    assert len(wire.pack_ip("::1")) == 16
