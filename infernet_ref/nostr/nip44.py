"""NIP-44 version 2: conversation key, message keys, padding, encrypt, decrypt (spec/nostr.md §NIP-44).

conversation_key = HKDF-Extract(salt="nip44-v2", IKM=x(ECDH(sk, pk)))             (unhashed x)
(chacha_key, chacha_nonce, hmac_key) = HKDF-Expand(conversation_key, info=nonce, 76 bytes)
payload = base64(0x02 || nonce(32) || ChaCha20(pad(plaintext)) || HMAC-SHA256(hmac_key, nonce || ct))
pad(m) = u16be(len(m)) || m || zeros up to calc_padded_len(len(m)); 1 <= len(m) <= 65535.

Every rejected input is a :class:`Nip44Error`; payloads from a peer fail with
:class:`Nip44DecryptError` (unknown version, bad length, bad base64, bad MAC, bad padding).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from enum import IntEnum
from typing import NamedTuple

from coincurve import PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from infernet_ref.nostr.errors import KeyFormatError, Nip44DecryptError, Nip44Error
from infernet_ref.nostr.keys import as_key_bytes, check_secret_key


class Version(IntEnum):
    """Payload version byte (NIP-44 §Versions)."""

    V2 = 2


SALT = b"nip44-v2"
MIN_PLAINTEXT = 1
MAX_PLAINTEXT = 65535
#: Bounds on the base64 payload and its decoded form (NIP-44 §Decryption step 1-2).
MIN_PAYLOAD_B64, MAX_PAYLOAD_B64 = 132, 87472
MIN_PAYLOAD_RAW, MAX_PAYLOAD_RAW = 99, 65603


class MessageKeys(NamedTuple):
    """Per-message keys derived from the conversation key and nonce (NIP-44 §get_message_keys)."""

    chacha_key: bytes
    chacha_nonce: bytes
    hmac_key: bytes


def hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract with SHA-256 (RFC 5869 §2.2)."""
    return hmac.digest(salt, ikm, "sha256")


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand with SHA-256 (RFC 5869 §2.3)."""
    if not 0 < length <= 255 * 32:
        raise Nip44Error(f"HKDF-Expand cannot produce {length} bytes")
    out, block = b"", b""
    counter = 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes((counter,)), "sha256")
        out += block
        counter += 1
    return out[:length]


def nip44_conversation_key(sk: bytes | str, pk: bytes | str) -> bytes:
    """Return the 32-byte conversation key of ``sk`` and x-only ``pk`` (NIP-44 §get_conversation_key)."""
    try:
        secret = check_secret_key(sk)
        x_only = as_key_bytes(pk, "public key")
    except KeyFormatError as exc:
        raise Nip44Error(str(exc)) from exc
    try:
        point = PublicKey(b"\x02" + x_only)  # lift_x: the even-y point with this x
    except ValueError as exc:
        raise Nip44Error("public key is not the x coordinate of a secp256k1 point") from exc
    shared_x = point.multiply(secret).format(compressed=True)[1:]
    return hkdf_extract(SALT, shared_x)


def get_message_keys(conversation_key: bytes, nonce: bytes) -> MessageKeys:
    """Derive (chacha_key, chacha_nonce, hmac_key) (NIP-44 §get_message_keys)."""
    if len(conversation_key) != 32:
        raise Nip44Error("conversation key must be 32 bytes")
    if len(nonce) != 32:
        raise Nip44Error("nonce must be 32 bytes")
    keys = hkdf_expand(conversation_key, nonce, 76)
    return MessageKeys(keys[:32], keys[32:44], keys[44:76])


def calc_padded_len(unpadded_len: int) -> int:
    """Padded length of a plaintext of ``unpadded_len`` bytes (NIP-44 §calc_padded_len)."""
    if unpadded_len <= 32:
        return 32
    next_power = 1 << (unpadded_len - 1).bit_length()
    chunk = 32 if next_power <= 256 else next_power // 8
    return chunk * ((unpadded_len - 1) // chunk + 1)


def pad(plaintext: bytes) -> bytes:
    """``u16be(len) || plaintext || zeros`` (NIP-44 §pad)."""
    n = len(plaintext)
    if not MIN_PLAINTEXT <= n <= MAX_PLAINTEXT:
        raise Nip44Error(
            f"plaintext must be {MIN_PLAINTEXT}..{MAX_PLAINTEXT} bytes of UTF-8, got {n}"
        )
    return n.to_bytes(2, "big") + plaintext + bytes(calc_padded_len(n) - n)


def unpad(padded: bytes) -> bytes:
    """Inverse of :func:`pad`; :class:`Nip44DecryptError` if the length prefix or padding is wrong."""
    n = int.from_bytes(padded[:2], "big")
    if n == 0 or len(padded) != 2 + calc_padded_len(n):
        raise Nip44DecryptError("invalid padding")
    return padded[2 : 2 + n]


def chacha20(key: bytes, nonce12: bytes, data: bytes) -> bytes:
    """ChaCha20 (RFC 8439 §2.4) with a 32-bit block counter starting at 0."""
    cipher = Cipher(algorithms.ChaCha20(key, bytes(4) + nonce12), mode=None)
    enc = cipher.encryptor()
    return enc.update(data) + enc.finalize()


def encrypt_bytes(plaintext: bytes, conversation_key: bytes, nonce: bytes | None = None) -> bytes:
    """Return the raw (not base64) v2 payload for ``plaintext`` bytes (NIP-44 §Encryption)."""
    nonce = os.urandom(32) if nonce is None else nonce
    keys = get_message_keys(conversation_key, nonce)
    ciphertext = chacha20(keys.chacha_key, keys.chacha_nonce, pad(plaintext))
    mac = hmac.digest(keys.hmac_key, nonce + ciphertext, "sha256")
    return bytes((Version.V2,)) + nonce + ciphertext + mac


def decrypt_bytes(data: bytes, conversation_key: bytes) -> bytes:
    """Decrypt a raw v2 payload to plaintext bytes (NIP-44 §Decryption, steps 2-6)."""
    if not MIN_PAYLOAD_RAW <= len(data) <= MAX_PAYLOAD_RAW:
        raise Nip44DecryptError(f"invalid data length: {len(data)}")
    if data[0] != Version.V2:
        raise Nip44DecryptError(f"unknown encryption version {data[0]}")
    nonce, ciphertext, mac = data[1:33], data[33:-32], data[-32:]
    keys = get_message_keys(conversation_key, nonce)
    expected = hmac.digest(keys.hmac_key, nonce + ciphertext, "sha256")
    if not hmac.compare_digest(expected, mac):
        raise Nip44DecryptError("invalid MAC")
    return unpad(chacha20(keys.chacha_key, keys.chacha_nonce, ciphertext))


def nip44_encrypt(plaintext: str, conversation_key: bytes, nonce: bytes | None = None) -> str:
    """Encrypt ``plaintext`` to a base64 v2 payload (NIP-44 §Encryption); ``nonce`` is for tests only."""
    if not isinstance(plaintext, str):
        raise Nip44Error("plaintext must be a str")
    try:
        raw = plaintext.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise Nip44Error("plaintext holds a lone surrogate; it has no UTF-8 form") from exc
    return base64.b64encode(encrypt_bytes(raw, conversation_key, nonce)).decode("ascii")


def decode_payload(payload: str) -> bytes:
    """Check a base64 payload's length and alphabet and decode it (NIP-44 §Decryption, step 1)."""
    if not isinstance(payload, str):
        raise Nip44DecryptError("payload must be a string")
    if not payload or payload[0] == "#":
        raise Nip44DecryptError("unknown version (payload is empty or starts with '#')")
    if not MIN_PAYLOAD_B64 <= len(payload) <= MAX_PAYLOAD_B64:
        raise Nip44DecryptError(f"invalid payload length: {len(payload)}")
    try:
        return base64.b64decode(payload.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise Nip44DecryptError(f"invalid base64: {exc}") from exc


def nip44_decrypt(payload: str, conversation_key: bytes) -> str:
    """Decrypt a base64 v2 payload (NIP-44 §Decryption); raise :class:`Nip44DecryptError` if invalid."""
    plain = decrypt_bytes(decode_payload(payload), conversation_key)
    try:
        return plain.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Nip44DecryptError("plaintext is not valid UTF-8") from exc
