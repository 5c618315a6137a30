"""The fast CBOR path against the foundation's reference codec (spec/encoding.md §CBOR)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infernet_ref.dht import fastcbor
from infernet_ref.encoding import cbor_decode, cbor_encode
from infernet_ref.errors import EncodingError

scalars = (
    st.integers(min_value=-(1 << 64), max_value=(1 << 64) - 1)
    | st.binary(max_size=40)
    | st.text(max_size=30)
    | st.booleans()
    | st.none()
)
keys = st.text(max_size=12) | st.binary(max_size=6) | st.integers(min_value=-1000, max_value=100000)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=30,
)
contacts = st.lists(
    st.tuples(
        st.binary(min_size=32, max_size=32),
        st.sampled_from([4, 16, 5, 3]),
        st.integers(min_value=0, max_value=70000),
    ),
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(values)
def test_encode_matches_reference(value: object) -> None:
    assert fastcbor.encode(value) == cbor_encode(value)


@settings(max_examples=100, deadline=None)
@given(contacts)
def test_contact_fast_path_matches_reference(cs: list[tuple[bytes, int, int]]) -> None:
    value = [[nid, bytes(n), port] for nid, n, port in cs]
    assert fastcbor.encode(value) == cbor_encode(value)


@settings(max_examples=200, deadline=None)
@given(values)
def test_decode_round_trip(value: object) -> None:
    data = cbor_encode(value)
    assert fastcbor.decode(data, max_size=1 << 16) == cbor_decode(data)


@settings(max_examples=300, deadline=None)
@given(
    st.binary(max_size=64)
    | values.map(cbor_encode).flatmap(
        lambda b: st.tuples(
            st.just(b), st.integers(0, max(0, len(b) - 1)), st.integers(0, 255)
        ).map(lambda t: t[0][: t[1]] + bytes([t[2]]) + t[0][t[1] + 1 :])
    )
)
def test_decode_accepts_no_more_than_reference(data: bytes) -> None:
    """Whatever the fast path accepts, the reference accepts with the same value (never more)."""
    try:
        got = fastcbor.decode(data, max_size=1 << 16)
    except EncodingError:
        return
    assert cbor_decode(data) == got


@pytest.mark.parametrize(
    "data",
    [
        bytes.fromhex("a2616101616102"),  # duplicate key "a"
        bytes.fromhex("1817"),  # 23 in two bytes: not the shortest head
        bytes.fromhex("9f01ff"),  # indefinite-length array
        bytes.fromhex("c11a5c0e5b40"),  # tag 1
        bytes.fromhex("a2616201616101"),  # keys out of order
        bytes.fromhex("f97e00"),  # a float (outside the DHT subset)
        b"",
    ],
)
def test_decode_refuses_non_deterministic(data: bytes) -> None:
    with pytest.raises(EncodingError):
        fastcbor.decode(data, max_size=1 << 16)
