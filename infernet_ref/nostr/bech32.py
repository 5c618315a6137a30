"""Bech32 (BIP-173) as NIP-19 uses it: the original checksum constant, a 5000-character cap.

BIP-173 limits strings to 90 characters; NIP-19 TLV entities exceed that, so we cap at 5000
characters as nostr-tools does (spec/nostr.md §NIP-19). Mixed case is refused; the
human-readable part is returned lower-case.
"""

from __future__ import annotations

from infernet_ref.nostr.errors import Bech32Error

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_REV = {c: i for i, c in enumerate(CHARSET)}
#: Longest NIP-19 string accepted (nostr-tools ``Bech32MaxSize``).
MAX_LENGTH = 5000
_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: list[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            if (top >> i) & 1:
                chk ^= _GEN[i]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def convert_bits(data: bytes | list[int], frm: int, to: int, *, pad: bool) -> list[int]:
    """Regroup ``data`` from ``frm``-bit to ``to``-bit words (BIP-173 §convertbits)."""
    acc = bits = 0
    out: list[int] = []
    maxv = (1 << to) - 1
    for value in data:
        acc = (acc << frm) | value
        bits += frm
        while bits >= to:
            bits -= to
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (to - bits)) & maxv)
    elif bits >= frm or (acc << (to - bits)) & maxv:
        raise Bech32Error("bech32 data has non-zero or excess padding bits")
    return out


def bech32_encode(hrp: str, data: bytes) -> str:
    """Encode ``data`` under human-readable part ``hrp`` (BIP-173 §Bech32)."""
    words = convert_bits(data, 8, 5, pad=True)
    values = _hrp_expand(hrp) + words
    poly = _polymod([*values, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(poly >> 5 * (5 - i)) & 31 for i in range(6)]
    out = hrp + "1" + "".join(CHARSET[w] for w in words + checksum)
    if len(out) > MAX_LENGTH:
        raise Bech32Error(f"encoding is {len(out)} characters, over the {MAX_LENGTH} cap")
    return out


def bech32_decode(text: str) -> tuple[str, bytes]:
    """Decode a bech32 string to (hrp, bytes); raise :class:`Bech32Error` saying what is wrong."""
    if not isinstance(text, str):
        raise Bech32Error(f"expected a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise Bech32Error(f"bech32 string of {len(text)} characters exceeds the {MAX_LENGTH} cap")
    if any(not 33 <= ord(c) <= 126 for c in text):
        raise Bech32Error("bech32 string has characters outside US-ASCII 33..126")
    lower = text.lower()
    if text != lower and text != text.upper():
        raise Bech32Error("bech32 string mixes upper and lower case")
    pos = lower.rfind("1")
    if pos < 1 or pos + 7 > len(lower):
        raise Bech32Error("bech32 string lacks a separator, a prefix or a 6-character checksum")
    hrp, rest = lower[:pos], lower[pos + 1 :]
    try:
        values = [_REV[c] for c in rest]
    except KeyError as exc:
        raise Bech32Error(f"character {exc.args[0]!r} is not in the bech32 alphabet") from exc
    if _polymod(_hrp_expand(hrp) + values) != 1:
        raise Bech32Error("bech32 checksum mismatch")
    return hrp, bytes(convert_bits(values[:-6], 5, 8, pad=False))
