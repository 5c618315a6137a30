"""NIP-44 v2 against every valid and invalid case of the official vector file."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infernet_ref.nostr import public_key
from infernet_ref.nostr.nip44 import (
    Nip44DecryptError,
    Nip44Error,
    calc_padded_len,
    get_message_keys,
    nip44_conversation_key,
    nip44_decrypt,
    nip44_encrypt,
)

from .conftest import SHARED, VECTORS

PATH = VECTORS / "nip44" / "nip44.vectors.json"
V2 = json.loads(PATH.read_text())["v2"]
VALID, INVALID = V2["valid"], V2["invalid"]


def test_file_is_the_published_one() -> None:
    assert (
        hashlib.sha256(PATH.read_bytes()).hexdigest()
        == "269ed0f69e4c192512cc779e78c555090cebc7c785b609e338a62afc3ce25040"
    )
    original = SHARED / "nip44" / "nip44.vectors.json"
    if original.exists():
        assert original.read_bytes() == PATH.read_bytes()


def test_case_counts() -> None:
    counts = {k: len(v["keys"]) if isinstance(v, dict) else len(v) for k, v in VALID.items()}
    assert counts == {
        "get_conversation_key": 35,
        "get_message_keys": 32,
        "calc_padded_len": 24,
        "encrypt_decrypt": 10,
        "encrypt_decrypt_long_msg": 3,
    }
    assert {k: len(v) for k, v in INVALID.items()} == {
        "encrypt_msg_lengths": 4,
        "get_conversation_key": 8,
        "decrypt": 12,
    }


@pytest.mark.parametrize("v", VALID["get_conversation_key"])
def test_conversation_key(v: dict[str, str]) -> None:
    assert (
        nip44_conversation_key(bytes.fromhex(v["sec1"]), v["pub2"]).hex() == v["conversation_key"]
    )


@pytest.mark.parametrize("v", VALID["get_message_keys"]["keys"])
def test_message_keys(v: dict[str, str]) -> None:
    keys = get_message_keys(
        bytes.fromhex(VALID["get_message_keys"]["conversation_key"]), bytes.fromhex(v["nonce"])
    )
    assert (keys.chacha_key.hex(), keys.chacha_nonce.hex(), keys.hmac_key.hex()) == (
        v["chacha_key"],
        v["chacha_nonce"],
        v["hmac_key"],
    )


@pytest.mark.parametrize(("n", "padded"), VALID["calc_padded_len"])
def test_padded_len(n: int, padded: int) -> None:
    assert calc_padded_len(n) == padded


@pytest.mark.parametrize("v", VALID["encrypt_decrypt"])
def test_encrypt_decrypt(v: dict[str, str]) -> None:
    sec1, sec2 = bytes.fromhex(v["sec1"]), bytes.fromhex(v["sec2"])
    ck = nip44_conversation_key(sec1, public_key(sec2))
    assert ck.hex() == v["conversation_key"]
    assert nip44_conversation_key(sec2, public_key(sec1)) == ck  # symmetric
    assert nip44_encrypt(v["plaintext"], ck, bytes.fromhex(v["nonce"])) == v["payload"]
    assert nip44_decrypt(v["payload"], ck) == v["plaintext"]


@pytest.mark.parametrize("v", VALID["encrypt_decrypt_long_msg"])
def test_long_messages(v: dict[str, Any]) -> None:
    plaintext = v["pattern"] * v["repeat"]
    assert hashlib.sha256(plaintext.encode()).hexdigest() == v["plaintext_sha256"]
    ck = bytes.fromhex(v["conversation_key"])
    payload = nip44_encrypt(plaintext, ck, bytes.fromhex(v["nonce"]))
    assert hashlib.sha256(payload.encode()).hexdigest() == v["payload_sha256"]
    assert nip44_decrypt(payload, ck) == plaintext


@pytest.mark.parametrize("length", INVALID["encrypt_msg_lengths"])
def test_invalid_lengths(length: int) -> None:
    with pytest.raises(Nip44Error, match="plaintext must be"):
        nip44_encrypt("a" * length, bytes(32))


@pytest.mark.parametrize("v", INVALID["get_conversation_key"], ids=lambda v: v["note"])
def test_invalid_conversation_key(v: dict[str, str]) -> None:
    with pytest.raises(Nip44Error):
        nip44_conversation_key(bytes.fromhex(v["sec1"]), v["pub2"])


# NIP-44's note for each invalid payload, and the reason our error gives.
REASONS = {
    "unknown encryption version": "unknown",
    "unknown encryption version 0": "unknown encryption version 0",
    "invalid base64": "invalid base64",
    "invalid MAC": "invalid MAC",
    "invalid padding": "invalid padding",
    "invalid payload length: 0": "unknown version",
}


@pytest.mark.parametrize("v", INVALID["decrypt"], ids=lambda v: v["note"])
def test_invalid_decrypt(v: dict[str, str]) -> None:
    reason = REASONS.get(v["note"], v["note"])
    with pytest.raises(Nip44DecryptError, match=reason):
        nip44_decrypt(v["payload"], bytes.fromhex(v["conversation_key"]))


CK = bytes(range(32))


@settings(max_examples=100, deadline=None)
@given(
    st.text(min_size=1, max_size=300).filter(
        lambda s: all(not 0xD800 <= ord(c) <= 0xDFFF for c in s)
    )
)
def test_round_trip(text: str) -> None:
    payload = nip44_encrypt(text, CK)
    assert nip44_decrypt(payload, CK) == text
    raw = base64.b64decode(payload)
    assert len(raw) == 1 + 32 + 2 + calc_padded_len(len(text.encode())) + 32


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.text(max_size=200), st.binary(max_size=200).map(lambda b: base64.b64encode(b).decode())
    )
)
def test_decrypt_hostile_payloads_fail_typed(payload: str) -> None:
    with pytest.raises(Nip44DecryptError):
        nip44_decrypt(payload, CK)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 200), st.integers(0, 7))
def test_any_bit_flip_is_detected(pos: int, bit: int) -> None:
    raw = bytearray(base64.b64decode(nip44_encrypt("attack at dawn", CK, bytes(32))))
    raw[pos % len(raw)] ^= 1 << bit
    with pytest.raises(Nip44DecryptError):
        nip44_decrypt(base64.b64encode(bytes(raw)).decode(), CK)


def test_lone_surrogate_plaintext_refused() -> None:
    with pytest.raises(Nip44Error, match="surrogate"):
        nip44_encrypt("\ud800", CK)


def test_invalid_utf8_plaintext_is_typed_error() -> None:
    """A payload that authenticates but carries bytes that are not UTF-8 is refused (NIP-44 plaintexts are text)."""
    from infernet_ref.nostr.nip44 import decrypt_bytes, encrypt_bytes

    raw = encrypt_bytes(b"ok \xff\xfe", CK, bytes(32))
    assert decrypt_bytes(raw, CK) == b"ok \xff\xfe"
    with pytest.raises(Nip44DecryptError, match="UTF-8"):
        nip44_decrypt(base64.b64encode(raw).decode(), CK)


@pytest.mark.parametrize("bad", [bytes(31), bytes(33), "00" * 32])
def test_bad_conversation_key_type(bad: Any) -> None:
    with pytest.raises(Nip44Error, match="conversation key"):
        nip44_encrypt("x", bad)
