"""Fixed-size chunking and parallel leaf hashing (spec/content.md §File DAG).

The profile cuts a byte stream into 1 MiB chunks; the last chunk holds the remainder and an
empty stream yields one empty chunk (as the reference chunker does). :func:`hashed_chunks`
hashes chunks on a small thread pool (``hashlib`` releases the GIL for large buffers) while
keeping order, with a bounded window so memory stays constant whatever the stream length.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO, Protocol

CHUNK_SIZE = 1 << 20


class _Readable(Protocol):
    def readinto(self, buffer: bytearray | memoryview, /) -> int | None: ...


ByteSource = bytes | bytearray | memoryview | BinaryIO | _Readable | Iterable[bytes]


def _bytes_left(f: _Readable) -> int | None:
    """Bytes left in a regular file (a sizing hint only; the file may still grow or shrink)."""
    fileno, tell = getattr(f, "fileno", None), getattr(f, "tell", None)
    if fileno is None or tell is None:
        return None
    try:
        st = os.fstat(fileno())
        if not stat.S_ISREG(st.st_mode):
            return None
        return max(0, st.st_size - int(tell()))
    except (OSError, ValueError):
        return None


def _fill(f: _Readable, buf: bytearray, got: int) -> int:
    """Read into ``buf[got:]`` until it is full or the file ends; return the bytes held."""
    view = memoryview(buf)
    try:
        while got < len(buf):
            n = f.readinto(view[got:])
            if not n:
                break
            got += n
    finally:
        view.release()
    return got


def _chunks_from_file(f: _Readable, size: int) -> Iterator[bytes | bytearray]:
    # Buffers are sized by the bytes left (+1 to see EOF in one read), so a folder of small
    # files does not allocate and zero a whole chunk per file; a file that grows is still read.
    emitted = False
    left = _bytes_left(f)
    while True:
        buf = bytearray(size if left is None else min(size, left + 1))
        got = _fill(f, buf, 0)
        while got == len(buf) < size:  # more than the hint said
            buf.extend(bytes(min(size, 2 * len(buf)) - len(buf)))
            got = _fill(f, buf, got)
        if left is not None:
            left = max(0, left - got)
        if got == size:
            emitted = True
            yield buf
            continue
        if got or not emitted:
            del buf[got:]
            yield buf
        return


def _chunks_from_iter(it: Iterable[bytes], size: int) -> Iterator[bytes | bytearray]:
    pending = bytearray()
    emitted = False
    for piece in it:
        if not pending and len(piece) == size:
            emitted = True
            yield piece
            continue
        pending += piece
        while len(pending) >= size:
            out = pending[:size]
            del pending[:size]
            emitted = True
            yield out
    if pending or not emitted:
        yield pending


def iter_chunks(
    source: ByteSource, size: int = CHUNK_SIZE
) -> Iterator[bytes | bytearray | memoryview]:
    """Yield the profile's chunks of ``source`` (bytes, a binary file, or an iterable of bytes)."""
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source)
        if len(view) == 0:
            yield b""
            return
        for off in range(0, len(view), size):
            yield view[off : off + size]
        return
    readinto = getattr(source, "readinto", None)
    if readinto is not None:
        yield from _chunks_from_file(source, size)  # type: ignore[arg-type]
        return
    yield from _chunks_from_iter(source, size)  # type: ignore[arg-type]


def _sha256(chunk: bytes | bytearray | memoryview) -> bytes:
    return hashlib.sha256(chunk).digest()


def default_workers() -> int:
    """Hash threads: the cores we may use, at most 8."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def hashed_chunks(
    chunks: Iterable[bytes | bytearray | memoryview], workers: int | None = None
) -> Iterator[tuple[bytes | bytearray | memoryview, bytes]]:
    """Yield ``(chunk, sha256 digest)`` in input order, hashing up to ``workers`` chunks at once."""
    n = default_workers() if workers is None else workers
    if n <= 1:
        for chunk in chunks:
            yield chunk, _sha256(chunk)
        return
    window: deque[tuple[bytes | bytearray | memoryview, Future[bytes]]] = deque()
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="cid-hash") as pool:
        for chunk in chunks:
            window.append((chunk, pool.submit(_sha256, chunk)))
            if len(window) > 2 * n:
                c, fut = window.popleft()
                yield c, fut.result()
        while window:
            c, fut = window.popleft()
            yield c, fut.result()
