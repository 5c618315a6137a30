"""Incremental UTF-8 validation of text messages (RFC 6455 §5.6, §8.1; RFC 3629 §4).

A text message arrives in fragments that may split a code point anywhere. The CPython
incremental decoder (C speed) validates and decodes each fragment and keeps an incomplete
trailing sequence for the next one; it rejects most impossible prefixes at once (``F4 90``,
``E0 80``, ``C0``) but keeps ``ED A0``-``ED BF`` (a UTF-16 surrogate) pending until the third
byte. :func:`pending_prefix_valid` closes that gap so an invalid sequence fails *as soon as* its
second byte arrives — the "fail fast" rule of §8.1 — even when the fragment ends there.
"""

from __future__ import annotations

import codecs

from infernet_ref.ws.errors import WebSocketProtocolError

INVALID_PAYLOAD = 1007  # RFC 6455 §7.4.1: "inconsistent with the type of the message"

_Decoder = codecs.getincrementaldecoder("utf-8")

# RFC 3629 §4: the valid range of the byte after each lead byte that has a restricted one.
_SECOND_BYTE = {0xE0: (0xA0, 0xBF), 0xED: (0x80, 0x9F), 0xF0: (0x90, 0xBF), 0xF4: (0x80, 0x8F)}


def pending_prefix_valid(pending: bytes) -> bool:
    """Whether an incomplete trailing sequence can still become a valid UTF-8 code point."""
    if len(pending) < 2:
        return True
    low, high = _SECOND_BYTE.get(pending[0], (0x80, 0xBF))
    return low <= pending[1] <= high


def decode_text(payload: bytes) -> str:
    """Decode one complete text payload, or fail with close code 1007 (RFC 6455 §8.1)."""
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebSocketProtocolError(
            f"peer sent invalid UTF-8 in a text payload at byte {exc.start}", INVALID_PAYLOAD
        ) from None


class Utf8Validator:
    """Validates and decodes a fragmented text message fragment by fragment, failing fast."""

    __slots__ = ("_decoder", "_offset")

    def __init__(self) -> None:
        self._decoder = _Decoder("strict")
        self._offset = 0

    def feed(self, chunk: bytes, final: bool = False) -> str:
        """Decode ``chunk``; raise :class:`WebSocketProtocolError` (1007) at the first bad byte."""
        try:
            text: str = self._decoder.decode(chunk, final)
        except UnicodeDecodeError as exc:
            raise WebSocketProtocolError(
                f"peer sent invalid UTF-8 in a text message at byte {self._offset + exc.start}",
                INVALID_PAYLOAD,
            ) from None
        if not final:
            pending = self._decoder.getstate()[0]
            if pending and not pending_prefix_valid(pending):
                raise WebSocketProtocolError(
                    "peer sent an invalid UTF-8 sequence (surrogate or out of range) in a text message",
                    INVALID_PAYLOAD,
                )
        self._offset += len(chunk)
        return text
