"""Client-to-server masking (RFC 6455 §5.3): XOR of the payload with a repeated 4-byte key.

Masking is on the hot path of every frame a client sends and every frame a server receives.
Three implementations, picked by size from measurements (``benchmarks/bench_ws.py --micro``):
small payloads XOR as one big Python integer (fewest calls), mid-size ones as four strided
``bytes.translate`` passes (one 256-byte XOR table per key byte), large ones as ``uint64`` words
in numpy (memory bandwidth). All return new ``bytes``; the input is untouched.
"""

from __future__ import annotations

import threading
from types import ModuleType
from typing import Any

_np: ModuleType | None = None
_local = threading.local()  # per-thread scratch buffer for _mask_numpy


def _numpy() -> Any:
    """numpy, imported on first use (it costs ~0.2 s at start-up and small frames never need it)."""
    global _np  # noqa: PLW0603
    if _np is None:
        import numpy  # noqa: PLC0415

        _np = numpy
    return _np


#: Size ranges: [0, TRANSLATE_THRESHOLD) big-int XOR, then translate, from NUMPY_THRESHOLD numpy.
TRANSLATE_THRESHOLD = 512
NUMPY_THRESHOLD = 2048

# _XOR_TABLES[c] maps every byte b to b ^ c (for bytes.translate).
_XOR_TABLES = tuple(bytes(b ^ c for b in range(256)) for c in range(256))


def _mask_int(data: bytes | bytearray | memoryview, key: bytes) -> bytes:
    n = len(data)
    repeated = (key * ((n >> 2) + 1))[:n]
    value = int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")
    return value.to_bytes(n, "little")


def _mask_translate(data: bytes | bytearray | memoryview, key: bytes) -> bytes:
    out = bytearray(data)
    t = _XOR_TABLES
    out[0::4] = out[0::4].translate(t[key[0]])
    out[1::4] = out[1::4].translate(t[key[1]])
    out[2::4] = out[2::4].translate(t[key[2]])
    out[3::4] = out[3::4].translate(t[key[3]])
    return bytes(out)


#: From this size on the XOR starts at an 8-byte boundary of the source (an unaligned
#: ``uint64`` view makes numpy buffer the whole pass: measured 6x slower at 1 MiB).
ALIGN_THRESHOLD = 128 * 1024


def _scratch(n: int) -> tuple[Any, memoryview]:
    """This thread's scratch buffer of at least ``n + 8`` bytes: (uint64 array, byte view).

    It is reused: a fresh buffer per call costs page faults that dominate the XOR itself for
    large payloads (measured here: 1.7 ms against 0.1 ms at 1 MiB).
    """
    sc: tuple[Any, memoryview] | None = getattr(_local, "scratch", None)
    if sc is None or len(sc[1]) < n + 8:
        size = (max(n + 8, 2 * (0 if sc is None else len(sc[1]))) + 7) & ~7
        words = _numpy().empty(size >> 3, dtype="uint64")
        sc = _local.scratch = (words, memoryview(words).cast("B"))
    return sc


def _xor_view(data: bytes | bytearray | memoryview, key: bytes) -> memoryview:
    """``data`` XOR the repeated ``key``, as a view of this thread's scratch buffer.

    The view is valid until the next call in this thread. The body is one numpy pass over
    ``uint64`` words (the key repeated, rotated to the body's start); the 0-7 bytes before an
    8-byte boundary of the source (large inputs only) and after the last whole word are XORed
    as small integers. One numpy call in all, since its fixed cost dominates mid sizes.
    """
    np = _numpy()
    n = len(data)
    words_out, out = _scratch(n)
    skew = 0
    if n >= ALIGN_THRESHOLD:
        skew = np.frombuffer(data, np.uint8, 1).__array_interface__["data"][0] & 7
    lead = min(-skew & 7, n)
    words = (n - lead) >> 3
    end = lead + (words << 3)
    if lead:
        out[skew : skew + lead] = _mask_int(memoryview(data)[:lead], key)
    if words:
        first = (skew + lead) >> 3  # skew + lead is 0 or 8: the output words are aligned too
        np.bitwise_xor(
            np.frombuffer(data, np.uint64, words, lead),
            int.from_bytes((key * 3)[lead & 3 : (lead & 3) + 8], "little"),
            out=words_out[first : first + words],
        )
    if end != n:
        rotated = (key * 2)[end & 3 : (end & 3) + 4]
        out[skew + end : skew + n] = _mask_int(memoryview(data)[end:], rotated)
    return out[skew : skew + n]


def _mask_numpy(data: bytes | bytearray | memoryview, key: bytes) -> bytes:
    return bytes(_xor_view(data, key))


def mask_into(prefix: bytes, data: bytes | bytearray | memoryview, key: bytes) -> bytes:
    """``prefix + apply_mask(data, key)`` with a single copy into the result.

    Used for a client's large frames: the header is the prefix, and the whole frame goes to
    the transport in one write.
    """
    return b"".join((prefix, _xor_view(data, key)))


def apply_mask(data: bytes | bytearray | memoryview, key: bytes) -> bytes:
    """Mask or unmask ``data`` with the 4-byte ``key`` (RFC 6455 §5.3; the operation is its own inverse)."""
    if len(key) != 4:
        raise ValueError("a masking key is exactly 4 bytes (RFC 6455 §5.3)")
    n = len(data)
    if n == 0:
        return b""
    if n < TRANSLATE_THRESHOLD:
        return _mask_int(data, key)
    if n < NUMPY_THRESHOLD:
        return _mask_translate(data, key)
    return _mask_numpy(data, key)
