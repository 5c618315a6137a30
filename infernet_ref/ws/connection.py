"""The WebSocket connection state machine after the opening handshake (RFC 6455 §5-§7).

Theory of operation. :class:`Connection` is sans-I/O: :meth:`Connection.receive_data` takes
bytes and returns :mod:`events <infernet_ref.ws.events>`; the ``send_*`` methods return the
bytes of the frames to write; automatic replies (pong, the close echo, the close frame that
fails the connection) wait in :meth:`Connection.data_to_send`. Frames come from the generator
in ``frames.py``; this module applies the rules about *sequences* of frames — fragmentation
(§5.4), RSV1 only on a message's first frame (RFC 7692 §6.1), the message size limit (1009),
UTF-8 of text messages (1007) — and the closing handshake (§7). Any rule the peer breaks ends
the event list with :class:`~infernet_ref.ws.events.ProtocolFailed`; no exception escapes
:meth:`receive_data`.

States: ``OPEN`` → ``CLOSING`` (we sent close, awaiting the peer's) → ``CLOSED`` (both close
frames exchanged, or the connection failed). After the peer's close frame nothing more is read.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from enum import Enum, IntEnum

from infernet_ref.ws.buffer import ByteQueue
from infernet_ref.ws.errors import InvalidState, WebSocketProtocolError
from infernet_ref.ws.events import CloseReceived, Event, Message, Ping, Pong, ProtocolFailed
from infernet_ref.ws.extensions.deflate import PerMessageDeflate
from infernet_ref.ws.frames import (
    MAX_CONTROL_PAYLOAD,
    RSV1,
    Buffer,
    CloseCode,
    Frame,
    Opcode,
    encode_frame,
    encode_frame_parts,
    first_byte_table,
    is_valid_close_code,
    parse_frames,
    parse_single_frame,
)
from infernet_ref.ws.utf8 import Utf8Validator, decode_text

DEFAULT_MAX_MESSAGE_SIZE = 32 * 1024 * 1024  # spec/ws.md "Limits"
MAX_REASON_BYTES = MAX_CONTROL_PAYLOAD - 2  # §5.5.1: the code takes 2 of the 125 bytes
# Plain ints for the per-frame dispatch (IntEnum attribute lookups cost more on CPython 3.11).
_CONT, _TEXT, _BINARY = int(Opcode.CONT), int(Opcode.TEXT), int(Opcode.BINARY)
_PING, _PONG = int(Opcode.PING), int(Opcode.PONG)
_DATA = frozenset({int(Opcode.TEXT), int(Opcode.BINARY)})


class Role(Enum):
    CLIENT = "client"
    SERVER = "server"


class State(IntEnum):
    OPEN = 1  # §4.1 "_The WebSocket Connection is Established_"
    CLOSING = 2  # §7.1.3 "_The WebSocket Closing Handshake is Started_"
    CLOSED = 3  # §7.1.4 closing handshake done, or the connection failed (§7.1.7)


def _join(parts: list[Buffer]) -> bytes:
    first = parts[0]
    return first if len(parts) == 1 and type(first) is bytes else b"".join(parts)


def truncate_reason(reason: str) -> bytes:
    """``reason`` as UTF-8, cut at a character boundary to fit a close frame (§5.5.1)."""
    raw = reason.encode("utf-8")
    if len(raw) <= MAX_REASON_BYTES:
        return raw
    return raw[:MAX_REASON_BYTES].decode("utf-8", "ignore").encode("utf-8")


def parse_close_payload(payload: bytes) -> tuple[int, str]:
    """Code and reason of a close frame (§5.5.1, §7.1.5); raise on a malformed one (§7.4)."""
    if not payload:
        return CloseCode.NO_STATUS, ""
    if len(payload) == 1:
        raise WebSocketProtocolError("peer sent a 1-byte close payload (RFC 6455 §5.5.1)")
    code = int.from_bytes(payload[:2], "big")
    if not is_valid_close_code(code):
        raise WebSocketProtocolError(
            f"peer sent close code {code}, which may not be sent (RFC 6455 §7.4)"
        )
    return code, decode_text(payload[2:])


class Connection:
    """Sans-I/O WebSocket endpoint in the OPEN state and after (RFC 6455 §5-§7)."""

    def __init__(
        self,
        role: Role,
        *,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        max_frame_size: int | None = None,
        deflate: PerMessageDeflate | None = None,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.role = role
        self.state = State.OPEN
        self.max_message_size = max_message_size
        self.deflate = deflate
        self.close_sent: tuple[int, str] | None = None
        self.close_received: tuple[int, str] | None = None
        self.failure: WebSocketProtocolError | None = None
        self._random = random_bytes
        self._key_pool = b""
        self._key_pos = 0
        self._is_client = role is Role.CLIENT
        self._buf = ByteQueue()
        self._masked_in = not self._is_client
        self._max_frame = max_message_size if max_frame_size is None else max_frame_size
        rsv_allowed = RSV1 if deflate is not None else 0
        self._table = first_byte_table(rsv_allowed)
        self._parser = parse_frames(
            self._buf,
            expect_masked=self._masked_in,
            max_frame_size=self._max_frame,
            rsv_allowed=rsv_allowed,
        )
        self._out: list[bytes] = []
        self._reading = True
        # The fragmented message being received (§5.4).
        self._frag_opcode: int | None = None
        self._frag_parts: list[bytes] = []
        self._frag_text: list[str] = []
        self._frag_size = 0
        self._frag_compressed = False
        self._utf8: Utf8Validator | None = None
        # The fragmented message being sent.
        self._send_opcode: int | None = None
        self._send_compressed = False

    # -- input -----------------------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Feed bytes from the peer; return the events they complete (§5-§7).

        ``data`` may be a view of a buffer the caller reuses: nothing here refers to it after
        returning (a frame's payload is unmasked or copied out of it, other bytes are copied).
        """
        if not self._reading:
            return []
        t = type(data)
        if t is memoryview:
            if data.format != "B" or not data.c_contiguous:  # type: ignore[union-attr]
                data = bytes(data)
        elif t is not bytes and t is not bytearray:
            data = bytes(data)
        buf = self._buf
        if buf.at_boundary and not buf.size:
            frame = parse_single_frame(
                data, self._table, expect_masked=self._masked_in, max_frame_size=self._max_frame
            )
            if frame is not None:  # fast path: exactly one frame
                try:
                    event = self._handle(frame)
                except WebSocketProtocolError as exc:
                    return [self._fail(exc)]
                return [] if event is None else [event]
        buf.append(data if type(data) is bytes else bytes(data))
        events: list[Event] = []
        try:
            while (frame := next(self._parser)) is not None:
                event = self._handle(frame)
                if event is not None:
                    events.append(event)
                    if self.close_received is not None:
                        break  # §5.5.1: nothing after the close frame is read
        except WebSocketProtocolError as exc:
            events.append(self._fail(exc))
        return events

    def receive_eof(self) -> None:
        """The peer closed the transport; nothing more will be read (§7.1.5, code 1006 if no close)."""
        self._reading = False
        if self.close_received is None:
            self.state = State.CLOSED

    def data_to_send(self) -> bytes:
        """Bytes of automatic replies (pong, close) waiting to be written."""
        if not self._out:
            return b""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def _handle(self, frame: Frame) -> Event | None:
        op = frame.opcode
        if op in _DATA:
            if self._frag_opcode is not None:
                raise WebSocketProtocolError(
                    "peer started a new data message inside a fragmented one (RFC 6455 §5.4)"
                )
            if frame.fin:
                return self._whole_message(op, frame.payload, frame.rsv1)
            self._frag_opcode = op
            self._frag_compressed = frame.rsv1
            self._utf8 = Utf8Validator() if op == Opcode.TEXT else None
            return self._fragment(frame.payload, False)
        if op == _CONT:
            if self._frag_opcode is None:
                raise WebSocketProtocolError(
                    "peer sent a continuation frame outside a message (RFC 6455 §5.4)"
                )
            if frame.rsv1:
                raise WebSocketProtocolError(
                    "peer set RSV1 on a continuation frame (RFC 7692 §6.1)"
                )
            return self._fragment(frame.payload, frame.fin)
        if op == _PING:
            if self.close_sent is None:
                self._out.append(self._frame(Opcode.PONG, frame.payload))
            return Ping(frame.payload)
        if op == _PONG:
            return Pong(frame.payload)
        return self._receive_close(frame.payload)

    def _whole_message(self, op: int, payload: bytes, compressed: bool) -> Message:
        if compressed:
            assert self.deflate is not None  # the parser only allows RSV1 when deflate is on
            payload = self.deflate.decompress(payload, True, self.max_message_size)
        elif len(payload) > self.max_message_size:
            raise self._too_big(len(payload))
        if op == _TEXT:
            return Message(decode_text(payload))
        return Message(payload)

    def _fragment(self, payload: bytes, fin: bool) -> Message | None:
        if self._frag_compressed:
            assert self.deflate is not None
            payload = self.deflate.decompress(payload, fin, self.max_message_size - self._frag_size)
        self._frag_size += len(payload)
        if self._frag_size > self.max_message_size:
            raise self._too_big(self._frag_size)
        if self._utf8 is not None:
            self._frag_text.append(self._utf8.feed(payload, fin))
        else:
            self._frag_parts.append(payload)
        if not fin:
            return None
        data: str | bytes = (
            "".join(self._frag_text) if self._utf8 is not None else b"".join(self._frag_parts)
        )
        self._frag_opcode = None
        self._frag_parts = []
        self._frag_text = []
        self._frag_size = 0
        self._utf8 = None
        return Message(data)

    def _too_big(self, size: int) -> WebSocketProtocolError:
        return WebSocketProtocolError(
            f"peer's message exceeds the {self.max_message_size}-byte limit ({size} bytes so far)",
            CloseCode.MESSAGE_TOO_BIG,
        )

    def _receive_close(self, payload: bytes) -> CloseReceived:
        code, reason = parse_close_payload(payload)
        self.close_received = (code, reason)
        self._reading = False
        if self.close_sent is None:
            # §5.5.1: echo the status code received.
            self._out.append(self._close_frame(None if code == CloseCode.NO_STATUS else code, ""))
            self.close_sent = (code, "")
        self.state = State.CLOSED
        return CloseReceived(code, reason)

    def _fail(self, exc: WebSocketProtocolError) -> ProtocolFailed:
        """Fail the WebSocket connection (§7.1.7): queue a close frame with the error's code."""
        self.failure = exc
        self._reading = False
        reason = truncate_reason(str(exc)).decode("utf-8")
        if self.close_sent is None:
            self._out.append(self._close_frame(exc.code, reason))
            self.close_sent = (exc.code, reason)
        self.state = State.CLOSED
        return ProtocolFailed(exc.code, reason)

    # -- output ----------------------------------------------------------------------------

    def _mask_key(self) -> bytes:
        """A fresh masking key (§5.3, §10.3), cut from a pool of ``random_bytes`` output.

        Drawing 4096 bytes at a time keeps every key as unpredictable as the source while
        saving a system call per frame.
        """
        pos = self._key_pos
        if pos >= len(self._key_pool):
            self._key_pool = self._random(4096)
            pos = 0
        self._key_pos = pos + 4
        return self._key_pool[pos : pos + 4]

    def _frame(
        self,
        opcode: int,
        payload: bytes | bytearray | memoryview,
        fin: bool = True,
        rsv1: bool = False,
    ) -> bytes:
        key = self._mask_key() if self._is_client else None
        return encode_frame(opcode, payload, fin=fin, rsv1=rsv1, mask_key=key)

    def _close_frame(self, code: int | None, reason: str) -> bytes:
        if code is None:
            return self._frame(Opcode.CLOSE, b"")
        return self._frame(Opcode.CLOSE, code.to_bytes(2, "big") + truncate_reason(reason))

    def _check_open(self) -> None:
        if self.state is not State.OPEN:
            raise InvalidState(f"cannot send: the connection is {self.state.name}")

    def send_message(self, data: str | Buffer) -> bytes:
        """Frame one whole data message (§5.6), compressed when negotiated (RFC 7692 §7.2.1)."""
        return _join(self.send_message_parts(data))

    def send_message_parts(self, data: str | Buffer) -> list[Buffer]:
        """:meth:`send_message` as buffers to write in order (large payloads are not copied)."""
        if self.state is not State.OPEN:
            self._check_open()
        if self._send_opcode is not None:
            raise InvalidState("a fragmented message is being sent; finish it first")
        if isinstance(data, str):
            op, payload = _TEXT, data.encode("utf-8")
        else:
            op, payload = _BINARY, data  # type: ignore[assignment]
        deflate = self.deflate
        rsv1 = False
        if deflate is not None and deflate.should_compress(len(payload)):
            payload, rsv1 = deflate.compress(payload), True
        key = self._mask_key() if self._is_client else None
        return encode_frame_parts(op, payload, rsv1=rsv1, mask_key=key)

    def send_fragment(self, data: str | Buffer, *, fin: bool) -> bytes:
        """Frame one fragment of a message (§5.4); the first fixes its type, ``fin`` ends it."""
        return _join(self.send_fragment_parts(data, fin=fin))

    def send_fragment_parts(self, data: str | Buffer, *, fin: bool) -> list[Buffer]:
        """:meth:`send_fragment` as buffers to write in order."""
        self._check_open()
        text = isinstance(data, str)
        payload = data.encode("utf-8") if isinstance(data, str) else data
        first = self._send_opcode is None
        if first:
            self._send_opcode = Opcode.TEXT if text else Opcode.BINARY
            self._send_compressed = self.deflate is not None
            op: int = self._send_opcode
        else:
            if text != (self._send_opcode == Opcode.TEXT):
                raise InvalidState("all fragments of a message must be str (text) or all bytes")
            op = Opcode.CONT
        if fin:
            self._send_opcode = None
        if self._send_compressed:
            assert self.deflate is not None
            payload = self.deflate.compress(payload, fin)
        key = self._mask_key() if self._is_client else None
        return encode_frame_parts(
            op, payload, fin=fin, rsv1=first and self._send_compressed, mask_key=key
        )

    def send_ping(self, payload: bytes = b"") -> bytes:
        """A ping frame (§5.5.2); at most 125 bytes of payload."""
        self._check_open()
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise InvalidState("a ping payload is at most 125 bytes (RFC 6455 §5.5)")
        return self._frame(Opcode.PING, payload)

    def send_pong(self, payload: bytes = b"") -> bytes:
        """An unsolicited pong frame (§5.5.3), usable as a unidirectional heartbeat."""
        self._check_open()
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise InvalidState("a pong payload is at most 125 bytes (RFC 6455 §5.5)")
        return self._frame(Opcode.PONG, payload)

    def send_close(self, code: int | None = CloseCode.NORMAL, reason: str = "") -> bytes:
        """Start the closing handshake (§7.1.2); ``code=None`` sends an empty close frame."""
        if self.close_sent is not None:
            raise InvalidState("a close frame was already sent")
        if code is None:
            if reason:
                raise InvalidState("a close reason needs a close code (RFC 6455 §5.5.1)")
        elif not is_valid_close_code(code):
            raise InvalidState(f"close code {code} may not be sent (RFC 6455 §7.4)")
        if len(reason.encode("utf-8")) > MAX_REASON_BYTES:
            raise InvalidState("a close reason is at most 123 bytes of UTF-8 (RFC 6455 §5.5)")
        self.close_sent = (CloseCode.NO_STATUS if code is None else code, reason)
        self.state = State.CLOSED if self.close_received is not None else State.CLOSING
        return self._close_frame(code, reason)
