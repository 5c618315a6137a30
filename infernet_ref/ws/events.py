"""Events the sans-I/O core reports to its adapter (RFC 6455 §5.6, §5.5, §7).

All are frozen, slotted dataclasses under :class:`Event`. A data message is delivered whole
(after reassembly, decompression and UTF-8 validation) as :class:`Message` whose ``data`` is
``str`` for a text message and ``bytes`` for a binary one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Event:
    """Base class of the core's events."""


@dataclass(frozen=True, slots=True)
class Message(Event):
    """A complete data message (§5.6): ``str`` for text (opcode 0x1), ``bytes`` for binary (0x2)."""

    data: str | bytes


@dataclass(frozen=True, slots=True)
class Ping(Event):
    """The peer sent a ping (§5.5.2); the core has already queued the pong."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong(Event):
    """The peer sent a pong (§5.5.3)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class CloseReceived(Event):
    """The peer's close frame (§5.5.1); ``code`` is 1005 when it carried none (§7.1.5).

    If we had not sent a close frame yet, the core has queued the echo (§5.5.1).
    """

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class ProtocolFailed(Event):
    """We failed the connection (§7.1.7) because the peer broke a rule; always the last event.

    The close frame with ``code`` is queued; the adapter sends it and closes the transport.
    """

    code: int
    reason: str
