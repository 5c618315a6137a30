"""Sans-I/O state machines of the content exchange (spec/content.md §7).

Theory of operation. :class:`ServerSession` holds one connection's want-list as a priority heap
(higher priority first, then arrival order) with lazy deletion, so replace and cancel are O(1)
and popping is O(log n). The adapter feeds it text with :meth:`ServerSession.receive_text`, gets
events (messages to send, a fatal error), and pulls the next entry to serve with
:meth:`ServerSession.next_want`. :class:`ClientSession` tracks what this side asked a provider
for; :meth:`ClientSession.receive_block` accepts only wanted (or just-cancelled) CIDs and checks
every block's hash before it becomes a :class:`BlockReceived`. Neither class does I/O or reads
a clock.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
from collections import OrderedDict
from dataclasses import dataclass

from infernet_ref.content.cid import CID
from infernet_ref.content.errors import ExchangeError, HashMismatch
from infernet_ref.content.exchange.wire import (
    ErrorCode,
    MsgType,
    WantEntry,
    body_cids,
    decode_block_frame,
    decode_message,
    encode_cids,
    encode_error,
    encode_want,
    want_entries,
)

MAX_OUTSTANDING_WANTS = 4096
RECENT_CANCELS = 4096


class Event:
    """Base class of exchange events."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class SendText(Event):
    text: str


@dataclass(frozen=True, slots=True)
class Fatal(Event):
    """Send ``text`` (a content.error) then close the connection with ``close_code``."""

    text: str
    close_code: int
    reason: str


@dataclass(frozen=True, slots=True)
class HaveReceived(Event):
    cids: tuple[CID, ...]


@dataclass(frozen=True, slots=True)
class DontHaveReceived(Event):
    cids: tuple[CID, ...]


@dataclass(frozen=True, slots=True)
class ErrorReceived(Event):
    code: int
    message: str
    fatal: bool


@dataclass(frozen=True, slots=True)
class BlockReceived(Event):
    cid: CID
    data: bytes


POLICY_VIOLATION = 1008  # RFC 6455 §7.4.1
_CODES = frozenset(int(c) for c in ErrorCode)


class ServerSession:
    """One served connection's want-list."""

    def __init__(self, max_wants: int = MAX_OUTSTANDING_WANTS) -> None:
        self.max_wants = max_wants
        self._heap: list[tuple[int, int, CID]] = []
        self._wants: dict[CID, tuple[int, WantEntry]] = {}
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self.closed = False

    def next_id(self) -> str:
        return f"s{next(self._ids)}"

    def __len__(self) -> int:
        return len(self._wants)

    def _fatal(self, code: ErrorCode, message: str) -> list[Event]:
        self.closed = True
        self._wants.clear()
        self._heap.clear()
        return [
            Fatal(
                encode_error(self.next_id(), code, message, fatal=True),
                POLICY_VIOLATION,
                message[:100],
            )
        ]

    def receive_text(self, text: str) -> list[Event]:
        """Apply one text message from the client."""
        if self.closed:
            return []
        try:
            msg = decode_message(text)
        except ExchangeError as exc:
            code = ErrorCode(exc.code) if exc.code in _CODES else ErrorCode.MALFORMED
            if code == ErrorCode.UNSUPPORTED:
                return [SendText(encode_error(self.next_id(), code, str(exc), fatal=False))]
            return self._fatal(code, str(exc))
        try:
            if msg.type == MsgType.WANT:
                return self._want(want_entries(msg.body))
            if msg.type == MsgType.CANCEL:
                for cid in body_cids(msg.body):
                    self._wants.pop(cid, None)
                return []
        except ExchangeError as exc:
            return self._fatal(ErrorCode.MALFORMED, str(exc))
        if msg.type == MsgType.ERROR:
            return []
        return [
            SendText(
                encode_error(
                    self.next_id(),
                    ErrorCode.UNSUPPORTED,
                    f"{msg.type} is server-to-client",
                    fatal=False,
                )
            )
        ]

    def _want(self, entries: list[WantEntry]) -> list[Event]:
        new = sum(1 for e in entries if e.cid not in self._wants)
        if len(self._wants) + new > self.max_wants:
            return self._fatal(
                ErrorCode.TOO_LARGE, f"want-list over {self.max_wants} outstanding entries"
            )
        for e in entries:
            seq = next(self._seq)
            self._wants[e.cid] = (seq, e)
            heapq.heappush(self._heap, (-e.priority, seq, e.cid))
        return []

    def receive_binary(self) -> list[Event]:
        """Clients never send binary messages (spec/content.md §7.6)."""
        return self._fatal(ErrorCode.MALFORMED, "binary message from a client")

    def next_want(self) -> WantEntry | None:
        """Pop the entry to serve next (highest priority, oldest first), or None."""
        while self._heap:
            _, seq, cid = heapq.heappop(self._heap)
            cur = self._wants.get(cid)
            if cur is not None and cur[0] == seq:
                del self._wants[cid]
                return cur[1]
        return None

    def answer(self, entry: WantEntry, held: bool) -> str | None:
        """The have/dont_have text for a served entry (None when nothing is to be sent)."""
        if held and not entry.want_block:
            return encode_cids(MsgType.HAVE, self.next_id(), [entry.cid])
        if not held and entry.send_dont_have:
            return encode_cids(MsgType.DONT_HAVE, self.next_id(), [entry.cid])
        return None


class ClientSession:
    """What this client asked one provider for."""

    def __init__(self) -> None:
        self.inflight: dict[CID, WantEntry] = {}
        self._cancelled: OrderedDict[CID, None] = OrderedDict()
        self._ids = itertools.count(1)

    def want(self, entries: list[WantEntry]) -> str:
        for e in entries:
            self.inflight[e.cid] = e
            self._cancelled.pop(e.cid, None)
        return encode_want(f"c{next(self._ids)}", entries)

    def cancel(self, cids: list[CID]) -> str:
        for c in cids:
            if self.inflight.pop(c, None) is not None:
                self._cancelled[c] = None
        while len(self._cancelled) > RECENT_CANCELS:
            self._cancelled.popitem(last=False)
        return encode_cids(MsgType.CANCEL, f"c{next(self._ids)}", cids)

    def receive_text(self, text: str) -> list[Event]:
        """Decode a server message; raise :class:`ExchangeError` if it is malformed."""
        msg = decode_message(text)
        if msg.type == MsgType.ERROR:
            b = msg.body
            return [ErrorReceived(int(b["code"]), str(b["message"]), bool(b.get("fatal", False)))]
        if msg.type in (MsgType.HAVE, MsgType.DONT_HAVE):
            cids = tuple(c for c in body_cids(msg.body) if c in self.inflight)
            if msg.type == MsgType.DONT_HAVE:
                for c in cids:
                    del self.inflight[c]
                return [DontHaveReceived(cids)] if cids else []
            for c in cids:
                if not self.inflight[c].want_block:
                    del self.inflight[c]
            return [HaveReceived(cids)] if cids else []
        raise ExchangeError(f"{msg.type} is client-to-server", ErrorCode.UNSUPPORTED)

    def parse_block(self, frame: bytes | bytearray | memoryview) -> tuple[CID, memoryview] | None:
        """First half of :meth:`receive_block`: split the frame, check the CID was asked for.

        Returns None for a just-cancelled CID; raises :class:`ExchangeError` for a malformed
        frame or an unsolicited block. Does not change state, so the adapter may hash the
        block on another thread before calling :meth:`finish_block`.
        """
        cid, view = decode_block_frame(frame)
        if cid not in self.inflight:
            if cid in self._cancelled:
                return None
            raise ExchangeError(f"unsolicited block {cid}", ErrorCode.MALFORMED)
        return cid, view

    def finish_block(self, cid: CID, view: memoryview, digest: bytes) -> BlockReceived | None:
        """Second half: ``digest`` is sha256 of ``view``; raise :class:`HashMismatch` if wrong."""
        if digest != cid.digest:
            raise HashMismatch(str(cid), f"provider sent bytes that do not hash to {cid}")
        if self.inflight.pop(cid, None) is None:
            return None  # cancelled while it was being hashed
        return BlockReceived(cid, bytes(view))

    def receive_block(self, frame: bytes | bytearray | memoryview) -> BlockReceived | None:
        """Accept one block frame: None for a just-cancelled CID; raise on a bad or unwanted block."""
        parsed = self.parse_block(frame)
        if parsed is None:
            return None
        cid, view = parsed
        return self.finish_block(cid, view, hashlib.sha256(view).digest())
