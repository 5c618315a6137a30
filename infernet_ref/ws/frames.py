"""The WebSocket base framing protocol (RFC 6455 §5): opcodes, frame encoding, the frame parser.

Theory of operation. Bytes from the peer wait in a :class:`~infernet_ref.ws.buffer.ByteQueue`;
:func:`parse_frames` is a generator that reads it as straight-line code — first two bytes,
header with extended length and masking key, payload — yielding ``None`` whenever it needs more
bytes and a :class:`Frame` whenever one is complete. A payload inside one received chunk is
read as a view and unmasked straight into its final ``bytes`` (one pass); a read that holds
exactly one frame skips the queue (:func:`parse_single_frame`). Every
rule that one frame can break on its own is checked here and raised as
:class:`~infernet_ref.ws.errors.WebSocketProtocolError` with its close code; rules about
*sequences* of frames (fragmentation, RSV1 on continuations) live in ``connection.py``.
"""

from __future__ import annotations

import struct
from collections.abc import Generator
from enum import IntEnum
from typing import NamedTuple

from infernet_ref.ws.buffer import ByteQueue
from infernet_ref.ws.errors import WebSocketProtocolError
from infernet_ref.ws.masking import NUMPY_THRESHOLD, apply_mask, mask_into


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


#: Unmasked payloads from this size on are handed over after their header instead of being
#: concatenated with it (the transport's writelines sends both without copying the payload
#: where it has writev/sendmsg: uvloop, asyncio from Python 3.12; older asyncio joins them).
SPLIT_WRITE_SIZE = 16 * 1024

Buffer = bytes | bytearray | memoryview


def encode_frame_parts(
    opcode: int,
    payload: Buffer,
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask_key: bytes | None = None,
) -> list[Buffer]:
    """One frame as buffers to write in order (RFC 6455 §5.2); masked with ``mask_key`` (§5.3).

    Small frames are one ``bytes``; a large unmasked payload is not copied (header, payload);
    a large masked one is masked straight into the frame buffer.
    """
    n = len(payload)
    header = encode_header(opcode, n, fin=fin, rsv1=rsv1, masked=mask_key is not None)
    if mask_key is None:
        if n >= SPLIT_WRITE_SIZE:
            return [header, payload]
        return [header + payload]
    if n >= NUMPY_THRESHOLD:
        return [mask_into(header + mask_key, payload, mask_key)]
    return [header + mask_key + apply_mask(payload, mask_key)]


def encode_frame(
    opcode: int,
    payload: Buffer,
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask_key: bytes | None = None,
) -> bytes:
    """One complete frame as ``bytes``; masked with ``mask_key`` when given (clients, §5.3)."""
    parts = encode_frame_parts(opcode, payload, fin=fin, rsv1=rsv1, mask_key=mask_key)
    return parts[0] if len(parts) == 1 and type(parts[0]) is bytes else b"".join(parts)


def _fail(message: str, code: int = CloseCode.PROTOCOL_ERROR) -> WebSocketProtocolError:
    return WebSocketProtocolError(message, code)


def _first_byte_error(b0: int, rsv_allowed: int) -> WebSocketProtocolError:
    """The error for an invalid FIN/RSV/opcode combination (RFC 6455 §5.2, §5.5; RFC 7692 §6.1)."""
    opcode = b0 & 0x0F
    if opcode not in _KNOWN_OPCODES:
        return _fail(f"peer used reserved opcode {opcode:#x} (RFC 6455 §5.2)")
    if b0 & (RSV1 | RSV2 | RSV3) & ~rsv_allowed:
        return _fail("peer set a reserved bit that no negotiated extension defines (RFC 6455 §5.2)")
    if not b0 & FIN:
        return _fail("peer fragmented a control frame (RFC 6455 §5.5)")
    return _fail("peer set RSV1 on a control frame (RFC 7692 §6.1)")


def first_byte_table(rsv_allowed: int) -> tuple[int, ...]:
    """For each possible first header byte: its opcode, or -1 if it breaks a rule."""
    table = []
    for b0 in range(256):
        opcode = b0 & 0x0F
        ok = opcode in _KNOWN_OPCODES and not b0 & (RSV1 | RSV2 | RSV3) & ~rsv_allowed
        if opcode >= Opcode.CLOSE and (not b0 & FIN or b0 & RSV1):
            ok = False
        table.append(opcode if ok else -1)
    return tuple(table)


def parse_frames(
    buf: ByteQueue, *, expect_masked: bool, max_frame_size: int, rsv_allowed: int = 0
) -> Generator[Frame | None, None, None]:
    """Parse frames from ``buf`` forever (RFC 6455 §5.2): yield ``None`` for "need more bytes".

    ``expect_masked`` is True on a server (client frames MUST be masked, §5.1) and False on a
    client (server frames MUST NOT be masked). ``max_frame_size`` bounds one payload (1009).
    """
    table = first_byte_table(rsv_allowed)
    key_len = 4 if expect_masked else 0
    while True:
        buf.at_boundary = True
        while buf.size < 2:
            yield None
        buf.at_boundary = False
        b0, b1 = buf.peek2()
        opcode = table[b0]
        if opcode < 0:
            raise _first_byte_error(b0, rsv_allowed)
        if bool(b1 & MASK_BIT) != expect_masked:
            if expect_masked:
                raise _fail("client sent an unmasked frame (RFC 6455 §5.1)")
            raise _fail("server sent a masked frame (RFC 6455 §5.1)")
        length = b1 & 0x7F
        if length < 126:
            if opcode >= Opcode.CLOSE and length > MAX_CONTROL_PAYLOAD:
                raise _fail(
                    f"peer sent a {length}-byte control frame; the limit is 125 (RFC 6455 §5.5)"
                )
            if length > max_frame_size:
                raise _too_big(length, max_frame_size)
            # Small frame: read header and payload in one take.
            total = 2 + key_len + length
            while buf.size < total:
                yield None
            raw = buf.take(total)
            payload = apply_mask(raw[6:], bytes(raw[2:6])) if expect_masked else bytes(raw[2:])
            yield Frame(opcode, payload, bool(b0 & FIN), bool(b0 & RSV1))
            continue
        head = (4 if length == 126 else 10) + key_len
        while buf.size < head:
            yield None
        header = buf.take(head)
        if length == 126:
            length = (header[2] << 8) | header[3]
            if length < 126:
                raise _fail(
                    "peer used a 16-bit length for a short payload (RFC 6455 §5.2 minimal encoding)"
                )
        else:
            length = int.from_bytes(header[2:10], "big")
            if length >> 63:
                raise _fail("peer set the most significant bit of a 64-bit length (RFC 6455 §5.2)")
            if length < 65536:
                raise _fail(
                    "peer used a 64-bit length for a short payload (RFC 6455 §5.2 minimal encoding)"
                )
        if opcode >= Opcode.CLOSE:
            raise _fail(
                f"peer sent a {length}-byte control frame; the limit is 125 (RFC 6455 §5.5)"
            )
        if length > max_frame_size:
            raise _too_big(length, max_frame_size)
        while buf.size < length:
            yield None
        data = buf.take(length)
        if expect_masked:
            payload = apply_mask(data, bytes(header[-4:]))
        else:
            payload = data if type(data) is bytes else bytes(data)
        yield Frame(opcode, payload, bool(b0 & FIN), bool(b0 & RSV1))


def parse_single_frame(
    data: Buffer, table: tuple[int, ...], *, expect_masked: bool, max_frame_size: int
) -> Frame | None:
    """``data`` as one frame if it is exactly one valid frame, else None.

    The fast path for the commonest input, one message per read: it applies every rule
    :func:`parse_frames` applies to such a frame and leaves anything else (errors included) to
    the generator. The payload is always a new ``bytes`` (``data`` may be a reused buffer).
    """
    n = len(data)
    if n < 2:
        return None
    b0 = data[0]
    b1 = data[1]
    opcode = table[b0]
    if opcode < 0 or bool(b1 & MASK_BIT) != expect_masked:
        return None
    length = b1 & 0x7F
    head = 2
    if length == 126:
        if n < 4 or opcode >= Opcode.CLOSE:
            return None
        length = (data[2] << 8) | data[3]
        if length < 126:
            return None
        head = 4
    elif length == 127:
        if n < 10 or opcode >= Opcode.CLOSE:
            return None
        length = int.from_bytes(data[2:10], "big")
        if length >> 63 or length < 65536:
            return None
        head = 10
    if length > max_frame_size:
        return None
    if expect_masked:
        if n != head + 4 + length:
            return None
        payload = apply_mask(memoryview(data)[head + 4 :], bytes(data[head : head + 4]))
    else:
        if n != head + length:
            return None
        payload = bytes(data[head:])
    return Frame(opcode, payload, bool(b0 & FIN), bool(b0 & RSV1))


def _too_big(length: int, limit: int) -> WebSocketProtocolError:
    return _fail(
        f"peer sent a {length}-byte frame; the limit is {limit}", CloseCode.MESSAGE_TOO_BIG
    )
