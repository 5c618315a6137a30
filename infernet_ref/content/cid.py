"""Content identifiers: CIDv1 (and legacy CIDv0) with sha2-256 multihashes.

spec/content.md §CID. A CIDv1 is ``varint(1) || varint(codec) || multihash``; a multihash is
``varint(code) || varint(len) || digest``. This implementation supports the codecs the
unixfs-v1-2025 profile produces (``raw`` 0x55 and ``dag-pb`` 0x70) and the sha2-256 multihash
(0x12, 32 bytes); anything else is a :class:`CidError`. CIDv0 is the bare base58btc multihash of
a dag-pb block (``Qm...``); it is parsed and can be converted to v1, never emitted.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from enum import IntEnum

from infernet_ref.content.errors import CidError, HashMismatch, MultibaseError, VarintError
from infernet_ref.content.multibase import b32encode, b58decode, b58encode, multibase_decode
from infernet_ref.content.varint import decode_uvarint, encode_uvarint


class Codec(IntEnum):
    """Multicodec codes (multicodec table.csv)."""

    RAW = 0x55
    DAG_PB = 0x70


class HashCode(IntEnum):
    """Multihash function codes (multicodec table.csv)."""

    SHA2_256 = 0x12


SHA256_LEN = 32
MAX_CID_STRING = 128


@dataclass(frozen=True, slots=True)
class CID:
    """A parsed CID. ``digest`` is the sha2-256 digest (32 bytes)."""

    version: int
    codec: Codec
    digest: bytes

    @classmethod
    def v1(cls, codec: Codec, digest: bytes) -> CID:
        if len(digest) != SHA256_LEN:
            raise CidError("sha2-256 digest must be 32 bytes (local error)")
        return cls(1, codec, bytes(digest))

    @classmethod
    def for_block(cls, codec: Codec, block: bytes | bytearray | memoryview) -> CID:
        """The CIDv1 of ``block`` under ``codec`` (spec/content.md §CID)."""
        return cls(1, codec, hashlib.sha256(block).digest())

    @property
    def multihash(self) -> bytes:
        return bytes((HashCode.SHA2_256, SHA256_LEN)) + self.digest

    def to_bytes(self) -> bytes:
        """Binary CID (CIDv0: the bare multihash)."""
        if self.version == 0:
            return self.multihash
        return b"\x01" + encode_uvarint(int(self.codec)) + self.multihash

    def __str__(self) -> str:
        return _cid_text(self.version, self.codec, self.digest)

    def to_v1(self) -> CID:
        return CID(1, self.codec, self.digest)

    def verify(self, block: bytes | bytearray | memoryview) -> None:
        """Raise :class:`HashMismatch` unless ``block`` hashes to this CID."""
        if hashlib.sha256(block).digest() != self.digest:
            raise HashMismatch(str(self))

    def matches(self, block: bytes | bytearray | memoryview) -> bool:
        return hashlib.sha256(block).digest() == self.digest


@functools.lru_cache(maxsize=1 << 14)
def _cid_text(version: int, codec: Codec, digest: bytes) -> str:
    """The multibase text of a CID (cached: the exchange and store name each block many times)."""
    cid = CID(version, codec, digest)
    if version == 0:
        return b58encode(cid.multihash)
    return "b" + b32encode(cid.to_bytes())


def _parse_multihash(data: bytes, offset: int) -> tuple[bytes, int]:
    code, offset = decode_uvarint(data, offset)
    length, offset = decode_uvarint(data, offset)
    if code != HashCode.SHA2_256:
        raise CidError(f"unsupported multihash function 0x{code:x} (only sha2-256)")
    if length != SHA256_LEN:
        raise CidError(f"sha2-256 multihash with digest length {length}")
    end = offset + length
    if end > len(data):
        raise CidError("truncated multihash digest")
    return bytes(data[offset:end]), end


def cid_from_bytes_prefix(data: bytes, offset: int = 0) -> tuple[CID, int]:
    """Parse a binary CID starting at ``offset``; return it and the offset after it."""
    try:
        if data[offset : offset + 2] == b"\x12\x20":
            digest, end = _parse_multihash(data, offset)
            return CID(0, Codec.DAG_PB, digest), end
        version, pos = decode_uvarint(data, offset)
        if version != 1:
            raise CidError(f"unsupported CID version {version}")
        codec_num, pos = decode_uvarint(data, pos)
        try:
            codec = Codec(codec_num)
        except ValueError:
            raise CidError(f"unsupported CID codec 0x{codec_num:x}") from None
        digest, end = _parse_multihash(data, pos)
        return CID(1, codec, digest), end
    except VarintError as exc:
        raise CidError(f"malformed CID: {exc}") from None


def cid_from_bytes(data: bytes | bytearray | memoryview) -> CID:
    """Parse a binary CID that fills ``data`` exactly."""
    raw = bytes(data)
    cid, end = cid_from_bytes_prefix(raw)
    if end != len(raw):
        raise CidError("trailing bytes after CID")
    return cid


def parse_cid(text: str | CID) -> CID:
    """Parse a CID string: CIDv1 in multibase (base32 / base58btc) or a CIDv0 ``Qm...``."""
    if isinstance(text, CID):
        return text
    if not isinstance(text, str) or not 8 <= len(text) <= MAX_CID_STRING:
        raise CidError("CID string must be 8 to 128 characters")
    try:
        if len(text) == 46 and text.startswith("Qm"):
            raw = b58decode(text)
        else:
            raw = multibase_decode(text)
            if raw[:2] == b"\x12\x20":
                raise CidError("a multibase-prefixed string cannot be a CIDv0")
    except MultibaseError as exc:
        raise CidError(f"malformed CID string: {exc}") from None
    return cid_from_bytes(raw)
