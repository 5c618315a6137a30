"""Control-channel framing (spec/node-worker.md §Framing): round trips, limits, fuzz."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infernet_ref.encoding import canonical_json
from infernet_ref.errors import InfernetError, LocalProtocolError
from infernet_ref.node.sandbox.framing import (
    Frame,
    FrameDecoder,
    FramingError,
    encode_frame,
)


def raw_frame(head: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(head)) + head + struct.pack(">Q", len(payload)) + payload


CASES = [
    ({"op": "ping"}, b""),
    ({"op": "stage.forward", "session": "s1", "n": 3}, b"\x00\x01\x02" * 100),
    ({"a": [1, 2, {"b": None}], "é": "ü\n"}, b"x"),
]


@pytest.mark.parametrize(("header", "payload"), CASES)
def test_round_trip_matches_the_layout(header: dict[str, object], payload: bytes) -> None:
    wire = encode_frame(header, payload)
    assert wire == raw_frame(canonical_json(header), payload)
    dec = FrameDecoder()
    dec.receive_data(wire)
    assert dec.next_frame() == Frame(header, payload)
    assert dec.next_frame() is None
    assert dec.buffered == 0


def test_byte_by_byte_feeding_and_back_to_back_frames() -> None:
    wire = b"".join(encode_frame(h, p) for h, p in CASES)
    dec = FrameDecoder()
    got = []
    for i in range(len(wire)):
        dec.receive_data(wire[i : i + 1])
        while (frame := dec.next_frame()) is not None:
            got.append((frame.header, frame.payload))
    assert got == CASES


@pytest.mark.parametrize(
    ("wire", "why"),
    [
        (raw_frame(b"[1]"), "not an object"),
        (raw_frame(b"{}x"), "not JSON"),
        (raw_frame(b'{"b":1,"a":2}'), "not canonical"),
        (raw_frame(b'{"a": 1}'), "not canonical"),
        (raw_frame(b'{"a":1.0}'), "not canonical"),
        (raw_frame(b"\xff\xfe"), "not JSON"),
        (struct.pack(">I", 1) + b"{", "at least 2"),
        (struct.pack(">I", (1 << 20) + 1), "header"),
        (struct.pack(">I", 2) + b"{}" + struct.pack(">Q", (1 << 30) + 1), "payload"),
        (raw_frame(b'{"a":9007199254740993}'), "canonical"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_invalid_frames_raise_framing_error(wire: bytes, why: str) -> None:
    dec = FrameDecoder()
    dec.receive_data(wire)
    with pytest.raises(FramingError, match=why):
        dec.next_frame()
    with pytest.raises(FramingError):  # poisoned: the channel lost sync
        dec.receive_data(encode_frame({"op": "ping"}))


def test_limits_are_checked_before_buffering_the_body() -> None:
    dec = FrameDecoder(max_header=64, max_payload=10)
    dec.receive_data(struct.pack(">I", 2) + b"{}" + struct.pack(">Q", 11))
    with pytest.raises(FramingError, match="payload"):
        dec.next_frame()  # rejected although none of the 11 bytes arrived


def test_encoder_refuses_what_the_decoder_would_reject() -> None:
    with pytest.raises(LocalProtocolError):
        encode_frame({"x": "y" * 100}, max_header=16)
    with pytest.raises(LocalProtocolError):
        encode_frame({"op": "x"}, b"12345", max_payload=4)
    with pytest.raises(LocalProtocolError):
        encode_frame({"big": 1 << 60})
    with pytest.raises(LocalProtocolError):
        encode_frame(["not", "a", "dict"])  # type: ignore[arg-type]


@settings(max_examples=200)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=17))
def test_fuzz_any_bytes_give_frames_or_framing_error(data: bytes, step: int) -> None:
    dec = FrameDecoder(max_header=128, max_payload=128)
    try:
        for i in range(0, len(data), step):
            dec.receive_data(data[i : i + step])
            while (frame := dec.next_frame()) is not None:
                assert isinstance(frame.header, dict)
                assert len(frame.payload) <= 128
    except FramingError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150)
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6), st.binary(max_size=200))
def test_fuzz_round_trip(header: dict[str, object], payload: bytes) -> None:
    dec = FrameDecoder()
    dec.receive_data(encode_frame(header, payload))
    assert dec.next_frame() == Frame(header, payload)


@settings(max_examples=150)
@given(st.binary(min_size=1, max_size=200), st.integers(min_value=0, max_value=199))
def test_fuzz_corrupted_frames_never_crash(noise: bytes, where: int) -> None:
    wire = bytearray(encode_frame({"op": "stage.forward", "session": "abc"}, b"payload" * 4))
    at = where % len(wire)
    wire[at : at + len(noise)] = noise
    dec = FrameDecoder(max_header=256, max_payload=256)
    error: InfernetError | None = None
    try:
        dec.receive_data(bytes(wire))
        while dec.next_frame() is not None:
            pass
    except InfernetError as exc:
        error = exc
    assert error is None or isinstance(error, FramingError)
