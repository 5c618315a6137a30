"""Frame encoding and parsing (RFC 6455 §5): (bytes, frame) tables, invalid frames, masking."""

from __future__ import annotations

import os

import pytest
from websockets.frames import Frame as WsFrame
from websockets.frames import Opcode as WsOpcode
from websockets.speedups import apply_mask as ws_apply_mask

from infernet_ref.ws.buffer import ByteQueue
from infernet_ref.ws.errors import WebSocketProtocolError
from infernet_ref.ws.frames import RSV1, Frame, Opcode, encode_frame, parse_frames
from infernet_ref.ws.masking import NUMPY_THRESHOLD, TRANSLATE_THRESHOLD, apply_mask, mask_into

KEY = bytes.fromhex("37fa213d")

# (wire bytes, frame) pairs from RFC 6455 §5.7 and length-encoding boundaries.
UNMASKED = [
    (bytes.fromhex("810548656c6c6f"), Frame(Opcode.TEXT, b"Hello")),  # §5.7 single unmasked text
    (bytes.fromhex("010348656c"), Frame(Opcode.TEXT, b"Hel", fin=False)),  # §5.7 fragmented
    (bytes.fromhex("80026c6f"), Frame(Opcode.CONT, b"lo")),
    (bytes.fromhex("890548656c6c6f"), Frame(Opcode.PING, b"Hello")),
    (bytes.fromhex("8a0548656c6c6f"), Frame(Opcode.PONG, b"Hello")),
    (bytes.fromhex("8200"), Frame(Opcode.BINARY, b"")),
    (bytes.fromhex("8800"), Frame(Opcode.CLOSE, b"")),
    (b"\x82\x7d" + b"a" * 125, Frame(Opcode.BINARY, b"a" * 125)),
    (b"\x82\x7e\x00\x7e" + b"a" * 126, Frame(Opcode.BINARY, b"a" * 126)),
    (b"\x82\x7e\x01\x00" + b"a" * 256, Frame(Opcode.BINARY, b"a" * 256)),  # §5.7 256 bytes
    (b"\x82\x7e\xff\xff" + b"a" * 65535, Frame(Opcode.BINARY, b"a" * 65535)),
    (b"\x82\x7f" + (65536).to_bytes(8, "big") + b"a" * 65536, Frame(Opcode.BINARY, b"a" * 65536)),
    (bytes.fromhex("c10548656c6c6f"), Frame(Opcode.TEXT, b"Hello", rsv1=True)),
]
# §5.7 "A single-frame masked text message".
MASKED = [(bytes.fromhex("818537fa213d7f9f4d5158"), Frame(Opcode.TEXT, b"Hello"))]


def _parse(data: bytes, *, masked: bool, chunk: int | None = None, rsv: int = RSV1) -> list[Frame]:
    buf = ByteQueue()
    gen = parse_frames(buf, expect_masked=masked, max_frame_size=1 << 20, rsv_allowed=rsv)
    out: list[Frame] = []
    step = chunk or len(data) or 1
    for i in range(0, max(len(data), 1), step):
        buf.append(data[i : i + step])
        while (frame := next(gen)) is not None:
            out.append(frame)
    return out


@pytest.mark.parametrize(("wire", "frame"), UNMASKED)
def test_unmasked_round_trip(wire: bytes, frame: Frame) -> None:
    assert _parse(wire, masked=False) == [frame]
    assert encode_frame(frame.opcode, frame.payload, fin=frame.fin, rsv1=frame.rsv1) == wire
    if frame.rsv1:
        return  # websockets refuses to serialize RSV1 without its extension object
    # The websockets library serializes the same bytes (outside oracle).
    ws = WsFrame(WsOpcode(frame.opcode), frame.payload, fin=frame.fin, rsv1=frame.rsv1)
    assert ws.serialize(mask=False) == wire


@pytest.mark.parametrize(("wire", "frame"), MASKED)
def test_masked_round_trip(wire: bytes, frame: Frame) -> None:
    assert _parse(wire, masked=True) == [frame]
    assert encode_frame(frame.opcode, frame.payload, mask_key=KEY) == wire


def test_byte_by_byte_and_concatenated() -> None:
    stream = b"".join(w for w, _ in UNMASKED)
    frames = [f for _, f in UNMASKED]
    assert _parse(stream, masked=False, chunk=1) == frames
    assert _parse(stream, masked=False, chunk=7) == frames
    assert _parse(stream, masked=False) == frames


BAD = [
    ("reserved opcode 3", b"\x83\x00", 1002),
    ("reserved opcode 0xB", b"\x8b\x00", 1002),
    ("RSV2", b"\xa2\x00", 1002),
    ("RSV3", b"\x92\x00", 1002),
    ("RSV1 on control", b"\xc9\x00", 1002),
    ("fragmented ping", b"\x09\x00", 1002),
    ("126-byte ping", b"\x89\x7e\x00\x7e" + b"a" * 126, 1002),
    ("16-bit length for 5 bytes", b"\x82\x7e\x00\x05hello", 1002),
    ("64-bit length for 300 bytes", b"\x82\x7f" + (300).to_bytes(8, "big"), 1002),
    ("64-bit length MSB set", b"\x82\x7f\x80" + b"\x00" * 7, 1002),
    ("masked frame from server", b"\x82\x81" + KEY + b"x", 1002),
    ("frame above max size", b"\x82\x7f" + (1 << 40).to_bytes(8, "big"), 1009),
]


@pytest.mark.parametrize(("name", "wire", "code"), BAD, ids=[b[0] for b in BAD])
def test_invalid_frames(name: str, wire: bytes, code: int) -> None:
    with pytest.raises(WebSocketProtocolError) as info:
        _parse(wire, masked=False, rsv=RSV1 if "RSV1" in name else 0)
    assert info.value.code == code


def test_unmasked_frame_to_server_rejected() -> None:
    with pytest.raises(WebSocketProtocolError) as info:
        _parse(b"\x82\x01x", masked=True)
    assert info.value.code == 1002


def test_rsv1_without_extension_rejected() -> None:
    with pytest.raises(WebSocketProtocolError):
        _parse(bytes.fromhex("c10548656c6c6f"), masked=False, rsv=0)


@pytest.mark.parametrize(
    "size",
    [
        0,
        1,
        3,
        4,
        5,
        17,
        TRANSLATE_THRESHOLD - 1,
        TRANSLATE_THRESHOLD,
        1001,
        NUMPY_THRESHOLD - 1,
        NUMPY_THRESHOLD,
        NUMPY_THRESHOLD + 3,
        100_003,
    ],
)
def test_masking_matches_websockets_c_extension(size: int) -> None:
    data = os.urandom(size)
    key = os.urandom(4)
    assert apply_mask(data, key) == ws_apply_mask(data, key)
    assert apply_mask(memoryview(bytearray(data)), key) == ws_apply_mask(data, key)
    assert apply_mask(apply_mask(data, key), key) == data


def test_mask_key_length_checked() -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        apply_mask(b"abc", b"\x00")


def test_mask_into_builds_the_frame() -> None:
    data = os.urandom(70001)
    key = os.urandom(4)
    assert mask_into(b"HEAD", data, key) == b"HEAD" + ws_apply_mask(data, key)
    assert mask_into(b"", memoryview(data)[3:], key) == ws_apply_mask(data[3:], key)
