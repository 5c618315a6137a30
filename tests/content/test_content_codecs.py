"""varint, multibase, CID, dag-pb and UnixFS codecs: vectors, strictness, hypothesis round trips."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infernet_ref.content.cid import CID, Codec, cid_from_bytes, parse_cid
from infernet_ref.content.dagpb import PBLink, PBNode, decode_node, encode_node
from infernet_ref.content.errors import (
    CidError,
    ContentError,
    DagPbError,
    HashMismatch,
    UnixFsError,
    VarintError,
)
from infernet_ref.content.multibase import (
    b32decode,
    b32encode,
    b58decode,
    b58encode,
    multibase_decode,
)
from infernet_ref.content.unixfs import DataType, UnixFSData, decode_unixfs, encode_unixfs
from infernet_ref.content.varint import MAX_PROTOBUF_VARINT_BYTES, decode_uvarint, encode_uvarint

HELLO = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
EMPTY_DIR_V0 = "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
EMPTY_DIR_V1 = "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (1, b"\x01"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (255, b"\xff\x01"),
        (300, b"\xac\x02"),
        (16384, b"\x80\x80\x01"),
        (2**63 - 1, b"\xff" * 8 + b"\x7f"),
    ],
)
def test_varint_vectors(value: int, encoded: bytes) -> None:
    """Vectors from the multiformats unsigned-varint README."""
    assert encode_uvarint(value) == encoded
    assert decode_uvarint(encoded) == (value, len(encoded))


@pytest.mark.parametrize(
    "bad", [b"", b"\x80", b"\xff\xff", b"\x80\x00", b"\x81\x80\x00", b"\xff" * 9 + b"\x01"]
)
def test_varint_rejects(bad: bytes) -> None:
    with pytest.raises(VarintError):
        decode_uvarint(bad)


@given(st.integers(0, 2**64 - 1))
@settings(max_examples=200, deadline=None)
def test_varint_roundtrip(v: int) -> None:
    enc = encode_uvarint(v)
    assert decode_uvarint(enc, max_bytes=MAX_PROTOBUF_VARINT_BYTES) == (v, len(enc))


@given(st.binary(max_size=16))
@settings(max_examples=300, deadline=None)
def test_varint_fuzz(data: bytes) -> None:
    try:
        v, end = decode_uvarint(data)
    except VarintError:
        return
    assert encode_uvarint(v) == data[:end]


@given(st.binary(max_size=64))
@settings(max_examples=200, deadline=None)
def test_base32_base58_roundtrip(data: bytes) -> None:
    assert b32decode(b32encode(data)) == data
    assert b58decode(b58encode(data)) == data


def test_multibase_rejects() -> None:
    for bad in ["", "x123", "bAFK", "b1", "b0", "z0OIl"]:
        with pytest.raises(ContentError):
            multibase_decode(bad)
    with pytest.raises(ContentError):
        b32decode("ab")  # trailing bits set (canonical form is "ae")


def test_cid_known_values() -> None:
    c = parse_cid(HELLO)
    assert c.version == 1
    assert c.codec == Codec.RAW
    assert c.digest == hashlib.sha256(b"hello world").digest()
    assert str(c) == HELLO
    c.verify(b"hello world")
    with pytest.raises(HashMismatch):
        c.verify(b"hello worle")
    v0 = parse_cid(EMPTY_DIR_V0)
    assert v0.version == 0
    assert str(v0) == EMPTY_DIR_V0
    assert str(v0.to_v1()) == EMPTY_DIR_V1
    assert parse_cid(EMPTY_DIR_V1).verify(b"\x0a\x02\x08\x01") is None
    # base32upper and base58btc forms of the same CIDv1
    assert parse_cid("B" + HELLO[1:].upper()) == c
    assert parse_cid("z" + b58encode(c.to_bytes())) == c


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "bafy",
        "Qm" + "1" * 44,
        "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5",
        HELLO + "aa",
        "b" + b32encode(b"\x02\x55\x12\x20" + bytes(32)),
        "b" + b32encode(b"\x01\x71\x12\x20" + bytes(32)),
        "b" + b32encode(b"\x01\x55\x13\x20" + bytes(32)),
        "b" + b32encode(b"\x01\x55\x12\x10" + bytes(16)),
        "f01551220" + "00" * 32,
        "bafk\u00e9reifzjut",
    ],
)
def test_cid_rejects(bad: str) -> None:
    with pytest.raises(CidError):
        parse_cid(bad)


@given(st.binary(max_size=80))
@settings(max_examples=300, deadline=None)
def test_cid_bytes_fuzz(data: bytes) -> None:
    try:
        c = cid_from_bytes(data)
    except CidError:
        return
    assert c.to_bytes() == data


@given(st.text(max_size=70))
@settings(max_examples=300, deadline=None)
def test_cid_string_fuzz(text: str) -> None:
    try:
        c = parse_cid(text)
    except CidError:
        return
    assert parse_cid(str(c)) == c


cids = st.builds(
    CID.v1,
    st.sampled_from(list(Codec)),
    st.binary(min_size=32, max_size=32),
)
links = st.builds(
    PBLink, cids, st.none() | st.text(max_size=20), st.none() | st.integers(0, 2**53 - 1)
)
nodes = st.builds(
    lambda ls, d: PBNode(tuple(sorted(ls, key=lambda link: (link.name or "").encode())), d),
    st.lists(links, max_size=6),
    st.none() | st.binary(max_size=40),
)


@given(nodes)
@settings(max_examples=200, deadline=None)
def test_dagpb_roundtrip(node: PBNode) -> None:
    enc = encode_node(node)
    assert decode_node(enc) == node
    assert encode_node(decode_node(enc)) == enc


@given(st.binary(max_size=200))
@settings(max_examples=400, deadline=None)
def test_dagpb_fuzz_only_typed_errors(data: bytes) -> None:
    try:
        node = decode_node(data)
    except DagPbError:
        return
    assert isinstance(node, PBNode)


def test_dagpb_strictness() -> None:
    link = PBLink(parse_cid(HELLO), "a", 11)
    good = encode_node(links=[link], data=b"\x08\x02")
    decode_node(good)
    data_first = b"\x0a\x02\x08\x02" + good[:-4]
    assert decode_node(data_first) == decode_node(good)  # valid, not canonical
    with pytest.raises(DagPbError, match="interleaved"):
        decode_node(good + good[:-4])
    with pytest.raises(DagPbError):
        decode_node(good + b"\x0a\x00")  # a second Data
    with pytest.raises(DagPbError):
        decode_node(b"\x1a\x00")  # unknown field 3
    with pytest.raises(DagPbError):
        decode_node(b"\x12\x02\x12\x00")  # link without Hash
    with pytest.raises(DagPbError):
        decode_node(b"\x12\x03\x0a\x01\x00")  # Hash is not a CID
    with pytest.raises(DagPbError):
        decode_node(good[:-1])  # truncated
    with pytest.raises(DagPbError):
        decode_node(b"\x0a\x80\x00")  # non-minimal length varint
    with pytest.raises(DagPbError):
        decode_node(b"\x0a" + encode_uvarint(3 * 1024 * 1024))


def test_unixfs_roundtrip_and_errors() -> None:
    f = UnixFSData(DataType.FILE, blocksizes=(1 << 20, 5))
    enc = encode_unixfs(f)
    assert enc == b"\x08\x02\x18\x85\x80\x40\x20\x80\x80\x40\x20\x05"
    got = decode_unixfs(enc)
    assert got.type == DataType.FILE
    assert got.blocksizes == (1 << 20, 5)
    assert got.file_size() == (1 << 20) + 5
    assert encode_unixfs(UnixFSData(DataType.DIRECTORY)) == b"\x08\x01"
    for bad in [
        b"",
        b"\x08\x09",
        b"\x08\x02\x18\x07",
        b"\x08\x02\x08\x02",
        b"\x0a\x00",
        b"\x08\x02\x12\x05ab",
    ]:
        with pytest.raises(UnixFsError):
            decode_unixfs(bad)


@given(st.binary(max_size=64))
@settings(max_examples=300, deadline=None)
def test_unixfs_fuzz(data: bytes) -> None:
    with contextlib.suppress(UnixFsError):
        decode_unixfs(data)


@pytest.mark.interop
def test_dagpb_decode_matches_js() -> None:
    """@ipld/dag-pb (the JS reference codec) reads our encodings as we meant them."""
    import json

    from content_streams import oracle

    samples: list[PBNode] = []

    @given(nodes)
    @settings(max_examples=60, deadline=None, database=None)
    def collect(node: PBNode) -> None:
        samples.append(node)

    collect()
    results = oracle("decode-many", stdin=json.dumps([encode_node(n).hex() for n in samples]))
    for node, res in zip(samples, results, strict=True):
        assert res["ok"], res
        got = res["node"]
        assert [(lk["cid"], lk["name"], lk["tsize"]) for lk in got["links"]] == [
            (str(lk.cid), lk.name, lk.tsize) for lk in node.links
        ]
        assert got["data"] == (node.data.hex() if node.data is not None else None)
