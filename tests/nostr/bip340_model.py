"""A slow, test-only pure-Python model of BIP-340, parametrised by the rule for R's y coordinate.

It exists to explain the two vector files: the final BIP-340 (Taproot) requires R to have an
*even* y and tags its hashes ``BIP0340/...``; an early-2020 draft required a *square* y and used
``BIP340/...`` tags. The model with (even, "BIP0340") reproduces ``test-vectors.csv`` (and agrees
with libsecp256k1); with (square, "BIP340") it reproduces ``draft-2020-square-y-test-vectors.csv``
(the copy in ../shared/vectors). Not used by the package.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
G = (
    0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
    0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8,
)
Point = tuple[int, int] | None


def add(a: Point, b: Point) -> Point:
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0] and (a[1] + b[1]) % P == 0:
        return None
    if a == b:
        lam = 3 * a[0] * a[0] * pow(2 * a[1], P - 2, P) % P
    else:
        lam = (b[1] - a[1]) * pow(b[0] - a[0], P - 2, P) % P
    x = (lam * lam - a[0] - b[0]) % P
    return x, (lam * (a[0] - x) - a[1]) % P


def mul(k: int, pt: Point) -> Point:
    out: Point = None
    for i in reversed(range(256)):
        out = add(out, out)
        if (k >> i) & 1:
            out = add(out, pt)
    return out


def tagged(tag: str, data: bytes) -> bytes:
    t = hashlib.sha256(tag.encode()).digest()
    return hashlib.sha256(t + t + data).digest()


def lift_x(x: int) -> Point:
    if x >= P:
        return None
    c = (pow(x, 3, P) + 7) % P
    y = pow(c, (P + 1) // 4, P)
    if y * y % P != c:
        return None
    return x, y if y % 2 == 0 else P - y


def even_y(pt: tuple[int, int]) -> bool:
    return pt[1] % 2 == 0


def square_y(pt: tuple[int, int]) -> bool:
    return pow(pt[1], (P - 1) // 2, P) == 1


Rule = Callable[[tuple[int, int]], bool]


def sign(sk: bytes, msg: bytes, aux: bytes, r_rule: Rule, tag: str = "BIP0340") -> bytes:
    d0 = int.from_bytes(sk, "big")
    pub = mul(d0, G)
    assert pub is not None
    d = d0 if even_y(pub) else N - d0
    t = bytes(a ^ b for a, b in zip(d.to_bytes(32, "big"), tagged(f"{tag}/aux", aux), strict=True))
    px = pub[0].to_bytes(32, "big")
    k0 = int.from_bytes(tagged(f"{tag}/nonce", t + px + msg), "big") % N
    r = mul(k0, G)
    assert r is not None
    k = k0 if r_rule(r) else N - k0
    rx = r[0].to_bytes(32, "big")
    e = int.from_bytes(tagged(f"{tag}/challenge", rx + px + msg), "big") % N
    return rx + ((k + e * d) % N).to_bytes(32, "big")


def verify(pk: bytes, msg: bytes, sig: bytes, r_rule: Rule, tag: str = "BIP0340") -> bool:
    pub = lift_x(int.from_bytes(pk, "big"))
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    if pub is None or r >= P or s >= N:
        return False
    e = int.from_bytes(tagged(f"{tag}/challenge", sig[:32] + pk + msg), "big") % N
    big_r = add(mul(s, G), mul(N - e, pub))
    return big_r is not None and r_rule(big_r) and big_r[0] == r
