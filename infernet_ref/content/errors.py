"""Errors of the content layer (spec/content.md §Errors).

Every failure on hostile bytes (a malformed CID, dag-pb node, CAR archive, exchange frame, or a
block whose hash does not match its CID) is a subclass of :class:`ContentError`, itself an
:class:`~infernet_ref.errors.InfernetError`. Errors carry who is at fault: ``*Local*`` for API
misuse, the rest for bad input.
"""

from __future__ import annotations

from infernet_ref.errors import (
    EncodingError,
    InfernetError,
    LocalProtocolError,
    RemoteProtocolError,
)


class ContentError(InfernetError):
    """Base class of content-layer errors."""


class VarintError(ContentError, EncodingError):
    """An unsigned varint is truncated, overlong, non-minimal or over 63 bits."""


class MultibaseError(ContentError, EncodingError):
    """A multibase string uses an unknown prefix or an invalid alphabet/padding."""


class CidError(ContentError, EncodingError):
    """A CID (string or bytes) is malformed or uses an unsupported version/codec/hash."""


class DagPbError(ContentError, EncodingError):
    """Bytes are not a canonical dag-pb node (spec/content.md §dag-pb)."""


class UnixFsError(ContentError, EncodingError):
    """A dag-pb node's Data is not a valid UnixFS message, or the DAG shape is invalid."""


class BlockTooLarge(ContentError, EncodingError):
    """A block exceeds the 2 MiB limit of spec/content.md §Limits."""


class HashMismatch(ContentError, EncodingError):
    """A block's bytes do not hash to its CID."""

    def __init__(self, cid: str, message: str = "") -> None:
        super().__init__(message or f"block bytes do not hash to {cid}")
        self.cid = cid


class CarError(ContentError, EncodingError):
    """A CAR v1 archive is malformed (spec/content.md §CAR)."""


class StoreError(ContentError):
    """The block store cannot complete an operation (disk full, corrupt index, missing block)."""


class BlockNotFound(StoreError, KeyError):
    """The requested block is not in the store."""

    def __init__(self, cid: str) -> None:
        super().__init__(f"block {cid} is not in the store")
        self.cid = cid

    def __str__(self) -> str:
        return str(self.args[0])


class PathError(ContentError, LocalProtocolError):
    """A path argument is unusable (escapes the output directory, unsupported file type)."""


class UnsafePathError(ContentError, RemoteProtocolError):
    """A directory entry name from a DAG would escape the output directory."""


class ExchangeError(ContentError, RemoteProtocolError):
    """The exchange peer violated spec/content.md §Exchange; ``code`` goes on the wire."""


class FetchError(ContentError):
    """A fetch could not complete: no provider had a block, or every provider failed."""
