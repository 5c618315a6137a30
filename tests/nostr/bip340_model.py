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


Jacobian = tuple[int, int, int]  # (X, Y, Z) with x = X/Z^2, y = Y/Z^3; Z = 0 is infinity


def _jdouble(p: Jacobian) -> Jacobian:
    x, y, z = p
    if z == 0 or y == 0:
        return (0, 1, 0)
    s = 4 * x * y * y % P
    m = 3 * x * x % P
    nx = (m * m - 2 * s) % P
    return nx, (m * (s - nx) - 8 * pow(y, 4, P)) % P, 2 * y * z % P


def _jadd(p: Jacobian, q: tuple[int, int]) -> Jacobian:
    """Jacobian p plus affine q."""
    x1, y1, z1 = p
    if z1 == 0:
        return q[0], q[1], 1
    z1z1 = z1 * z1 % P
    u2, s2 = q[0] * z1z1 % P, q[1] * z1 * z1z1 % P
    if u2 == x1:
        return _jdouble(p) if s2 == y1 else (0, 1, 0)
    h, r = (u2 - x1) % P, (s2 - y1) % P
    hh = h * h % P
    hhh, v = h * hh % P, x1 * hh % P
    nx = (r * r - hhh - 2 * v) % P
    return nx, (r * (v - nx) - y1 * hhh) % P, z1 * h % P


def mul(k: int, pt: Point) -> Point:
    """k * pt by double-and-add in Jacobian coordinates, one inversion at the end."""
    if pt is None:
        return None
    acc: Jacobian = (0, 1, 0)
    for i in reversed(range(k.bit_length())):
        acc = _jdouble(acc)
        if (k >> i) & 1:
            acc = _jadd(acc, pt)
    x, y, z = acc
    if z == 0:
        return None
    zi = pow(z, P - 2, P)
    return x * zi * zi % P, y * zi * zi * zi % P


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
