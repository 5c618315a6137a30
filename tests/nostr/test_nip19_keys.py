"""NIP-19 bech32 entities and key files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infernet_ref.nostr import (
    AddressPointer,
    Bech32Error,
    EventPointer,
    KeyFileError,
    KeyFormatError,
    ProfilePointer,
    generate_secret_key,
    load_key_file,
    naddr_encode,
    nevent_encode,
    nip19_decode,
    note_encode,
    nprofile_encode,
    npub_encode,
    nsec_encode,
    public_key,
    save_key_file,
)
from infernet_ref.nostr.bech32 import CHARSET, bech32_decode, bech32_encode

from .conftest import emit_vectors

# Known values from NIP-19 (also in ../shared/vectors/README.md).
NPUB = "npub180cvv07tjdrrgpa0j7j7tmnyl2yr6yr7l8j4s3evf6u64th6gkwsyjh6w6"
NPUB_HEX = "3bf0c63fcb93463407af97a5e5ee64fa883d107ef9e558472c4eb9aaaefa459d"
NSEC = "nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5"
NSEC_HEX = "67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa"
# NIP-19's nprofile example.
NPROFILE = "nprofile1qqsrhuxx8l9ex335q7he0f09aej04zpazpl0ne2cgukyawd24mayt8gpp4mhxue69uhhytnc9e3k7mgpz4mhxue69uhkg6nzv9ejuumpv34kytnrdaksjlyr9p"


def test_known_values() -> None:
    assert npub_encode(NPUB_HEX) == NPUB
    assert npub_encode(bytes.fromhex(NPUB_HEX)) == NPUB
    assert nip19_decode(NPUB) == ("npub", bytes.fromhex(NPUB_HEX))
    assert nsec_encode(bytes.fromhex(NSEC_HEX)) == NSEC
    assert nip19_decode(NSEC) == ("nsec", bytes.fromhex(NSEC_HEX))
    assert nip19_decode(NSEC.upper()) == ("nsec", bytes.fromhex(NSEC_HEX))


def test_nip19_nprofile_example() -> None:
    kind, data = nip19_decode(NPROFILE)
    assert kind == "nprofile"
    assert data == ProfilePointer(
        bytes.fromhex(NPUB_HEX), ("wss://r.x.com", "wss://djbas.sadkb.com")
    )
    assert nprofile_encode(NPUB_HEX, ["wss://r.x.com", "wss://djbas.sadkb.com"]) == NPROFILE


def test_tlv_round_trips_and_unknown_types_ignored() -> None:
    eid = bytes(range(32))
    s = nevent_encode(eid, ["wss://a"], author=NPUB_HEX, kind=38201)
    assert nip19_decode(s).data == EventPointer(eid, ("wss://a",), bytes.fromhex(NPUB_HEX), 38201)
    a = naddr_encode("node", NPUB_HEX, 38202, ["wss://b"])
    assert nip19_decode(a).data == AddressPointer(
        "node", bytes.fromhex(NPUB_HEX), 38202, ("wss://b",)
    )
    assert nip19_decode(note_encode(eid)) == ("note", eid)
    body = bytes((0, 32)) + bytes.fromhex(NPUB_HEX) + bytes((9, 3)) + b"xyz"  # type 9 is unknown
    assert nip19_decode(bech32_encode("nprofile", body)).data == ProfilePointer(
        bytes.fromhex(NPUB_HEX)
    )


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (NPUB[:-1] + ("q" if NPUB[-1] != "q" else "p"), "checksum"),
        (NPUB[:10] + NPUB[10:].upper(), "mixes"),
        ("npub1" + "b" * 60, "alphabet|checksum"),
        (bech32_encode("npub", bytes(31)), "32 bytes"),
        (bech32_encode("nsec", bytes(32)), "nsec"),
        (bech32_encode("nfoo", bytes(32)), "unknown"),
        (bech32_encode("nprofile", bytes((0, 31)) + bytes(31)), "32 bytes"),
        (bech32_encode("nprofile", bytes((0, 40)) + bytes(3)), "truncated"),
        (bech32_encode("nprofile", bytes((1, 3)) + b"abc"), "type-0"),
        (
            bech32_encode("nprofile", bytes((0, 32)) + bytes(32) + bytes((1, 2)) + b"\xff\xfe"),
            "UTF-8",
        ),
        ("npub1" + "q" * 5000, "cap"),
        ("", "separator"),
        ("npub1\x00", "US-ASCII"),
    ],
)
def test_malformed(text: str, match: str) -> None:
    with pytest.raises(Bech32Error, match=match):
        nip19_decode(text)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=120),
        st.text(alphabet=CHARSET + "1", max_size=120).map(lambda s: "nprofile1" + s),
    )
)
def test_decode_fuzz_only_typed_errors(text: str) -> None:
    try:
        result = nip19_decode(text)
    except Bech32Error:
        return
    assert result.type in ("npub", "nsec", "note", "nprofile", "nevent", "naddr")


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200), st.sampled_from(["npub", "nprofile", "x", "abc"]))
def test_bech32_round_trip(data: bytes, hrp: str) -> None:
    assert bech32_decode(bech32_encode(hrp, data)) == (hrp, data)


@settings(max_examples=100, deadline=None)
@given(
    st.binary(min_size=1, max_size=255).filter(lambda b: b[:1] != b"\x00"),
    st.integers(0, 2**32 - 1),
)
def test_nevent_fuzzed_tlv_body(body: bytes, kind: int) -> None:
    try:
        result = nip19_decode(bech32_encode("nevent", body))
    except Bech32Error:
        return
    assert isinstance(result.data, EventPointer)
    assert len(result.data.id) == 32


def test_bad_key_inputs() -> None:
    for bad in ["AB" * 32, "ab" * 31, "zz" * 32, b"\x01" * 31]:
        with pytest.raises(KeyFormatError):
            npub_encode(bad)
    with pytest.raises(KeyFormatError):
        public_key(bytes(32))


def test_key_file_round_trip(tmp_path: Path) -> None:
    sk = generate_secret_key()
    path = tmp_path / "node.key"
    save_key_file(path, sk)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("nsec1")
    assert load_key_file(path) == sk
    with pytest.raises(KeyFileError, match="exists"):
        save_key_file(path, sk)


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o640, 0o666])
def test_key_file_readable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "k"
    save_key_file(path, generate_secret_key())
    os.chmod(path, mode)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key_file(path)


@pytest.mark.parametrize("content", ["", "nsec1xyz", "hello", "00" * 32, "ff" * 32, "x" * 5000])
def test_key_file_garbage(tmp_path: Path, content: str) -> None:
    path = tmp_path / "k"
    path.write_text(content)
    os.chmod(path, 0o600)
    with pytest.raises(KeyFileError):
        load_key_file(path)


def test_hex_key_file_accepted(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_text(NSEC_HEX + "\n")
    os.chmod(path, 0o600)
    assert load_key_file(path) == bytes.fromhex(NSEC_HEX)


def test_vectors() -> None:
    cases = [
        {"type": "npub", "hex": NPUB_HEX, "bech32": NPUB},
        {"type": "nsec", "hex": NSEC_HEX, "bech32": NSEC},
        {"type": "note", "hex": "ab" * 32, "bech32": note_encode("ab" * 32)},
        {
            "type": "nprofile",
            "pubkey": NPUB_HEX,
            "relays": ["wss://r.x.com", "wss://djbas.sadkb.com"],
            "bech32": NPROFILE,
        },
    ]
    invalid = [
        {"name": "invalid_checksum", "bech32": NPUB[:-1] + ("q" if NPUB[-1] != "q" else "p")},
        {"name": "invalid_mixed_case", "bech32": NPUB[:10] + NPUB[10:].upper()},
        {"name": "invalid_short_npub", "bech32": bech32_encode("npub", bytes(31))},
        {"name": "invalid_zero_nsec", "bech32": bech32_encode("nsec", bytes(32))},
        {
            "name": "invalid_truncated_tlv",
            "bech32": bech32_encode("nprofile", bytes((0, 40)) + bytes(3)),
        },
        {
            "name": "invalid_nprofile_without_pubkey",
            "bech32": bech32_encode("nprofile", bytes((1, 3)) + b"abc"),
        },
    ]
    for case in invalid:
        with pytest.raises(Bech32Error):
            nip19_decode(case["bech32"])
    emit_vectors("nip19.json", {"valid": cases, "invalid": invalid})


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(
        st.text(max_size=120), st.text(alphabet=CHARSET, max_size=70).map(lambda s: "nsec1" + s)
    )
)
def test_key_file_fuzz(tmp_path_factory: pytest.TempPathFactory, content: str) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "k"
    path.write_text(content, encoding="utf-8", errors="surrogatepass")
    os.chmod(path, 0o600)
    try:
        sk = load_key_file(path)
    except KeyFileError:
        return
    assert len(sk) == 32
