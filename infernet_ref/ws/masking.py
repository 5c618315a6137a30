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


def _xor_scratch(data: bytes | bytearray | memoryview, key: bytes) -> Any:
    """``data`` XOR the repeated ``key`` in this thread's scratch buffer (a numpy view of it).

    The body is XORed as ``uint64`` words with the key repeated twice, the bytes before an
    8-byte boundary (large inputs) and the 0-7 trailing bytes one by one. The scratch buffer
    is reused: a fresh buffer per call costs page faults that dominate the XOR itself for large
    payloads (measured here: 1.7 ms against 0.1 ms at 1 MiB).
    """
    np = _numpy()
    n = len(data)
    scratch = getattr(_local, "scratch", None)
    if scratch is None or len(scratch) < n + 8:
        size = max(n + 8, 2 * (0 if scratch is None else len(scratch)))
        scratch = _local.scratch = np.empty(size, dtype=np.uint8)
    src = np.frombuffer(data, dtype=np.uint8)
    skew = src.__array_interface__["data"][0] & 7 if n >= ALIGN_THRESHOLD else 0
    lead = -skew & 7  # bytes before the source's next 8-byte boundary
    out = scratch[skew : skew + n]  # so that out[lead:] is 8-byte aligned as well
    key12 = key * 3
    if lead:
        out[:lead] = src[:lead] ^ np.frombuffer(key12, dtype=np.uint8)[:lead]
    key8 = key12[lead & 3 : (lead & 3) + 8]
    end = lead + ((n - lead) & ~7)
    np.bitwise_xor(
        src[lead:end].view(np.uint64),
        np.uint64(int.from_bytes(key8, "little")),
        out=out[lead:end].view(np.uint64),
    )
    if end != n:
        out[end:] = src[end:] ^ np.frombuffer(key8, dtype=np.uint8)[: n - end]
    return out


def _mask_numpy(data: bytes | bytearray | memoryview, key: bytes) -> bytes:
    result: bytes = _xor_scratch(data, key).tobytes()
    return result


def mask_into(prefix: bytes, data: bytes | bytearray | memoryview, key: bytes) -> bytes:
    """``prefix + apply_mask(data, key)`` with a single copy into the result.

    Used for a client's large frames: the header is the prefix, and the whole frame goes to
    the transport in one write.
    """
    return b"".join((prefix, memoryview(_xor_scratch(data, key))))


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
