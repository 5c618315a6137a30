"""Chunked NIP-44-keyed payloads: round trips, and tamper / truncate / reorder / replay all fail.

Also writes (INFERNET_WRITE_VECTORS=1) or checks ``spec/vectors/nostr/nip44-chunked.json``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infernet_ref.errors import LocalProtocolError
from infernet_ref.nostr import ChunkedError, nip44_conversation_key, public_key
from infernet_ref.nostr.chunked import (
    ChunkedDecryptor,
    ChunkedEncryptor,
    chunked_decrypt,
    chunked_encrypt,
)

from .conftest import emit_vectors

SK_A = bytes.fromhex("0000000000000000000000000000000000000000000000000000000000000001")
SK_B = bytes.fromhex("0000000000000000000000000000000000000000000000000000000000000002")
CK = nip44_conversation_key(SK_A, public_key(SK_B))
DATA = bytes(i * 7 % 251 for i in range(1000))


def stream(
    data: bytes = DATA, size: int = 256, nonce: bytes | None = bytes(32)
) -> tuple[dict[str, Any], list[bytes]]:
    return chunked_encrypt(data, CK, chunk_size=size, nonce=nonce)


def test_conversation_key_is_shared() -> None:
    assert nip44_conversation_key(SK_B, public_key(SK_A)) == CK


@pytest.mark.parametrize("n", [0, 1, 255, 256, 257, 1000, 1024])
def test_round_trip_sizes(n: int) -> None:
    header, frames = stream(DATA[:n] if n <= len(DATA) else bytes(n))
    assert chunked_decrypt(header, frames, CK) == (DATA[:n] if n <= len(DATA) else bytes(n))
    assert len(frames) == max(1, -(-n // 256))


def test_large_payload_over_nip44_limit() -> None:
    big = hashlib.shake_256(b"x").digest(300_000)
    header, frames = chunked_encrypt(big, CK)
    assert len(frames) == 5
    assert chunked_decrypt(header, frames, CK) == big


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=3000), st.integers(1, 700))
def test_round_trip_property(data: bytes, size: int) -> None:
    header, frames = chunked_encrypt(data, CK, chunk_size=size)
    assert chunked_decrypt(header, frames, CK) == data


def test_fresh_nonce_per_stream() -> None:
    (h1, f1), (h2, f2) = chunked_encrypt(DATA, CK), chunked_encrypt(DATA, CK)
    assert h1["nonce"] != h2["nonce"]
    assert f1[0] != f2[0]


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 3), st.integers(0, 10_000), st.integers(0, 7))
def test_any_bit_flip_fails(which: int, pos: int, bit: int) -> None:
    header, frames = stream()
    frame = bytearray(frames[which])
    frame[pos % len(frame)] ^= 1 << bit
    frames[which] = bytes(frame)
    with pytest.raises(ChunkedError):
        chunked_decrypt(header, frames, CK)


def test_truncation_fails() -> None:
    header, frames = stream()
    for keep in range(len(frames)):
        with pytest.raises(ChunkedError, match=r"truncated|length"):
            chunked_decrypt(header, frames[:keep], CK)


def test_truncation_fails_without_announced_length() -> None:
    enc = ChunkedEncryptor(CK, chunk_size=4, nonce=bytes(32))
    frames = [
        enc.encrypt_chunk(b"abcd"),
        enc.encrypt_chunk(b"efgh"),
        enc.encrypt_chunk(b"ij", final=True),
    ]
    dec = ChunkedDecryptor(CK, enc.header)
    assert dec.decrypt_chunk(frames[0]) + dec.decrypt_chunk(frames[1]) == b"abcdefgh"
    with pytest.raises(ChunkedError, match="truncated"):
        dec.finish()


def test_reorder_fails() -> None:
    header, frames = stream()
    frames[1], frames[2] = frames[2], frames[1]
    with pytest.raises(ChunkedError, match="reordered"):
        chunked_decrypt(header, frames, CK)


def test_relabelled_index_fails_authentication() -> None:
    """Rewriting a chunk's clear index to the expected one does not help: keys depend on the index."""
    header, frames = stream()
    moved = frames[2][:2] + (1).to_bytes(8, "big") + frames[2][10:]
    with pytest.raises(ChunkedError, match="authentication"):
        chunked_decrypt(header, [frames[0], moved, *frames[2:]], CK)


def test_replayed_chunk_fails() -> None:
    header, frames = stream()
    with pytest.raises(ChunkedError, match="replayed"):
        chunked_decrypt(header, [frames[0], frames[0], *frames[1:]], CK)
    with pytest.raises(ChunkedError, match="after the final"):
        chunked_decrypt(header, [*frames, frames[-1]], CK)


def test_chunk_from_another_stream_fails() -> None:
    header, frames = stream(nonce=bytes(32))
    _other_header, other = stream(nonce=b"\x01" * 32)
    with pytest.raises(ChunkedError, match="authentication"):
        chunked_decrypt(header, [frames[0], other[1], *frames[2:]], CK)


def test_other_conversation_key_fails() -> None:
    header, frames = stream()
    with pytest.raises(ChunkedError, match="authentication"):
        chunked_decrypt(header, frames, bytes(32))


@pytest.mark.parametrize("change", [{"chunk_size": 128}, {"length": 999}, {"nonce": "11" * 32}])
def test_header_tamper_fails(change: dict[str, Any]) -> None:
    header, frames = stream()
    with pytest.raises(ChunkedError):
        chunked_decrypt({**header, **change}, frames, CK)


def test_final_flag_cannot_be_forged() -> None:
    enc = ChunkedEncryptor(CK, chunk_size=4, nonce=bytes(32))
    first = enc.encrypt_chunk(b"abcd")
    forged = first[:1] + b"\x01" + first[2:]
    with pytest.raises(ChunkedError, match="authentication"):
        chunked_decrypt(enc.header, [forged], CK)


@pytest.mark.parametrize(
    "header",
    [
        None,
        [],
        {},
        {"v": 1, "alg": "nip44-chunked-v1", "nonce": "00" * 32},
        {"v": 2, "alg": "nip44-chunked-v1", "nonce": "00" * 32, "chunk_size": 8},
        {"v": 1, "alg": "nip44-chunked-v1", "nonce": "0G" * 32, "chunk_size": 8},
        {"v": 1, "alg": "nip44-chunked-v1", "nonce": "00" * 32, "chunk_size": 0},
        {"v": 1, "alg": "nip44-chunked-v1", "nonce": "00" * 32, "chunk_size": True},
        {"v": True, "alg": "nip44-chunked-v1", "nonce": "00" * 32, "chunk_size": 8},
        {"v": 1, "alg": "nip44-chunked-v1", "nonce": "00" * 32, "chunk_size": 8, "length": -1},
        {"v": 1, "alg": "nip44-chunked-v1", "nonce": "00" * 32, "chunk_size": 8, "x": 1},
    ],
)
def test_bad_headers_fail_typed(header: Any) -> None:
    with pytest.raises(ChunkedError):
        ChunkedDecryptor(CK, header)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=400), max_size=5))
def test_hostile_frames_fail_typed(frames: list[bytes]) -> None:
    header, _ = stream()
    with pytest.raises(ChunkedError):
        chunked_decrypt(header, frames, CK)


def test_encryptor_misuse_is_local_error() -> None:
    enc = ChunkedEncryptor(CK, chunk_size=4, length=6)
    with pytest.raises(LocalProtocolError):
        enc.encrypt_chunk(b"abc")  # a non-final chunk must be full
    enc.encrypt_chunk(b"abcd")
    with pytest.raises(LocalProtocolError):
        enc.encrypt_chunk(b"e", final=True)  # 5 != announced 6
    with pytest.raises(LocalProtocolError):
        ChunkedEncryptor(CK, chunk_size=0)


def test_vectors() -> None:
    valid = []
    for n, size, nonce in [
        (0, 64, bytes(32)),
        (100, 64, bytes(32)),
        (128, 64, b"\x07" * 32),
        (1000, 256, bytes(range(32))),
    ]:
        data = DATA[:n]
        header, frames = chunked_encrypt(data, CK, chunk_size=size, nonce=nonce)
        valid.append(
            {
                "conversation_key": CK.hex(),
                "plaintext": data.hex(),
                "header": header,
                "frames": [f.hex() for f in frames],
            }
        )
    header, frames = chunked_encrypt(DATA[:300], CK, chunk_size=100, nonce=bytes(32))
    _h2, other = chunked_encrypt(DATA[:300], CK, chunk_size=100, nonce=b"\x01" * 32)
    bad = {
        "invalid_truncated": frames[:2],
        "invalid_reordered": [frames[0], frames[2], frames[1]],
        "invalid_replayed": [frames[0], frames[0], frames[1], frames[2]],
        "invalid_tampered": [
            frames[0],
            frames[1][:20] + bytes([frames[1][20] ^ 1]) + frames[1][21:],
            frames[2],
        ],
        "invalid_foreign_chunk": [frames[0], other[1], frames[2]],
        "invalid_after_final": [*frames, frames[2]],
    }
    invalid = []
    for name, fs in bad.items():
        with pytest.raises(ChunkedError):
            chunked_decrypt(header, fs, CK)
        invalid.append(
            {
                "name": name,
                "conversation_key": CK.hex(),
                "header": header,
                "frames": [f.hex() for f in fs],
            }
        )
    for case in valid:
        frames_in = [bytes.fromhex(f) for f in case["frames"]]
        assert chunked_decrypt(case["header"], frames_in, CK).hex() == case["plaintext"]
    emit_vectors("nip44-chunked.json", {"valid": valid, "invalid": invalid})


def test_byte_form_round_trip() -> None:
    from infernet_ref.nostr.chunked import chunked_open, chunked_seal

    big = hashlib.shake_256(b"y").digest(200_000)
    blob = chunked_seal(big, CK, chunk_size=65536)
    assert blob[:3] == b"NC\x01"
    assert chunked_open(blob, CK) == big
    assert chunked_open(chunked_seal(b"", CK), CK) == b""


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b[:-1],  # truncated frame
        lambda b: b[: len(b) // 2],
        lambda b: b + b"\x00",  # trailing garbage
        lambda b: b"XX" + b[2:],  # bad magic
        lambda b: b[:3] + b"\xff\xff" + b[5:],  # header length out of range
        lambda b: b[:5] + b"[" + b[6:],  # header not JSON
        lambda b: b[:3],
    ],
)
def test_byte_form_malformed(mangle: Any) -> None:
    from infernet_ref.nostr.chunked import chunked_open, chunked_seal

    blob = chunked_seal(DATA, CK, chunk_size=300)
    with pytest.raises(ChunkedError):
        chunked_open(mangle(blob), CK)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_byte_form_fuzz(blob: bytes) -> None:
    from infernet_ref.nostr.chunked import chunked_open

    with pytest.raises(ChunkedError):
        chunked_open(b"NC\x01" + blob, CK)


def test_byte_form_size_cap() -> None:
    from infernet_ref.nostr.chunked import chunked_open

    with pytest.raises(ChunkedError, match="limit"):
        chunked_open(b"NC\x01" + bytes(100), CK, max_size=50)
