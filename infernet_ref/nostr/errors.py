"""Errors of the identity layer (spec/nostr.md §Errors).

Every failure on hostile input is a subclass of :class:`NostrError` (itself an
:class:`~infernet_ref.errors.InfernetError`). The classes say what is wrong; where a peer sent the
bad value they also derive from :class:`~infernet_ref.errors.RemoteProtocolError` so adapters can
map them to a wire error.
"""

from __future__ import annotations

from infernet_ref.errors import (
    EncodingError,
    InfernetError,
    LocalProtocolError,
    RemoteProtocolError,
)


class NostrError(InfernetError):
    """Base class of every identity-layer error."""


class KeyFormatError(NostrError, EncodingError):
    """A key, signature or id is not the right length, not lower-case hex, or not a valid scalar/point."""


class KeyFileError(NostrError, LocalProtocolError):
    """A key file is missing, malformed, or readable by other users."""


class EventError(NostrError, RemoteProtocolError):
    """An event breaks NIP-01 or an Infernet kind's tag rules (spec/nostr.md §Events).

    ``path`` names the offending field (``$.tags[3][1]``).
    """

    def __init__(self, message: str, path: str = "$") -> None:
        super().__init__(f"{message} at {path}")
        self.reason = message
        self.path = path


class EventEncodingError(NostrError, EncodingError):
    """An event's fields have no canonical serialization (a lone surrogate, a non-integer kind)."""


class Bech32Error(NostrError, EncodingError):
    """A NIP-19 string is not valid bech32, has the wrong prefix, or a malformed TLV body."""


class Nip44Error(NostrError, EncodingError):
    """A NIP-44 payload or input is invalid (spec/nostr.md §NIP-44)."""


class Nip44DecryptError(Nip44Error, RemoteProtocolError):
    """A NIP-44 payload failed to decrypt: unknown version, bad length, bad MAC, bad padding."""


class ChunkedError(NostrError, RemoteProtocolError):
    """A chunked payload (spec/nostr.md §Chunked payloads) is malformed, tampered, truncated or replayed."""


class AuthError(NostrError, RemoteProtocolError):
    """A NIP-42-style authentication response was refused (spec/nostr.md §Authentication)."""
