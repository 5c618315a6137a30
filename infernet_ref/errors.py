"""Error hierarchy shared by every layer.

Errors say who is at fault (see ../shared/STYLE.md, after h11):

- :class:`LocalProtocolError` — *our* caller misused an API (wrong argument, wrong state).
- :class:`RemoteProtocolError` — the *peer* broke the protocol; it carries the code that goes on
  the wire (a WebSocket close code, a DHT error code, a job-protocol error code).
- :class:`ValidationError` — a document does not satisfy its schema or an encoding rule; it names
  the JSON path of the offending field. Raised for bytes that came from a peer, it is also a
  :class:`RemoteProtocolError`-compatible signal: adapters map it to their wire error.

Every parser in the package raises only subclasses of :class:`InfernetError` on hostile input.
"""

from __future__ import annotations


class InfernetError(Exception):
    """Base class of every error the package raises on purpose."""


class LocalProtocolError(InfernetError):
    """The local caller used an API wrongly; nothing went on the wire."""


class RemoteProtocolError(InfernetError):
    """The peer violated the protocol.

    ``code`` is the numeric error that the adapter sends to the peer (close code, error code),
    or ``None`` when the layer has no such code.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class EncodingError(InfernetError):
    """Bytes could not be decoded, or a value cannot be canonically encoded."""


class ValidationError(InfernetError):
    """A document failed schema validation.

    ``path`` is the JSON path (``$.body.tags[0]``) of the offending field, ``schema`` the ``$id``
    of the schema it was checked against and ``reason`` the validator's message.
    """

    def __init__(self, reason: str, *, path: str = "$", schema: str | None = None) -> None:
        where = f" at {path}" if path else ""
        against = f" (schema {schema})" if schema else ""
        super().__init__(f"{reason}{where}{against}")
        self.reason = reason
        self.path = path
        self.schema = schema
