"""Multibase: base32 (lower, unpadded, prefix ``b``) and base58btc (prefix ``z``, CIDv0 bare).

spec/content.md §Multibase. We only emit base32; we parse base32 (``b``/``B``) and base58btc
(``z``, or a bare CIDv0 ``Qm...``). Decoding is strict: a character outside the alphabet,
padding, or leftover non-zero bits are errors.
"""

from __future__ import annotations

import base64
import binascii

from infernet_ref.content.errors import MultibaseError

B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(B58_ALPHABET)}
_B32_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz234567")
MAX_MULTIBASE_LEN = 4096


def b32encode(data: bytes) -> str:
    """RFC 4648 base32, lower case, no padding."""
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def b32decode(text: str) -> bytes:
    """Inverse of :func:`b32encode`; rejects padding, bad characters and non-zero trailing bits."""
    low = text.lower()
    if not _B32_CHARS.issuperset(low):
        raise MultibaseError("invalid base32 character")
    rem = len(low) % 8
    if rem in (1, 3, 6):
        raise MultibaseError("invalid base32 length")
    pad = (8 - rem) % 8
    try:
        out = base64.b32decode(low.upper() + "=" * pad)
    except (binascii.Error, ValueError) as exc:
        raise MultibaseError(f"invalid base32: {exc}") from None
    if b32encode(out) != low:
        raise MultibaseError("non-canonical base32 (trailing bits set)")
    return out


def b58encode(data: bytes) -> str:
    """Bitcoin base58 (leading zero bytes become '1')."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    num = int.from_bytes(data, "big")
    out = []
    while num:
        num, r = divmod(num, 58)
        out.append(B58_ALPHABET[r])
    return "1" * zeros + "".join(reversed(out))


def b58decode(text: str) -> bytes:
    """Inverse of :func:`b58encode`."""
    if len(text) > MAX_MULTIBASE_LEN:
        raise MultibaseError("base58 string too long")
    num = 0
    for ch in text:
        idx = _B58_INDEX.get(ch)
        if idx is None:
            raise MultibaseError(f"invalid base58 character {ch!r}")
        num = num * 58 + idx
    zeros = len(text) - len(text.lstrip("1"))
    body = num.to_bytes((num.bit_length() + 7) // 8, "big") if num else b""
    return b"\0" * zeros + body


def multibase_decode(text: str) -> bytes:
    """Decode a multibase string with prefix ``b``/``B`` (base32) or ``z`` (base58btc)."""
    if not text or len(text) > MAX_MULTIBASE_LEN:
        raise MultibaseError("empty or oversized multibase string")
    prefix, body = text[0], text[1:]
    if prefix == "b":
        if body != body.lower():
            raise MultibaseError("base32 with prefix 'b' must be lower case")
        return b32decode(body)
    if prefix == "B":
        if body != body.upper():
            raise MultibaseError("base32upper with prefix 'B' must be upper case")
        return b32decode(body)
    if prefix == "z":
        return b58decode(body)
    raise MultibaseError(f"unsupported multibase prefix {prefix!r}")
