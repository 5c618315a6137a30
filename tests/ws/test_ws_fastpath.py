"""The single-frame fast path and the reused read buffer, held to the generator parser.

``parse_single_frame`` must give exactly the frame :func:`parse_frames` gives for the same
bytes whenever it answers at all (any length encoding, 7/16/64-bit), and ``receive_data`` must
keep nothing from a caller's buffer: a sans-I/O caller may hand it a view of a buffer that its
next read overwrites.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.speedups import apply_mask as ws_apply_mask

from infernet_ref.ws.buffer import ByteQueue
from infernet_ref.ws.connection import Connection, Role
from infernet_ref.ws.errors import WebSocketProtocolError
from infernet_ref.ws.events import Message
from infernet_ref.ws.frames import (
    Frame,
    encode_frame,
    first_byte_table,
    parse_frames,
    parse_single_frame,
)
from infernet_ref.ws.masking import apply_mask, mask_into

SIZES = st.one_of(st.integers(0, 300), st.sampled_from([65535, 65536, 65537, 70001]))


def _generator_frames(data: bytes, masked: bool, limit: int) -> list[Frame] | str:
    buf = ByteQueue()
    buf.append(data)
    gen = parse_frames(buf, expect_masked=masked, max_frame_size=limit)
    frames: list[Frame] = []
    try:
        while (frame := next(gen)) is not None:
            frames.append(frame)
    except WebSocketProtocolError as exc:
        return f"error {exc.code}"
    return frames if not buf.size else "leftover"


@st.composite
def wires(draw: st.DrawFn) -> tuple[bytes, bool]:
    masked = draw(st.booleans())
    size = draw(SIZES)
    opcode = draw(st.sampled_from([0, 1, 2, 8, 9, 10, 3, 11]))
    payload = bytes(draw(st.binary(max_size=64))) * (size // 64 + 1)
    key = draw(st.binary(min_size=4, max_size=4)) if masked else None
    wire = bytearray(encode_frame(opcode, payload[:size], fin=draw(st.booleans()), mask_key=key))
    for _ in range(draw(st.integers(0, 3))):
        pos = draw(st.integers(0, min(len(wire) - 1, 16)))
        wire[pos] ^= draw(st.integers(1, 255))
    if draw(st.booleans()):
        wire += draw(st.binary(min_size=1, max_size=8))
    elif draw(st.booleans()):
        del wire[-draw(st.integers(1, min(len(wire), 8))) :]
    return bytes(wire), draw(st.booleans())


@given(case=wires(), limit=st.sampled_from([125, 65536, 1 << 20]))
@settings(max_examples=300, deadline=None)
def test_fast_path_agrees_with_the_generator(case: tuple[bytes, bool], limit: int) -> None:
    data, expect_masked = case
    table = first_byte_table(0)
    for view in (data, memoryview(bytearray(data)), bytearray(data)):
        fast = parse_single_frame(view, table, expect_masked=expect_masked, max_frame_size=limit)
        if fast is not None:
            assert type(fast.payload) is bytes
            assert _generator_frames(data, expect_masked, limit) == [fast]


@given(size=SIZES, text=st.booleans(), role=st.sampled_from(list(Role)), cut=st.integers(0, 99))
@settings(max_examples=60, deadline=None)
def test_receive_data_keeps_nothing_of_a_reused_buffer(
    size: int, text: bool, role: Role, cut: int
) -> None:
    sender = Connection(Role.SERVER if role is Role.CLIENT else Role.CLIENT)
    receiver = Connection(role)
    message: str | bytes = "é" * (size // 2) if text else (bytes(range(256)) * 300)[:size]
    wire = sender.send_message(message) + sender.send_ping(b"ping")
    reused = memoryview(bytearray(len(wire)))
    events = []
    split = len(wire) * cut // 100
    for chunk in (wire[:split], wire[split:]):  # cut 0: one read holding two frames
        reused[: len(chunk)] = chunk
        events += receiver.receive_data(reused[: len(chunk)])
        reused[:] = b"\xff" * len(reused)  # the next read overwrites the buffer
    assert [type(e).__name__ for e in events] == ["Message", "Ping"]
    assert events[0] == Message(message)
    assert events[1].payload == b"ping"  # type: ignore[attr-defined]


def test_fast_path_takes_every_length_encoding() -> None:
    table = first_byte_table(0)
    for size in (0, 125, 126, 65535, 65536, 300_000):
        payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
        for key in (None, b"\x01\x02\x03\x04"):
            wire = memoryview(bytearray(encode_frame(2, payload, mask_key=key)))
            frame = parse_single_frame(
                wire, table, expect_masked=key is not None, max_frame_size=1 << 20
            )
            assert frame == Frame(2, payload)


@given(
    size=st.sampled_from([0, 1, 7, 8, 9, 2047, 2048, 131071, 131072, 131079, 300_001]),
    offset=st.integers(0, 15),
    key=st.binary(min_size=4, max_size=4),
)
@settings(max_examples=80, deadline=None)
def test_masking_matches_websockets_at_every_alignment(size: int, offset: int, key: bytes) -> None:
    """Views into a read buffer start anywhere; the uint64 pass realigns (oracle: websockets' C)."""
    raw = bytearray(bytes(range(251)) * (size // 251 + 1) + bytes(16))
    view = memoryview(raw)[offset : offset + size]
    want = ws_apply_mask(bytes(view), key)
    assert apply_mask(view, key) == want
    assert mask_into(b"head", view, key) == b"head" + want
