"""Deterministic CBOR (spec/encoding.md §CBOR; RFC 8949 §4.2.1 core deterministic encoding).

The encoder is ours because cbor2's ``canonical=True`` sorts map keys length-first (the old
RFC 7049 §3.9 rule), while RFC 8949 §4.2.1 sorts them by the bytewise lexicographic order of
their deterministic encodings. Rules: preferred (shortest) argument encodings, definite lengths
only, floats in the shortest of half/single/double that keeps the value, no tags.

Decoding goes through cbor2 and then enforces the data model: only maps, arrays, text, bytes,
integers within 64 bits, floats, booleans and null; no tags; map keys of text, bytes or integers;
no duplicate keys; a size and a depth cap. With ``require_canonical=True`` the input must also be
exactly the deterministic encoding of what it decodes to.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import cbor2

from infernet_ref.errors import EncodingError

#: Default cap on a CBOR item's size in bytes (64 KiB: a DHT datagram is far smaller).
MAX_CBOR_SIZE = 1 << 16
MAX_CBOR_DEPTH = 32
_UINT64_MAX = (1 << 64) - 1


def _head(major: int, arg: int, out: bytearray) -> None:
    mt = major << 5
    if arg < 24:
        out.append(mt | arg)
    elif arg < 0x100:
        out += bytes((mt | 24, arg))
    elif arg < 0x10000:
        out.append(mt | 25)
        out += arg.to_bytes(2, "big")
    elif arg < 0x100000000:
        out.append(mt | 26)
        out += arg.to_bytes(4, "big")
    else:
        out.append(mt | 27)
        out += arg.to_bytes(8, "big")


def _float(x: float, out: bytearray) -> None:
    if math.isnan(x):
        out += b"\xf9\x7e\x00"
        return
    for fmt, prefix in (("e", 0xF9), ("f", 0xFA)):
        try:
            packed = struct.pack(">" + fmt, x)
        except OverflowError:
            continue
        if struct.unpack(">" + fmt, packed)[0] == x:
            out.append(prefix)
            out += packed
            return
    out.append(0xFB)
    out += struct.pack(">d", x)


def _enc(value: Any, out: bytearray, depth: int) -> None:
    if depth > MAX_CBOR_DEPTH:
        raise EncodingError(f"nesting deeper than {MAX_CBOR_DEPTH}")
    if value is False:
        out.append(0xF4)
    elif value is True:
        out.append(0xF5)
    elif value is None:
        out.append(0xF6)
    elif isinstance(value, int):
        if value >= 0:
            if value > _UINT64_MAX:
                raise EncodingError("integer does not fit 64 bits")
            _head(0, value, out)
        else:
            if -1 - value > _UINT64_MAX:
                raise EncodingError("integer does not fit 64 bits")
            _head(1, -1 - value, out)
    elif isinstance(value, bytes | bytearray | memoryview):
        blob = bytes(value)
        _head(2, len(blob), out)
        out += blob
    elif isinstance(value, str):
        try:
            raw = value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise EncodingError("text holds a lone surrogate") from exc
        _head(3, len(raw), out)
        out += raw
    elif isinstance(value, float):
        _float(value, out)
    elif isinstance(value, list | tuple):
        _head(4, len(value), out)
        for item in value:
            _enc(item, out, depth + 1)
    elif isinstance(value, dict):
        items: list[tuple[bytes, bytes]] = []
        for key, val in value.items():
            if not isinstance(key, str | bytes | int) or isinstance(key, bool):
                raise EncodingError(f"map key of type {type(key).__name__} is not allowed")
            kb = bytearray()
            _enc(key, kb, depth + 1)
            vb = bytearray()
            _enc(val, vb, depth + 1)
            items.append((bytes(kb), bytes(vb)))
        items.sort(key=lambda kv: kv[0])
        _head(5, len(items), out)
        for key_bytes, val_bytes in items:
            out += key_bytes
            out += val_bytes
    else:
        raise EncodingError(f"{type(value).__name__} has no CBOR form in this protocol")


def cbor_encode(value: Any) -> bytes:
    """Encode ``value`` with RFC 8949 §4.2.1 core deterministic encoding (spec/encoding.md §CBOR)."""
    out = bytearray()
    _enc(value, out, 0)
    return bytes(out)


def _check(value: Any, depth: int) -> None:
    if depth > MAX_CBOR_DEPTH:
        raise EncodingError(f"nesting deeper than {MAX_CBOR_DEPTH}")
    if value is None or isinstance(value, bool | float | str | bytes):
        return
    if isinstance(value, int):
        if not -(1 << 64) <= value <= _UINT64_MAX:
            raise EncodingError("integer does not fit 64 bits (bignum tags are not allowed)")
        return
    if isinstance(value, list):
        for item in value:
            _check(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, val in value.items():
            if not isinstance(key, str | bytes | int) or isinstance(key, bool):
                raise EncodingError(f"map key of type {type(key).__name__} is not allowed")
            _check(val, depth + 1)
        return
    raise EncodingError(
        f"CBOR item of type {type(value).__name__} is not allowed (tags are refused)"
    )


def _refuse_tag(_decoder: Any, tag: Any) -> Any:
    raise EncodingError(f"CBOR tag {tag.tag} is not allowed")


def cbor_decode(
    data: bytes | bytearray | memoryview,
    *,
    max_size: int = MAX_CBOR_SIZE,
    require_canonical: bool = True,
) -> Any:
    """Decode exactly one CBOR item under the protocol's data model (spec/encoding.md §CBOR).

    Protocol messages MUST be deterministic, so ``require_canonical`` defaults to True; that also
    refuses duplicate map keys (they cannot survive the re-encoding). With False (archives made by
    other tools), a duplicated key keeps its last value.
    """
    raw = bytes(data)
    if len(raw) > max_size:
        raise EncodingError(f"CBOR item of {len(raw)} bytes exceeds the {max_size}-byte limit")
    if not raw:
        raise EncodingError("empty input is not a CBOR item")
    try:
        value = cbor2.loads(raw, tag_hook=_refuse_tag, str_errors="strict")
    except EncodingError:
        raise
    except Exception as exc:  # cbor2 raises a spread of types on hostile input
        raise EncodingError(f"malformed CBOR: {exc}") from exc
    _check(value, 0)
    if require_canonical and cbor_encode(value) != raw:
        raise EncodingError("CBOR item is not in deterministic encoding (RFC 8949 §4.2.1)")
    return value


def json_view(value: Any) -> Any:
    """The JSON view of a decoded CBOR item: byte strings become lower-case hex (spec/encoding.md)."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [json_view(v) for v in value]
    if isinstance(value, dict):
        return {(k.hex() if isinstance(k, bytes) else k): json_view(v) for k, v in value.items()}
    return value
