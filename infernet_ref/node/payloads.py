"""End-to-end encrypted job payloads and the result hash (spec/job.md §Encryption, §Result hash).

An ``EncryptedPayload`` carries JSON encrypted from ``from`` to ``to`` with the NIP-44 v2
conversation key of the two: one NIP-44 payload for plaintexts up to 65535 bytes, else the
identity layer's chunked construction in its sealed byte form, base64. :func:`open_json`
checks the addressing before decrypting, and every failure is a :class:`JobProtocolError`.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from infernet_ref.encoding import canonical_json, json_decode
from infernet_ref.errors import InfernetError
from infernet_ref.node.errors import ErrorCode, JobProtocolError

NIP44_MAX = 65535
MAX_PLAINTEXT = 12 << 20


def output_sha256(ids: Sequence[int], *, salt: bytes = b"") -> str:
    """SHA-256 of the client's salt and the token ids as 4-byte big-endian unsigned integers
    (spec/job.md §Result hash)."""
    h = hashlib.sha256(salt)
    for i in ids:
        h.update(int(i).to_bytes(4, "big"))
    return h.hexdigest()


@functools.lru_cache(maxsize=64)
def _public_hex(secret_key: bytes) -> str:
    """Our x-only public key, hex (cached: the node seals one payload per streamed token)."""
    from infernet_ref.nostr import public_key  # noqa: PLC0415

    return public_key(secret_key).hex()


@functools.lru_cache(maxsize=1024)
def _conversation_key(secret_key: bytes, peer_hex: str) -> bytes:
    """The NIP-44 v2 conversation key with ``peer_hex`` (cached; failures are not cached)."""
    from infernet_ref.nostr.nip44 import nip44_conversation_key  # noqa: PLC0415

    key: bytes = nip44_conversation_key(secret_key, bytes.fromhex(peer_hex))
    return key


def seal_json(obj: Any, secret_key: bytes, to_pubkey: str) -> dict[str, Any]:
    """Encrypt ``obj`` (canonical JSON) for ``to_pubkey``; returns an EncryptedPayload object."""
    from infernet_ref.nostr.chunked import chunked_seal  # noqa: PLC0415
    from infernet_ref.nostr.nip44 import nip44_encrypt  # noqa: PLC0415

    plain = canonical_json(obj)
    key = _conversation_key(bytes(secret_key), to_pubkey)
    me = _public_hex(bytes(secret_key))
    if len(plain) <= NIP44_MAX:
        return {
            "scheme": "nip44",
            "from": me,
            "to": to_pubkey,
            "data": nip44_encrypt(plain.decode(), key),
        }
    blob = chunked_seal(plain, key)
    return {
        "scheme": "nip44-chunked",
        "from": me,
        "to": to_pubkey,
        "data": base64.b64encode(blob).decode(),
    }


def open_json(payload: dict[str, Any], secret_key: bytes, *, sender: str | None) -> Any:
    """Decrypt an EncryptedPayload addressed to us from ``sender`` (None: any sender)."""
    from infernet_ref.nostr.chunked import chunked_open  # noqa: PLC0415
    from infernet_ref.nostr.nip44 import nip44_conversation_key, nip44_decrypt  # noqa: PLC0415

    if payload.get("to") != _public_hex(bytes(secret_key)):
        raise JobProtocolError("encrypted payload is addressed to another key", ErrorCode.FORBIDDEN)
    if sender is not None and payload.get("from") != sender:
        raise JobProtocolError(
            "encrypted payload was not made by the authenticated peer", ErrorCode.FORBIDDEN
        )
    try:
        sender_hex = payload["from"]
        key = (
            _conversation_key(bytes(secret_key), sender_hex)
            if isinstance(sender_hex, str)
            else nip44_conversation_key(secret_key, bytes.fromhex(sender_hex))
        )
        if payload["scheme"] == "nip44":
            plain = nip44_decrypt(payload["data"], key).encode()
        else:
            plain = chunked_open(
                base64.b64decode(payload["data"], validate=True), key, max_size=MAX_PLAINTEXT * 2
            )
        return json_decode(plain, max_size=MAX_PLAINTEXT)
    except (InfernetError, binascii.Error, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise JobProtocolError(f"encrypted payload does not decrypt: {exc}") from exc


def open_plaintext(
    payload: dict[str, Any], secret_key: bytes, *, sender: str | None, def_name: str
) -> dict[str, Any]:
    """:func:`open_json`, then the plaintext checked against job-messages ``$defs/<def_name>``
    (InputsPlaintext, TokensPlaintext; a mismatch is 4000)."""
    from infernet_ref.specs import validate_data  # noqa: PLC0415

    plain = open_json(payload, secret_key, sender=sender)
    try:
        validate_data(plain, "job-messages", pointer=f"/$defs/{def_name}")
    except InfernetError as exc:
        raise JobProtocolError(f"{def_name}: {exc}") from exc
    result: dict[str, Any] = plain
    return result


def check_ids(value: Any, name: str, *, max_len: int = 1 << 20) -> list[int]:
    """A list of token ids (0..2^32-1), else JobProtocolError 4000."""
    if (
        not isinstance(value, list)
        or not 0 < len(value) <= max_len
        or not all(
            isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 1 << 32 for t in value
        )
    ):
        raise JobProtocolError(f"{name} must be a non-empty list of token ids")
    return value
