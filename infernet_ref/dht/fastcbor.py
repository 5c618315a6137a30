"""A fast path for the deterministic CBOR of DHT datagrams (spec/encoding.md §CBOR, RFC 8949 §4.2.1).

Why it exists: a thousand-node swarm in one process spends most of its time encoding datagrams,
and ``infernet_ref.encoding.cbor_encode`` is written for clarity (isinstance chains, per-key
bytearrays). This module produces byte-identical output for the subset of the data model the DHT
uses — maps with text/bytes/integer keys, arrays, byte and text strings, integers within 64 bits,
booleans and null; no floats, no tags — using type dispatch, cached encodings of map keys and one
``b"".join``. Anything outside that subset raises :class:`EncodingError`. Tests hold
:func:`encode` equal to ``cbor_encode`` and :func:`decode` to ``cbor_decode`` (on acceptance and
value) over generated inputs.

:func:`decode` is cbor2 (C) followed by the canonical check "re-encoding gives the same bytes",
which also rejects duplicate keys, indefinite lengths, non-shortest heads and every value outside
the subset (tags are refused while decoding).
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

import cbor2

from infernet_ref.errors import EncodingError

MAX_DEPTH = 32
_U64 = 1 << 64
_key_cache: dict[Any, bytes] = {}
_first = itemgetter(0)


def _head(major: int, n: int) -> bytes:
    mt = major << 5
    if n < 24:
        return bytes((mt | n,))
    if n < 0x100:
        return bytes((mt | 24, n))
    if n < 0x10000:
        return bytes((mt | 25,)) + n.to_bytes(2, "big")
    if n < 0x100000000:
        return bytes((mt | 26,)) + n.to_bytes(4, "big")
    if n < _U64:
        return bytes((mt | 27,)) + n.to_bytes(8, "big")
    raise EncodingError("integer does not fit 64 bits")


def _key(k: Any) -> bytes:
    kb = _key_cache.get(k) if type(k) is str else None
    if kb is not None:
        return kb
    t = type(k)
    if t is not str and t is not bytes and t is not int:
        raise EncodingError(f"map key of type {t.__name__} is not allowed")
    parts: list[bytes] = []
    _enc(k, parts, 0)
    kb = b"".join(parts)
    if t is str and len(_key_cache) < 256:
        _key_cache[k] = kb
    return kb


def _enc(v: Any, out: list[bytes], depth: int) -> None:
    t = type(v)
    if t is bytes:
        out.append(_head(2, len(v)))
        out.append(v)
    elif t is str:
        try:
            b = v.encode()
        except UnicodeEncodeError as exc:
            raise EncodingError("text holds a lone surrogate") from exc
        out.append(_head(3, len(b)))
        out.append(b)
    elif t is int:
        out.append(_head(0, v) if v >= 0 else _head(1, -1 - v))
    elif (
        t is list
        and len(v) == 3
        and type(v[0]) is bytes
        and len(v[0]) == 32
        and type(v[1]) is bytes
        and len(v[1]) < 24
        and type(v[2]) is int
        and 0 <= v[2] < 0x10000
    ):
        # A DHT contact [id, ip, port] (spec/dht.md §Contacts): one join instead of four calls.
        out.append(b"\x83\x58\x20" + v[0] + bytes((0x40 | len(v[1]),)) + v[1] + _head(0, v[2]))
    elif t is list or t is tuple:
        if depth >= MAX_DEPTH:
            raise EncodingError(f"nesting deeper than {MAX_DEPTH}")
        out.append(_head(4, len(v)))
        for x in v:
            _enc(x, out, depth + 1)
    elif t is dict:
        if depth >= MAX_DEPTH:
            raise EncodingError(f"nesting deeper than {MAX_DEPTH}")
        items = sorted(((_key(k), x) for k, x in v.items()), key=_first)
        out.append(_head(5, len(items)))
        for kb, x in items:
            out.append(kb)
            _enc(x, out, depth + 1)
    elif v is True:
        out.append(b"\xf5")
    elif v is False:
        out.append(b"\xf4")
    elif v is None:
        out.append(b"\xf6")
    else:
        raise EncodingError(f"{t.__name__} has no CBOR form in the DHT")


def encode(value: Any) -> bytes:
    """Deterministic CBOR of ``value`` (byte-identical to ``cbor_encode`` on the DHT subset)."""
    out: list[bytes] = []
    _enc(value, out, 0)
    return b"".join(out)


def _refuse_tag(_decoder: Any, tag: Any) -> Any:
    raise EncodingError(f"CBOR tag {tag.tag} is not allowed")


def decode(data: bytes, *, max_size: int) -> Any:
    """Decode one deterministic CBOR item of the DHT subset; raises only :class:`EncodingError`."""
    if len(data) > max_size:
        raise EncodingError(f"CBOR item of {len(data)} bytes exceeds the {max_size}-byte limit")
    if not data:
        raise EncodingError("empty input is not a CBOR item")
    try:
        value = cbor2.loads(data, tag_hook=_refuse_tag, str_errors="strict")
    except EncodingError:
        raise
    except Exception as exc:  # cbor2 raises a spread of types on hostile input
        raise EncodingError(f"malformed CBOR: {exc}") from exc
    try:
        canonical = encode(value)
    except RecursionError as exc:
        raise EncodingError("nesting too deep") from exc
    except TypeError as exc:  # an unhashable value where a map key was expected
        raise EncodingError(f"bad CBOR value: {exc}") from exc
    if canonical != data:
        raise EncodingError("CBOR item is not in deterministic encoding (RFC 8949 §4.2.1)")
    return value
