"""The WebSocket base framing protocol (RFC 6455 §5): opcodes, frame encoding, the frame parser.

Theory of operation. Bytes from the peer accumulate in one ``bytearray``; :func:`parse_frames`
is a generator that reads it as straight-line code — header, extended length, masking key,
payload — yielding ``None`` whenever it needs more bytes and a :class:`Frame` whenever one is
complete. Deleting consumed bytes from the front of a ``bytearray`` is O(1) in CPython, so a
frame costs one copy of its payload (or one unmasking pass, which produces the copy). Every
rule that one frame can break on its own is checked here and raised as
:class:`~infernet_ref.ws.errors.WebSocketProtocolError` with its close code; rules about
*sequences* of frames (fragmentation, RSV1 on continuations) live in ``connection.py``.
"""

from __future__ import annotations

import struct
from collections.abc import Generator
from enum import IntEnum
from typing import NamedTuple

from infernet_ref.ws.errors import WebSocketProtocolError
from infernet_ref.ws.masking import apply_mask


class Opcode(IntEnum):
    """Frame opcodes (RFC 6455 §5.2, §11.8). 0x3-0x7 and 0xB-0xF are reserved."""

    CONT = 0x0  # §5.4 continuation frame
    TEXT = 0x1  # §5.6 text frame (UTF-8)
    BINARY = 0x2  # §5.6 binary frame
    CLOSE = 0x8  # §5.5.1 connection close
    PING = 0x9  # §5.5.2 ping
    PONG = 0xA  # §5.5.3 pong


class CloseCode(IntEnum):
    """Close status codes (RFC 6455 §7.4.1, §11.7; IANA registry)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005  # §7.1.5: never on the wire, "no status code was present"
    ABNORMAL = 1006  # §7.1.5: never on the wire, "closed without a close frame"
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012  # IANA
    TRY_AGAIN_LATER = 1013  # IANA
    BAD_GATEWAY = 1014  # IANA
    TLS_HANDSHAKE = 1015  # §7.4.1: never on the wire


#: Codes that may appear in a close frame (§7.4.1, §7.4.2); 3000-4999 are allowed too.
WIRE_CLOSE_CODES = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)

CONTROL_OPCODES = frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG})
_KNOWN_OPCODES = frozenset(int(op) for op in Opcode)
MAX_CONTROL_PAYLOAD = 125  # §5.5
FIN = 0x80
RSV1 = 0x40  # RFC 7692 §6: "per-message compressed" on the first frame of a message
RSV2 = 0x20
RSV3 = 0x10
MASK_BIT = 0x80

_H2 = struct.Struct("!BB").pack
_H4 = struct.Struct("!BBH").pack
_H10 = struct.Struct("!BBQ").pack


class Frame(NamedTuple):
    """One frame as parsed: the payload is already unmasked."""

    opcode: int
    payload: bytes
    fin: bool = True
    rsv1: bool = False


def is_valid_close_code(code: int) -> bool:
    """Whether ``code`` may be sent in a close frame (RFC 6455 §7.4)."""
    return code in WIRE_CLOSE_CODES or 3000 <= code <= 4999


def encode_header(
    opcode: int, length: int, *, fin: bool = True, rsv1: bool = False, masked: bool = False
) -> bytes:
    """The 2-14 header bytes of a frame, minimal length encoding (RFC 6455 §5.2), without the key."""
    b0 = opcode | (FIN if fin else 0) | (RSV1 if rsv1 else 0)
    m = MASK_BIT if masked else 0
    if length < 126:
        return _H2(b0, m | length)
    if length < 65536:
        return _H4(b0, m | 126, length)
    return _H10(b0, m | 127, length)


def encode_frame(
    opcode: int,
    payload: bytes | bytearray | memoryview,
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask_key: bytes | None = None,
) -> bytes:
    """One complete frame; masked with ``mask_key`` when given (clients, §5.3)."""
    header = encode_header(opcode, len(payload), fin=fin, rsv1=rsv1, masked=mask_key is not None)
    if mask_key is None:
        return header + payload
    return header + mask_key + apply_mask(payload, mask_key)


def _fail(message: str, code: int = CloseCode.PROTOCOL_ERROR) -> WebSocketProtocolError:
    return WebSocketProtocolError(message, code)


def _check_first_byte(b0: int, rsv_allowed: int) -> int:
    """Validate FIN/RSV/opcode of a frame header (RFC 6455 §5.2); return the opcode."""
    opcode = b0 & 0x0F
    if opcode not in _KNOWN_OPCODES:
        raise _fail(f"peer used reserved opcode {opcode:#x} (RFC 6455 §5.2)")
    if b0 & (RSV1 | RSV2 | RSV3) & ~rsv_allowed:
        raise _fail("peer set a reserved bit that no negotiated extension defines (RFC 6455 §5.2)")
    if opcode >= Opcode.CLOSE:
        if not b0 & FIN:
            raise _fail("peer fragmented a control frame (RFC 6455 §5.5)")
        if b0 & RSV1:
            raise _fail("peer set RSV1 on a control frame (RFC 7692 §6.1)")
    return opcode


def parse_frames(
    buf: bytearray, *, expect_masked: bool, max_frame_size: int, rsv_allowed: int = 0
) -> Generator[Frame | None, None, None]:
    """Parse frames from ``buf`` forever (RFC 6455 §5.2): yield ``None`` for "need more bytes".

    ``expect_masked`` is True on a server (client frames MUST be masked, §5.1) and False on a
    client (server frames MUST NOT be masked). ``max_frame_size`` bounds one payload (1009).
    """
    while True:
        while len(buf) < 2:
            yield None
        b0 = buf[0]
        b1 = buf[1]
        opcode = _check_first_byte(b0, rsv_allowed)
        if bool(b1 & MASK_BIT) != expect_masked:
            if expect_masked:
                raise _fail("client sent an unmasked frame (RFC 6455 §5.1)")
            raise _fail("server sent a masked frame (RFC 6455 §5.1)")
        length = b1 & 0x7F
        pos = 2
        if length == 126:
            while len(buf) < 4:
                yield None
            length = (buf[2] << 8) | buf[3]
            if length < 126:
                raise _fail(
                    "peer used a 16-bit length for a short payload (RFC 6455 §5.2 minimal encoding)"
                )
            pos = 4
        elif length == 127:
            while len(buf) < 10:
                yield None
            length = int.from_bytes(buf[2:10], "big")
            if length >> 63:
                raise _fail("peer set the most significant bit of a 64-bit length (RFC 6455 §5.2)")
            if length < 65536:
                raise _fail(
                    "peer used a 64-bit length for a short payload (RFC 6455 §5.2 minimal encoding)"
                )
            pos = 10
        if opcode >= Opcode.CLOSE and length > MAX_CONTROL_PAYLOAD:
            raise _fail(
                f"peer sent a {length}-byte control frame; the limit is 125 (RFC 6455 §5.5)"
            )
        if length > max_frame_size:
            raise _fail(
                f"peer sent a {length}-byte frame; the limit is {max_frame_size}",
                CloseCode.MESSAGE_TOO_BIG,
            )
        if expect_masked:
            end = pos + 4 + length
            while len(buf) < end:
                yield None
            key = bytes(buf[pos : pos + 4])
            with memoryview(buf) as view:
                payload = apply_mask(view[pos + 4 : end], key)
        else:
            end = pos + length
            while len(buf) < end:
                yield None
            payload = bytes(buf[pos:end]) if length < 1024 else _copy(buf, pos, end)
        del buf[:end]
        yield Frame(opcode, payload, bool(b0 & FIN), bool(b0 & RSV1))


def _copy(buf: bytearray, start: int, end: int) -> bytes:
    """One copy of ``buf[start:end]`` (slicing a bytearray then calling bytes() copies twice)."""
    with memoryview(buf) as view:
        return bytes(view[start:end])
