"""Unsigned LEB128 varints as multiformats uses them (spec/content.md §Varint).

The multiformats `unsigned-varint` spec limits values to 63 bits (9 bytes) and requires the
minimal encoding: a final byte of 0x00 after a continuation byte is rejected, as is anything
longer than 9 bytes. Protobuf (dag-pb, UnixFS) uses the same encoding for uint64 up to 10 bytes;
:func:`decode_uvarint` takes a ``max_bytes`` for that case.
"""

from __future__ import annotations

from infernet_ref.content.errors import VarintError

MAX_VARINT_BYTES = 9  # multiformats unsigned-varint: at most 63 bits
MAX_PROTOBUF_VARINT_BYTES = 10  # protobuf uint64


def encode_uvarint(value: int) -> bytes:
    """Encode a non-negative integer below 2**63 (2**64 for protobuf use) as a varint."""
    if value < 0 or value >= 1 << 64:
        raise VarintError(f"cannot encode {value} as an unsigned varint (local error)")
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def decode_uvarint(
    data: bytes | bytearray | memoryview, offset: int = 0, *, max_bytes: int = MAX_VARINT_BYTES
) -> tuple[int, int]:
    """Decode one varint at ``offset``; return ``(value, offset_after)``.

    Raises :class:`VarintError` when truncated, non-minimal or longer than ``max_bytes``.
    """
    value = 0
    shift = 0
    end = len(data)
    i = offset
    while True:
        if i >= end:
            raise VarintError("truncated varint")
        if i - offset >= max_bytes:
            raise VarintError(f"varint longer than {max_bytes} bytes")
        b = data[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            if b == 0 and i - offset > 1:
                raise VarintError("varint is not minimally encoded")
            break
        shift += 7
    if max_bytes == MAX_PROTOBUF_VARINT_BYTES and value >= 1 << 64:
        raise VarintError("varint exceeds 64 bits")
    return value, i
