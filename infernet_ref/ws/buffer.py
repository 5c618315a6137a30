"""The receive buffer of the frame parser: chunks kept as received, joined only when needed.

A transport hands over ``bytes`` chunks (up to 256 KiB each; a read that is exactly one frame
never gets here). Appending them to one
``bytearray`` would copy every byte once on arrival and again when a payload is sliced out;
:class:`ByteQueue` keeps the chunks in a deque and :meth:`ByteQueue.take` returns a payload that
lies inside one chunk as a zero-copy ``memoryview`` (or the chunk itself), joining chunks only
for a payload that spans several — one copy, into its final place.
"""

from __future__ import annotations

from collections import deque


class ByteQueue:
    """A FIFO of received bytes with O(1) append and at most one copy per read."""

    __slots__ = ("_chunks", "_pos", "at_boundary", "size")

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._pos = 0  # read offset into self._chunks[0]
        #: Bytes queued (an attribute, not ``__len__`` only: the parser reads it per frame).
        self.size = 0
        #: Set by the frame parser while it waits for the first byte of a new frame.
        self.at_boundary = True

    def __len__(self) -> int:
        return self.size

    def append(self, data: bytes) -> None:
        """Queue ``data`` (immutable ``bytes``; callers convert other buffers first)."""
        if data:
            self._chunks.append(data)
            self.size += len(data)

    def peek2(self) -> tuple[int, int]:
        """The first two bytes, not consumed (caller checks ``len(self) >= 2``)."""
        first = self._chunks[0]
        pos = self._pos
        if len(first) - pos >= 2:
            return first[pos], first[pos + 1]
        return first[pos], self._chunks[1][0]

    def take(self, n: int) -> bytes | memoryview:
        """Consume ``n`` bytes (caller checks ``len(self) >= n``): a view when they lie in one chunk."""
        chunks = self._chunks
        first = chunks[0]
        pos = self._pos
        avail = len(first) - pos
        self.size -= n
        if avail > n:
            self._pos = pos + n
            return memoryview(first)[pos : pos + n]
        if avail == n:
            chunks.popleft()
            self._pos = 0
            return first if pos == 0 else memoryview(first)[pos:]
        parts: list[bytes | memoryview] = [memoryview(first)[pos:]]
        chunks.popleft()
        need = n - avail
        while need:
            chunk = chunks[0]
            if len(chunk) <= need:
                parts.append(chunks.popleft())
                need -= len(chunk)
                self._pos = 0
            else:
                parts.append(memoryview(chunk)[:need])
                self._pos = need
                need = 0
        return b"".join(parts)
