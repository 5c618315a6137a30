"""Worker control-channel framing (spec/node-worker.md §Framing), sans-I/O.

Theory of operation: the provider and its sandboxed worker talk over the worker's stdin/stdout,
so a container started with ``--network none`` still has a channel. Every message is one frame::

    u32 big-endian header length | canonical JSON header (an object) |
    u64 big-endian payload length | payload bytes

The header carries the operation and its small parameters; the payload carries bulk bytes
(activations as safetensors). :func:`encode_frame` builds a frame; :class:`FrameDecoder` is fed
bytes as they arrive (``receive_data``) and hands out complete :class:`Frame` objects
(``next_frame``). The decoder enforces both size limits *before* buffering the body, requires the
header to be canonical JSON (RFC 8785, spec/encoding.md) so a header has exactly one encoding,
and raises :class:`FramingError` — never anything else — on hostile bytes; after an error the
decoder is poisoned (the channel has lost sync and must be closed).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from infernet_ref.encoding import canonical_json, json_decode
from infernet_ref.errors import EncodingError, LocalProtocolError, RemoteProtocolError

HEADER_PREFIX = struct.Struct(">I")  # spec/node-worker.md §Framing: header length
PAYLOAD_PREFIX = struct.Struct(">Q")  # spec/node-worker.md §Framing: payload length
DEFAULT_MAX_HEADER = 1 << 20  # 1 MiB of JSON is far more than any op needs
DEFAULT_MAX_PAYLOAD = 1 << 30  # 1 GiB: the largest activation block a stage may forward
MAX_HEADER_DEPTH = 16
MAX_SAFE_INT = (1 << 53) - 1


class FramingError(RemoteProtocolError):
    """The other end of the control channel sent bytes that are not a valid frame."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded control-channel message."""

    header: dict[str, Any]
    payload: bytes = field(default=b"", repr=False)


def encode_frame(
    header: dict[str, Any],
    payload: bytes = b"",
    *,
    max_header: int = DEFAULT_MAX_HEADER,
    max_payload: int = DEFAULT_MAX_PAYLOAD,
) -> bytes:
    """Encode one frame (spec/node-worker.md §Framing); LocalProtocolError if it breaks a limit."""
    if not isinstance(header, dict):
        raise LocalProtocolError("a frame header must be a JSON object")
    try:
        head = canonical_json(header)
    except EncodingError as exc:
        raise LocalProtocolError(f"frame header is not encodable: {exc}") from exc
    if len(head) > max_header:
        raise LocalProtocolError(f"frame header of {len(head)} bytes exceeds {max_header}")
    if not _exact_ints(header):
        raise LocalProtocolError("frame header holds an integer outside ±(2^53-1)")
    if len(payload) > max_payload:
        raise LocalProtocolError(f"frame payload of {len(payload)} bytes exceeds {max_payload}")
    return b"".join(
        (HEADER_PREFIX.pack(len(head)), head, PAYLOAD_PREFIX.pack(len(payload)), bytes(payload))
    )


class FrameDecoder:
    """Incremental frame parser: bytes in, :class:`Frame` objects out."""

    def __init__(
        self, *, max_header: int = DEFAULT_MAX_HEADER, max_payload: int = DEFAULT_MAX_PAYLOAD
    ) -> None:
        self.max_header = max_header
        self.max_payload = max_payload
        self._buf = bytearray()
        self._broken: FramingError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as a frame."""
        return len(self._buf)

    def receive_data(self, data: bytes) -> None:
        """Append bytes read from the channel."""
        if self._broken is not None:
            raise self._broken
        self._buf += data

    def next_frame(self) -> Frame | None:
        """Return the next complete frame, ``None`` if more bytes are needed; FramingError if bad."""
        if self._broken is not None:
            raise self._broken
        try:
            return self._parse()
        except FramingError as exc:
            self._broken = exc
            self._buf.clear()
            raise

    def _parse(self) -> Frame | None:
        buf = self._buf
        if len(buf) < HEADER_PREFIX.size:
            return None
        (head_len,) = HEADER_PREFIX.unpack_from(buf, 0)
        if head_len > self.max_header:
            raise FramingError(f"peer sent a {head_len}-byte header (limit {self.max_header})")
        if head_len < 2:
            raise FramingError(f"peer sent a {head_len}-byte header; an object needs at least 2")
        body_at = HEADER_PREFIX.size + head_len
        if len(buf) < body_at + PAYLOAD_PREFIX.size:
            return None
        (pay_len,) = PAYLOAD_PREFIX.unpack_from(buf, body_at)
        if pay_len > self.max_payload:
            raise FramingError(f"peer sent a {pay_len}-byte payload (limit {self.max_payload})")
        end = body_at + PAYLOAD_PREFIX.size + pay_len
        if len(buf) < end:
            return None
        header = _decode_header(bytes(buf[HEADER_PREFIX.size : body_at]))
        payload = bytes(buf[body_at + PAYLOAD_PREFIX.size : end])
        del buf[:end]
        return Frame(header, payload)


def _exact_ints(value: object, depth: int = 0) -> bool:
    """True when every integer in ``value`` is exactly representable (spec/encoding.md)."""
    if depth > MAX_HEADER_DEPTH:
        return False
    if isinstance(value, bool) or value is None or isinstance(value, str | float):
        return True
    if isinstance(value, int):
        return abs(value) <= MAX_SAFE_INT
    if isinstance(value, dict):
        return all(_exact_ints(v, depth + 1) for v in value.values())
    if isinstance(value, list | tuple):
        return all(_exact_ints(v, depth + 1) for v in value)
    return True


def _decode_header(raw: bytes) -> dict[str, Any]:
    try:
        value = json_decode(raw, max_size=len(raw), max_depth=MAX_HEADER_DEPTH)
    except EncodingError as exc:
        raise FramingError(f"peer sent a header that is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise FramingError(f"peer sent a header that is a {type(value).__name__}, not an object")
    try:
        canonical = canonical_json(value)
    except EncodingError as exc:
        raise FramingError(f"peer sent a header outside the canonical range: {exc}") from exc
    if canonical != raw:
        raise FramingError("peer sent a header that is not canonical JSON (RFC 8785)")
    return value
