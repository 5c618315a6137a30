"""Block store, CAR v1, reading and range reads over the local store."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from content_streams import MIB, gen_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infernet_ref.content.builder import build_path, cid_for_bytes
from infernet_ref.content.car import encode_header, export_car, import_car, read_car
from infernet_ref.content.cid import CID, Codec, parse_cid
from infernet_ref.content.errors import (
    BlockNotFound,
    BlockTooLarge,
    CarError,
    HashMismatch,
    StoreError,
    UnsafePathError,
)
from infernet_ref.content.rangefetch import StoreSource, read_range
from infernet_ref.content.reader import export_to_path, iter_file, read_range_local, resolve_path
from infernet_ref.content.store import BlockStore
from infernet_ref.content.varint import encode_uvarint


def add(store: BlockStore, path: Path) -> CID:
    root = build_path(path, store.put).cid
    store.pin(root)
    return root


def test_put_get_verify_and_errors(tmp_path: Path) -> None:
    s = BlockStore(tmp_path / "s")
    c = s.put_block(b"hello world")
    assert str(c) == "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    assert s.get(c) == b"hello world"
    assert s.has(str(c))
    assert s.size(c) == 11
    assert len(s) == 1
    assert s.put(c, b"hello world") is False  # already there
    with pytest.raises(HashMismatch):
        s.put(CID.for_block(Codec.RAW, b"x"), b"y")
    with pytest.raises(BlockTooLarge):
        s.put_block(bytes(2 * MIB + 1))
    with pytest.raises(BlockNotFound):
        s.get(CID.for_block(Codec.RAW, b"absent"))
    assert not any((tmp_path / "s" / "tmp").iterdir())


def test_corruption_detected_and_repaired(tmp_path: Path) -> None:
    s = BlockStore(tmp_path / "s")
    c = s.put_block(b"payload" * 100)
    path = next((tmp_path / "s" / "blocks").rglob(str(c)))
    path.write_bytes(b"tampered")
    with pytest.raises(HashMismatch):
        s.get(c)
    (tmp_path / "s" / "tmp" / "leftover.part").write_bytes(b"half")
    rep = s.verify()
    assert rep.corrupt == [str(c)]
    assert rep.removed_tmp == 1
    assert not rep.ok
    rep = s.verify(repair=True)
    assert not s.has(c)
    assert s.verify().ok


def test_reindex_orphan_file_after_crash(tmp_path: Path) -> None:
    s = BlockStore(tmp_path / "s")
    c = s.put_block(b"crash between rename and index")
    s._db.execute("DELETE FROM blocks")  # simulate the crash window
    assert not s.has(c)
    rep = s.verify()
    assert rep.reindexed == [str(c)]
    assert s.has(c)


def test_disk_full_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = BlockStore(tmp_path / "s")

    def boom(*_a: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(StoreError, match="disk full"):
        s.put_block(b"never stored")
    assert len(s) == 0
    assert not any((tmp_path / "s" / "tmp").iterdir())


def test_pin_gc(tmp_path: Path) -> None:
    s = BlockStore(tmp_path / "s")
    f = tmp_path / "f"
    f.write_bytes(gen_bytes(3 * MIB + 5))
    root = add(s, f)
    loose = s.put_block(b"unpinned")
    direct = s.put_block(b"direct pin")
    s.pin(direct, recursive=False)
    assert len(s) == 7  # 4 leaves + root + 2
    assert s.gc() == [str(loose)]
    assert s.unpin(root)
    assert len(s.gc()) == 5
    assert len(s) == 1


def test_read_and_export(tmp_path: Path) -> None:
    s = BlockStore(tmp_path / "s")
    d = tmp_path / "model"
    (d / "sub").mkdir(parents=True)
    data = gen_bytes(2 * MIB + 77)
    (d / "w.bin").write_bytes(data)
    (d / "sub" / "c.json").write_text("{}")
    root = add(s, d)
    wcid = resolve_path(s, root, "w.bin")
    assert b"".join(iter_file(s, wcid)) == data
    for a, b in [(0, 0), (0, 1), (MIB - 3, MIB + 3), (2 * MIB, 2 * MIB + 77), (5, 2 * MIB + 77)]:
        assert read_range_local(s, wcid, a, b) == data[a:b]
    out = tmp_path / "out"
    export_to_path(s, root, out)
    assert (out / "w.bin").read_bytes() == data
    assert (out / "sub" / "c.json").read_text() == "{}"


@pytest.fixture(scope="module")
def range_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[BlockStore, CID, bytes]:
    d = tmp_path_factory.mktemp("range")
    s = BlockStore(d / "s", fsync=False)
    data = gen_bytes(3 * MIB + 10)
    (d / "f").write_bytes(data)
    return s, build_path(d / "f", s.put).cid, data


@given(st.integers(0, 3 * MIB + 10), st.integers(0, 3 * MIB + 10))
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_range_property(range_file: tuple[BlockStore, CID, bytes], a: int, b: int) -> None:
    s, root, data = range_file
    lo, hi = min(a, b), max(a, b)
    assert read_range_local(s, root, lo, hi) == data[lo:hi]


async def test_async_range_reads_only_touched_blocks(tmp_path: Path) -> None:
    s = BlockStore(tmp_path / "s")
    data = gen_bytes(5 * MIB)
    root = parse_cid(cid_for_bytes(data))
    f = tmp_path / "f"
    f.write_bytes(data)
    add(s, f)
    seen: list[CID] = []

    class Counting(StoreSource):
        async def get_block(self, cid: CID) -> bytes:
            seen.append(cid)
            return await super().get_block(cid)

    got = await read_range(root, 2 * MIB + 10, 3 * MIB + 10, Counting(s))
    assert got == data[2 * MIB + 10 : 3 * MIB + 10]
    assert len(seen) == 3  # root + the two leaves the range touches


def test_export_refuses_escaping_names(tmp_path: Path) -> None:
    from infernet_ref.content.dagpb import PBLink, encode_node
    from infernet_ref.content.unixfs import DIRECTORY_DATA

    s = BlockStore(tmp_path / "s")
    leaf = s.put_block(b"evil")
    for name in ["..", "../x", "a/b", ""]:
        block = encode_node(links=[PBLink(leaf, name, 4)], data=DIRECTORY_DATA)
        d = s.put_block(block, Codec.DAG_PB)
        with pytest.raises(UnsafePathError):
            export_to_path(s, d, tmp_path / f"out{len(name)}")
    dup = s.put_block(
        encode_node(links=[PBLink(leaf, "x", 4), PBLink(leaf, "x", 4)], data=DIRECTORY_DATA),
        Codec.DAG_PB,
    )
    with pytest.raises(UnsafePathError):
        export_to_path(s, dup, tmp_path / "dup")
    assert not (tmp_path / "x").exists()


def test_car_roundtrip(tmp_path: Path) -> None:
    s = BlockStore(tmp_path / "a")
    d = tmp_path / "d"
    d.mkdir()
    (d / "big").write_bytes(gen_bytes(2 * MIB + 1))
    (d / "small").write_text("hi")
    root = add(s, d)
    buf = io.BytesIO()
    assert export_car(s, root, buf) == len(s)
    t = BlockStore(tmp_path / "b")
    roots, n = import_car(t, io.BytesIO(buf.getvalue()))
    assert roots == [root]
    assert n == len(s)
    assert sorted(map(str, t.cids())) == sorted(map(str, s.cids()))
    # header decodes with a general CBOR decoder to the documented shape
    import cbor2

    raw = buf.getvalue()
    hdr = cbor2.loads(raw[1 : 1 + raw[0]])
    assert hdr["version"] == 1
    assert hdr["roots"][0].tag == 42


def test_car_rejects_bad_archives(tmp_path: Path) -> None:
    s = BlockStore(tmp_path / "s")
    c = CID.for_block(Codec.RAW, b"block")
    hdr = encode_header([c])
    good = (
        encode_uvarint(len(hdr))
        + hdr
        + encode_uvarint(len(c.to_bytes()) + 5)
        + c.to_bytes()
        + b"block"
    )
    assert import_car(s, io.BytesIO(good)) == ([c], 1)
    bads = [
        b"",
        b"\x00",
        good[:-1],  # truncated section
        good[:-5] + b"blocc",  # hash mismatch
        encode_uvarint(3) + b"\xa0\xa0\xa0",
        encode_uvarint(len(hdr)) + hdr.replace(b"version\x01", b"version\x02"),
        encode_uvarint(len(hdr)) + hdr + b"\xff\xff\xff\xff\x0f",  # section too large
    ]
    for bad in bads:
        with pytest.raises(CarError):
            _read_all(bad)


def _read_all(data: bytes) -> None:
    _roots, sections = read_car(io.BytesIO(data))
    list(sections)


@given(st.binary(max_size=200))
@settings(max_examples=200, deadline=None)
def test_car_fuzz(data: bytes) -> None:
    try:
        _roots, sections = read_car(io.BytesIO(data))
        list(sections)
    except CarError:
        pass


@pytest.mark.interop
def test_car_interop_with_ipld_car(tmp_path: Path) -> None:
    """Our CAR reads in @ipld/car, and a CAR written by @ipld/car imports into our store."""
    from content_streams import oracle

    d = tmp_path / "d"
    (d / "s").mkdir(parents=True)
    (d / "s" / "a.txt").write_text("hi")
    (d / "big.bin").write_bytes(gen_bytes(2 * MIB + 5))
    s = BlockStore(tmp_path / "ours", fsync=False)
    root = add(s, d)
    with open(tmp_path / "ours.car", "wb") as f:
        export_car(s, root, f)
    got = oracle("car-read", str(tmp_path / "ours.car"))[0]
    assert got["roots"] == [str(root)]
    assert sorted(b["cid"] for b in got["blocks"]) == sorted(map(str, s.cids()))
    assert all(b["ok"] for b in got["blocks"])
    made = oracle("car-dir", str(d), str(tmp_path / "js.car"))[0]
    assert made["root"] == str(root)
    t = BlockStore(tmp_path / "theirs", fsync=False)
    with open(tmp_path / "js.car", "rb") as f:
        roots, n = import_car(t, f)
    assert roots == [root]
    assert n == made["blocks"]
    export_to_path(t, root, tmp_path / "out")
    assert (tmp_path / "out" / "big.bin").read_bytes() == (d / "big.bin").read_bytes()


def test_get_framed_reads_in_place_and_verifies(tmp_path: Path) -> None:
    s = BlockStore(tmp_path / "s", fsync=False)
    data = gen_bytes(MIB + 5)
    cid = s.put_block(data)
    frame = s.get_framed(cid, lambda size: b"H" + str(size).encode())
    assert bytes(frame) == b"H" + str(len(data)).encode() + data
    next((tmp_path / "s" / "blocks").rglob(str(cid))).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(HashMismatch):
        s.get_framed(cid, lambda size: b"")
    with pytest.raises(BlockNotFound):
        s.get_framed(CID.for_block(Codec.RAW, b"absent"), lambda size: b"")
