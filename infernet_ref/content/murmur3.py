"""MurmurHash3 x64 128-bit and the UnixFS HAMT hash (multicodec ``murmur3-x64-64``, 0x22).

spec/content.md §HAMT-sharded directories. Theory of operation: the 128-bit variant of Austin
Appleby's MurmurHash3 (``MurmurHash3_x64_128`` in SMHasher, seed 0) reads the input as
little-endian 64-bit blocks of 16 bytes, mixes them into two lanes ``h1``/``h2``, folds in the
tail and finalizes both lanes with ``fmix64``. UnixFS (go-unixfs, the JS importer) uses only the
first lane ``h1`` and consumes its bits most significant first, i.e. the hash *bytes* are
``h1`` big-endian. Pure Python: a directory name is short, so this is never a hot path.
"""

from __future__ import annotations

MASK64 = (1 << 64) - 1
C1 = 0x87C37B91114253D5
C2 = 0x4CF5AD432745937F
HAMT_HASH_CODE = 0x22  # multicodec murmur3-x64-64


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & MASK64


def _fmix(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & MASK64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & MASK64
    k ^= k >> 33
    return k


def _mix_k1(k1: int) -> int:
    return (_rotl((k1 * C1) & MASK64, 31) * C2) & MASK64


def _mix_k2(k2: int) -> int:
    return (_rotl((k2 * C2) & MASK64, 33) * C1) & MASK64


def murmur3_x64_128(data: bytes, seed: int = 0) -> tuple[int, int]:
    """``MurmurHash3_x64_128(data, seed)`` as the two 64-bit lanes ``(h1, h2)``."""
    h1 = h2 = seed & MASK64
    n = len(data)
    nblocks = n // 16
    for i in range(nblocks):
        k1 = int.from_bytes(data[16 * i : 16 * i + 8], "little")
        k2 = int.from_bytes(data[16 * i + 8 : 16 * i + 16], "little")
        h1 ^= _mix_k1(k1)
        h1 = (_rotl(h1, 27) + h2) & MASK64
        h1 = (h1 * 5 + 0x52DCE729) & MASK64
        h2 ^= _mix_k2(k2)
        h2 = (_rotl(h2, 31) + h1) & MASK64
        h2 = (h2 * 5 + 0x38495AB5) & MASK64
    tail = data[16 * nblocks :]
    if len(tail) > 8:
        h2 ^= _mix_k2(int.from_bytes(tail[8:], "little"))
    if tail:
        h1 ^= _mix_k1(int.from_bytes(tail[:8], "little"))
    h1 ^= n
    h2 ^= n
    h1 = (h1 + h2) & MASK64
    h2 = (h2 + h1) & MASK64
    h1 = _fmix(h1)
    h2 = _fmix(h2)
    h1 = (h1 + h2) & MASK64
    h2 = (h2 + h1) & MASK64
    return h1, h2


def hamt_hash(data: bytes) -> bytes:
    """The 8-byte UnixFS HAMT hash of ``data``: lane ``h1`` of murmur3-x64-128, big-endian."""
    return murmur3_x64_128(data)[0].to_bytes(8, "big")
