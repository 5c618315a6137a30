"""Chunked encryption for payloads over NIP-44's 65535-byte limit (spec/nostr.md §Chunked payloads).

Theory of operation. A stream is a JSON header and a sequence of binary chunk frames. The header
(``nostr-chunked-header`` schema) carries a fresh random 32-byte ``nonce``, the ``chunk_size`` and,
optionally, the total ``length``. Both sides derive

    stream_key = HKDF-Expand(conversation_key, "infernet-chunked-v1" || sha256(canonical_json(header)), 32)
    chunk keys = HKDF-Expand(stream_key, u64be(index) || flags, 76) -> chacha_key | chacha_nonce | hmac_key

so every chunk key is bound to the conversation, to this stream (its nonce and every header
field), to the chunk's position and to whether it is the last one. A frame is

    version(1) = 0x01 | flags(1) (bit 0: final) | index(8, big-endian) | ChaCha20 ciphertext | HMAC-SHA256(32)

with the MAC over ``version | flags | index | ciphertext``. Non-final chunks carry exactly
``chunk_size`` bytes, the final one 0..chunk_size. The decryptor is a small state machine that
accepts index 0, 1, 2, ... in order and nothing after the final chunk: a flipped bit fails the MAC,
a reordered or replayed chunk has the wrong index (and a MAC made under other keys), a chunk from
another stream fails the MAC, and a stream that stops before its final chunk is refused by
:meth:`ChunkedDecryptor.finish`. The construction hides content, not the length.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from enum import IntEnum, IntFlag
from typing import Any

from infernet_ref.encoding import canonical_json
from infernet_ref.errors import LocalProtocolError
from infernet_ref.nostr.errors import ChunkedError
from infernet_ref.nostr.nip44 import MessageKeys, chacha20, hkdf_expand

ALG = "nip44-chunked-v1"
INFO = b"infernet-chunked-v1"
DEFAULT_CHUNK_SIZE = 1 << 16
MAX_CHUNK_SIZE = 1 << 20
MAX_CHUNKS = 1 << 32
HEADER_OVERHEAD = 10
MAC_SIZE = 32


class FrameVersion(IntEnum):
    """First byte of every chunk frame (spec/nostr.md §Chunked payloads)."""

    V1 = 1


class Flags(IntFlag):
    """Second byte of a chunk frame; undefined bits MUST be zero."""

    FINAL = 1


def _check_header(header: Any) -> tuple[bytes, int, int | None]:
    """Validate a header (hand-checked equivalent of nostr-chunked-header.schema.json)."""
    if type(header) is not dict or not {"v", "alg", "nonce", "chunk_size"} <= header.keys() <= {
        "v",
        "alg",
        "nonce",
        "chunk_size",
        "length",
    }:
        raise ChunkedError("header must hold v, alg, nonce, chunk_size and optionally length")
    if header["v"] != 1 or type(header["v"]) is not int or header["alg"] != ALG:
        raise ChunkedError(f"unsupported chunked header version/alg (want v=1, alg={ALG})")
    nonce = header["nonce"]
    if type(nonce) is not str or len(nonce) != 64 or nonce.strip("0123456789abcdef"):
        raise ChunkedError("header nonce must be 64 lower-case hex characters")
    size = header["chunk_size"]
    if type(size) is not int or not 1 <= size <= MAX_CHUNK_SIZE:
        raise ChunkedError(f"chunk_size must be an integer in [1, {MAX_CHUNK_SIZE}]")
    length = header.get("length")
    if length is not None and (type(length) is not int or not 0 <= length <= size * MAX_CHUNKS):
        raise ChunkedError("length must be a non-negative integer")
    return bytes.fromhex(nonce), size, length


def _stream_key(conversation_key: bytes, header: dict[str, Any]) -> bytes:
    if len(conversation_key) != 32:
        raise LocalProtocolError("conversation key must be 32 bytes")
    return hkdf_expand(conversation_key, INFO + hashlib.sha256(canonical_json(header)).digest(), 32)


def _chunk_keys(stream_key: bytes, index: int, flags: int) -> MessageKeys:
    keys = hkdf_expand(stream_key, index.to_bytes(8, "big") + bytes((flags,)), 76)
    return MessageKeys(keys[:32], keys[32:44], keys[44:76])


class ChunkedEncryptor:
    """Produce a chunked stream: read :attr:`header`, then call :meth:`encrypt_chunk` in order."""

    def __init__(
        self,
        conversation_key: bytes,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        length: int | None = None,
        nonce: bytes | None = None,
    ) -> None:
        nonce = os.urandom(32) if nonce is None else nonce
        if len(nonce) != 32:
            raise LocalProtocolError("stream nonce must be 32 bytes")
        self.header: dict[str, Any] = {
            "v": 1,
            "alg": ALG,
            "nonce": nonce.hex(),
            "chunk_size": chunk_size,
        }
        if length is not None:
            self.header["length"] = length
        try:
            _check_header(self.header)
        except ChunkedError as exc:
            raise LocalProtocolError(str(exc)) from exc
        self._key = _stream_key(conversation_key, self.header)
        self._size, self._length = chunk_size, length
        self._index = self._total = 0
        self._done = False

    def encrypt_chunk(self, data: bytes | memoryview, *, final: bool = False) -> bytes:
        """Encrypt the next chunk; non-final chunks must be exactly ``chunk_size`` bytes."""
        if self._done:
            raise LocalProtocolError("the final chunk was already produced")
        if len(data) > self._size or (not final and len(data) != self._size):
            raise LocalProtocolError(
                f"a non-final chunk must be {self._size} bytes, a final one at most that"
            )
        if self._index >= MAX_CHUNKS:
            raise LocalProtocolError("too many chunks")
        self._total += len(data)
        if self._length is not None and (
            self._total > self._length or (final and self._total != self._length)
        ):
            raise LocalProtocolError(f"stream length differs from the announced {self._length}")
        flags = Flags.FINAL if final else Flags(0)
        keys = _chunk_keys(self._key, self._index, flags)
        head = bytes((FrameVersion.V1, flags)) + self._index.to_bytes(8, "big")
        ciphertext = chacha20(keys.chacha_key, keys.chacha_nonce, bytes(data))
        mac = hmac.digest(keys.hmac_key, head + ciphertext, "sha256")
        self._index += 1
        self._done = final
        return head + ciphertext + mac


class ChunkedDecryptor:
    """Consume a chunked stream: construct from the header, feed frames in order, then :meth:`finish`."""

    def __init__(self, conversation_key: bytes, header: Any) -> None:
        _nonce, self._size, self._length = _check_header(header)
        self._key = _stream_key(conversation_key, header)
        self._index = self._total = 0
        self.done = False

    def decrypt_chunk(self, frame: bytes) -> bytes:
        """Authenticate and decrypt the next frame; :class:`ChunkedError` on anything out of place."""
        if self.done:
            raise ChunkedError("data after the final chunk")
        if not HEADER_OVERHEAD + MAC_SIZE <= len(frame) <= HEADER_OVERHEAD + MAC_SIZE + self._size:
            raise ChunkedError(f"chunk frame of {len(frame)} bytes has an impossible size")
        if frame[0] != FrameVersion.V1 or frame[1] & ~Flags.FINAL:
            raise ChunkedError("unknown chunk frame version or flags")
        flags, index = frame[1], int.from_bytes(frame[2:10], "big")
        if index != self._index:
            raise ChunkedError(
                f"chunk {index} arrived where chunk {self._index} was expected (reordered or replayed)"
            )
        ciphertext, mac = frame[HEADER_OVERHEAD:-MAC_SIZE], frame[-MAC_SIZE:]
        keys = _chunk_keys(self._key, index, flags)
        if not hmac.compare_digest(hmac.digest(keys.hmac_key, frame[:-MAC_SIZE], "sha256"), mac):
            raise ChunkedError(
                f"chunk {index} failed authentication (tampered or from another stream)"
            )
        final = bool(flags & Flags.FINAL)
        if not final and len(ciphertext) != self._size:
            raise ChunkedError(f"non-final chunk {index} is not {self._size} bytes")
        self._total += len(ciphertext)
        if self._length is not None and (
            self._total > self._length or (final and self._total != self._length)
        ):
            raise ChunkedError(f"stream length differs from the header's {self._length}")
        self._index += 1
        self.done = final
        return chacha20(keys.chacha_key, keys.chacha_nonce, ciphertext)

    def finish(self) -> None:
        """Raise :class:`ChunkedError` unless the final chunk has been received (truncation check)."""
        if not self.done:
            raise ChunkedError(f"stream truncated after {self._index} chunks: no final chunk")


def chunked_encrypt(
    data: bytes,
    conversation_key: bytes,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    nonce: bytes | None = None,
) -> tuple[dict[str, Any], list[bytes]]:
    """Encrypt ``data`` whole: return the header and the list of chunk frames."""
    enc = ChunkedEncryptor(conversation_key, chunk_size=chunk_size, length=len(data), nonce=nonce)
    view = memoryview(data)
    count = max(1, -(-len(data) // chunk_size))  # an empty payload is one empty final chunk
    frames = [
        enc.encrypt_chunk(view[i * chunk_size : (i + 1) * chunk_size], final=i == count - 1)
        for i in range(count)
    ]
    return enc.header, frames


def chunked_decrypt(header: Any, frames: list[bytes], conversation_key: bytes) -> bytes:
    """Decrypt a whole stream; :class:`ChunkedError` if any frame is bad or the stream is incomplete."""
    dec = ChunkedDecryptor(conversation_key, header)
    out = bytearray()
    for frame in frames:
        out += dec.decrypt_chunk(frame)
    dec.finish()
    return bytes(out)


#: Byte form (spec/nostr.md §Chunked payloads, byte form): magic "NC", version 1.
MAGIC = b"NC\x01"
MAX_HEADER_SIZE = 1024
#: Default cap on a sealed blob (16 MiB of base64 in a job message is ~12 MiB of bytes).
MAX_SEALED_SIZE = 1 << 24


def chunked_seal(
    data: bytes,
    conversation_key: bytes,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    nonce: bytes | None = None,
) -> bytes:
    """Encrypt ``data`` into the self-contained byte form: ``"NC" 01 | u16 hlen | header | (u32 len | frame)*``."""
    header, frames = chunked_encrypt(data, conversation_key, chunk_size=chunk_size, nonce=nonce)
    head = canonical_json(header)
    parts = [MAGIC, len(head).to_bytes(2, "big"), head]
    for frame in frames:
        parts += [len(frame).to_bytes(4, "big"), frame]
    return b"".join(parts)


def chunked_open(blob: bytes, conversation_key: bytes, *, max_size: int = MAX_SEALED_SIZE) -> bytes:
    """Decrypt the byte form; :class:`ChunkedError` for anything malformed, tampered or truncated."""
    from infernet_ref.encoding import json_decode  # noqa: PLC0415
    from infernet_ref.errors import EncodingError  # noqa: PLC0415

    if len(blob) > max_size:
        raise ChunkedError(f"sealed payload of {len(blob)} bytes exceeds the {max_size}-byte limit")
    if len(blob) < 5 or blob[:3] != MAGIC:
        raise ChunkedError("not a chunked payload (bad magic or version)")
    hlen = int.from_bytes(blob[3:5], "big")
    if hlen > MAX_HEADER_SIZE or 5 + hlen > len(blob):
        raise ChunkedError("chunked header length out of range")
    try:
        header = json_decode(blob[5 : 5 + hlen], max_size=MAX_HEADER_SIZE, max_depth=2)
    except EncodingError as exc:
        raise ChunkedError(f"chunked header is not JSON: {exc}") from exc
    dec = ChunkedDecryptor(conversation_key, header)
    out = bytearray()
    pos = 5 + hlen
    while pos < len(blob):
        if pos + 4 > len(blob):
            raise ChunkedError("truncated frame length")
        flen = int.from_bytes(blob[pos : pos + 4], "big")
        frame = blob[pos + 4 : pos + 4 + flen]
        if len(frame) != flen:
            raise ChunkedError("truncated frame")
        out += dec.decrypt_chunk(frame)
        pos += 4 + flen
    dec.finish()
    return bytes(out)
