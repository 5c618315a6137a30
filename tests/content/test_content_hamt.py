"""HAMT-sharded directories: murmur3, the sharding decision and the trie, against the JS importer.

Every directory is generated on disk here and imported by both sides (tests/content/js/oracle.mjs
runs ``ipfs-unixfs-importer`` under the unixfs-v1-2025 profile); nothing large is committed.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import pytest
from content_streams import oracle
from hypothesis import given, settings
from hypothesis import strategies as st

from infernet_ref.content.builder import (
    SHARD_THRESHOLD,
    DagEntry,
    build_directory,
    build_path,
    cid_for_bytes,
    directory_node,
)
from infernet_ref.content.chunker import iter_chunks
from infernet_ref.content.cid import CID, Codec, parse_cid
from infernet_ref.content.dagpb import PBLink, PBNode, decode_node, encode_node
from infernet_ref.content.errors import BlockNotFound, ContentError, PathError, UnixFsError
from infernet_ref.content.hamt import HashStream, list_steps, lookup_steps, parse_shard, run_sync
from infernet_ref.content.murmur3 import hamt_hash, murmur3_x64_128
from infernet_ref.content.rangefetch import StoreSource
from infernet_ref.content.reader import (
    directory_entries,
    export_to_path,
    lookup_entry,
    read_range_local,
    resolve_path,
)
from infernet_ref.content.safetensors_fetch import list_directory
from infernet_ref.content.store import BlockStore
from infernet_ref.content.unixfs import DataType, UnixFSData, decode_unixfs, encode_unixfs

HAMT_VECTORS = Path(__file__).parents[2] / "spec/vectors/content/hamt.json"
# Published MurmurHash3_x64_128 (seed 0) values, as (h1, h2): SMHasher / Go spaolacci/murmur3.
MURMUR_VECTORS = [
    (b"", 0, 0),
    (b"hello", 0xCBD8A7B341BD9B02, 0x5B1E906A48AE1D19),
    (b"The quick brown fox jumps over the lazy dog", 0xE34BBC7BBC071B6C, 0x7A433CA9C49A9347),
]


@pytest.mark.parametrize(("data", "h1", "h2"), MURMUR_VECTORS)
def test_murmur3_published_vectors(data: bytes, h1: int, h2: int) -> None:
    assert murmur3_x64_128(data) == (h1, h2)
    assert hamt_hash(data) == h1.to_bytes(8, "big")


@pytest.mark.interop
def test_murmur3_matches_js() -> None:
    """Every tail length (0..47 bytes) and multi-byte UTF-8, against @multiformats/murmur3."""
    names = ["x" * n for n in range(48)] + ["ünïcode", "日本語ファイル", "emoji-😀", "a/b\0c"]
    js = oracle("murmur", stdin=json.dumps(names))
    for name, row in zip(names, js, strict=True):
        h1, h2 = murmur3_x64_128(name.encode())
        assert row["hex"] == f"{h1:016x}{h2:016x}", name


def _kind(store: BlockStore, cid: CID) -> DataType:
    node = decode_node(store.get(cid))
    assert node.data is not None
    return decode_unixfs(node.data).type


def _oracle_tree(d: Path, threshold: int | None = None) -> dict[str, str]:
    args = ["dir", str(d)] + ([str(threshold)] if threshold is not None else [])
    return {e["path"]: e["cid"] for e in oracle(*args)}


def _write(d: Path, names: list[str]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for n in names:
        (d / n).write_bytes(n.encode())


def _long_names(count: int) -> list[str]:
    return [f"{i:05d}-" + "model-shard-with-a-rather-long-file-name" * 2 for i in range(count)]


@pytest.mark.interop
def test_default_threshold_under_and_over_match_js(tmp_path: Path) -> None:
    """~2100 entries: the largest flat directory and one entry more (a HAMT), both as the importer."""
    names = _long_names(2300)
    entries = {n: DagEntry(parse_cid(cid_for_bytes(n.encode())), len(n), len(n)) for n in names}
    node = directory_node({})
    per_link = len(directory_node(dict([next(iter(entries.items()))]))) - len(node)
    under = (SHARD_THRESHOLD - len(node)) // per_link  # every link here has the same size
    assert len(directory_node(dict(list(entries.items())[:under]))) <= SHARD_THRESHOLD
    assert len(directory_node(dict(list(entries.items())[: under + 1]))) > SHARD_THRESHOLD
    d = tmp_path / "big"
    _write(d, names[:under])
    store = BlockStore(tmp_path / "store", fsync=False)
    flat = build_path(d, store.sink)
    assert str(flat.cid) == _oracle_tree(d)["big"]
    assert _kind(store, flat.cid) == DataType.DIRECTORY
    _write(d, names[under : under + 1])
    sharded = build_path(d, store.sink)
    assert str(sharded.cid) == _oracle_tree(d)["big"]
    assert _kind(store, sharded.cid) == DataType.HAMT_SHARD
    vectors = {v["name"]: v for v in json.loads(HAMT_VECTORS.read_text())["directories"]}
    assert under == vectors["long_2001_profile_flat"]["count"]
    assert str(flat.cid) == vectors["long_2001_profile_flat"]["cid"]
    assert str(sharded.cid) == vectors["long_2002_profile_hamt"]["cid"]
    listed = directory_entries(store, sharded.cid)
    assert [n for n, _ in listed] == sorted(names[: under + 1])
    assert all(lk.cid == entries[n].cid for n, lk in listed)


def _colliding(prefix_bytes: int, count: int) -> list[str]:
    """``count`` names whose HAMT hashes share the first ``prefix_bytes`` bytes (birthday search)."""
    seen: dict[bytes, list[str]] = {}
    i = 0
    while True:
        name = f"c{i}"
        group = seen.setdefault(hamt_hash(name.encode())[:prefix_bytes], [])
        group.append(name)
        if len(group) == count:
            return group
        i += 1


@pytest.mark.interop
def test_nested_shards_and_collisions_match_js(tmp_path: Path) -> None:
    """Small threshold: 300 entries, names colliding in 1 and 3 hash bytes, nested HAMTs, links."""
    root = tmp_path / "tree"
    names = [f"file-{i:04d}.bin" for i in range(300)]
    deep = _colliding(3, 2)  # two names sharing 24 hash bits: sub-shards three levels down
    first = _colliding(1, 5)
    _write(root, names + deep + first)
    _write(root / "inner-hamt", [f"w{i}" for i in range(120)])
    _write(root / "inner-hamt" / "small-flat", ["a", "b"])
    (root / "empty").mkdir()
    os.symlink("file-0001.bin", root / "a-link")
    (root / ".hidden").write_text("skipped")
    threshold = 2000
    js = _oracle_tree(root, threshold)
    store = BlockStore(tmp_path / "store", fsync=False)
    built = build_path(root, store.sink, shard_threshold=threshold)
    assert str(built.cid) == js["tree"]
    # (the importer reports entries under a HAMT with the shard's path, so only the root is
    # compared; equal roots mean equal trees)
    inner = resolve_path(store, built.cid, "inner-hamt")
    assert _kind(store, built.cid) == DataType.HAMT_SHARD
    assert _kind(store, inner) == DataType.HAMT_SHARD
    assert _kind(store, resolve_path(store, inner, "small-flat")) == DataType.DIRECTORY
    # the three-byte collision really produced a chain of sub-shards
    hs = [HashStream(n.encode()) for n in deep]
    assert [h.index(d, 8) for d in range(3) for h in hs[:1]] == [
        h.index(d, 8) for d in range(3) for h in hs[1:]
    ]
    for n in deep:
        lk = lookup_entry(store, built.cid, n)
        assert lk is not None
        assert store.get(lk.cid) == n.encode()
    assert lookup_entry(store, built.cid, "no-such-name") is None
    with pytest.raises(UnixFsError):
        resolve_path(store, built.cid, "no-such-name")
    # round trip: export -> same file set and bytes
    out = tmp_path / "out"
    export_to_path(store, built.cid, out)
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    want = sorted(str(p.relative_to(root)) for p in root.rglob("*") if ".hidden" not in p.name)
    assert got == want
    assert os.readlink(out / "a-link") == "file-0001.bin"
    assert (out / deep[0]).read_bytes() == deep[0].encode()
    assert read_range_local(store, resolve_path(store, built.cid, "inner-hamt/w7"), 0, 2) == b"w7"


async def test_list_directory_async_reads_hamt(tmp_path: Path) -> None:
    d = tmp_path / "d"
    _write(d, [f"n{i}" for i in range(200)])
    store = BlockStore(tmp_path / "store", fsync=False)
    root = build_path(d, store.sink, shard_threshold=1000).cid
    listing = await list_directory(root, StoreSource(store))
    assert sorted(listing) == sorted(f"n{i}" for i in range(200))
    assert all(store.get(c) == n.encode() for n, c in listing.items())


@pytest.mark.interop
def test_placeholder_rule_matches_js(tmp_path: Path) -> None:
    """The importer's estimate counts a non-empty subdirectory only as an empty-dir placeholder.

    ``push``: the files alone fit exactly; the placeholder of the last (non-empty) subdirectory
    tips the estimate over, so the directory is sharded. ``many``: 40 non-empty subdirectories
    make the flat node far larger than the threshold, yet it stays flat (they never count).
    """
    files = [f"f{i:03d}" for i in range(20)]
    push = tmp_path / "push"
    _write(push, files)
    file_entries = {
        n: DagEntry(parse_cid(cid_for_bytes(n.encode())), len(n), len(n)) for n in files
    }
    threshold = len(directory_node(file_entries))  # estimate of the files == threshold: not over
    _write(push / "zz-sub", ["x"])
    js = _oracle_tree(push, threshold)
    store = BlockStore(tmp_path / "store", fsync=False)
    built = build_path(push, store.sink, shard_threshold=threshold)
    assert str(built.cid) == js["push"]
    assert _kind(store, built.cid) == DataType.HAMT_SHARD

    many = tmp_path / "many"
    _write(many, ["a", "b"])
    for i in range(40):
        _write(many / f"sub-{i:02d}", ["x"])
    js = _oracle_tree(many, 300)
    built = build_path(many, store.sink, shard_threshold=300)
    assert str(built.cid) == js["many"]
    assert _kind(store, built.cid) == DataType.DIRECTORY
    assert len(store.get(built.cid)) > 300


def test_build_directory_rejects_bad_names_when_sharding() -> None:
    leaf = CID.for_block(Codec.RAW, b"x")
    entries = {f"n{i}": DagEntry(leaf, 1, 1) for i in range(50)}
    entries["a/b"] = DagEntry(leaf, 1, 1)
    with pytest.raises(PathError):
        build_directory(entries, threshold=100)


# --- hostile shards: the parser and walkers give typed errors only ---------------------------

_LEAF = CID.for_block(Codec.RAW, b"leaf")


def _shard_block(
    links: list[PBLink], bitfield: bytes, *, hash_type: int = 0x22, fanout: int = 256
) -> bytes:
    fs = UnixFSData(DataType.HAMT_SHARD, data=bitfield, hash_type=hash_type, fanout=fanout)
    return encode_node(links=links, data=encode_unixfs(fs))


def _walk_both(root: CID, blocks: dict[CID, bytes], name: str) -> None:
    def get(c: CID) -> bytes:
        if c not in blocks:
            raise BlockNotFound(str(c))
        return blocks[c]

    for steps in (list_steps(root, blocks[root]), lookup_steps(root, blocks[root], name)):
        with contextlib.suppress(ContentError):
            run_sync(steps, get)  # type: ignore[arg-type]


def _valid_hamt() -> tuple[CID, dict[CID, bytes]]:
    blocks: dict[CID, bytes] = {}
    entries = {f"e{i}": DagEntry(_LEAF, 4, 4) for i in range(80)}
    root = build_directory(entries, blocks.__setitem__, threshold=100).cid
    return root, blocks


_VALID_ROOT, _VALID_BLOCKS = _valid_hamt()
_POOL = [_LEAF, _VALID_ROOT, *_VALID_BLOCKS]


@settings(max_examples=200, deadline=None)
@given(
    labels=st.lists(
        st.one_of(
            st.text(max_size=6),
            st.sampled_from(["00", "0", "FF", "ff", "1G", "100", "00/..", "01..", "0A", "0Ae1"]),
        ),
        max_size=8,
    ),
    targets=st.lists(st.sampled_from(_POOL), min_size=8, max_size=8),
    bitfield=st.binary(max_size=40),
    hash_type=st.sampled_from([0x22, 0x23, 0]),
    fanout=st.sampled_from([256, 255, 0, 1, 16, 2048]),
    name=st.text(max_size=4),
    derive=st.booleans(),
)
def test_hostile_shard_nodes_give_typed_errors(
    *,
    labels: list[str],
    targets: list[CID],
    bitfield: bytes,
    hash_type: int,
    fanout: int,
    name: str,
    derive: bool,
) -> None:
    links = [PBLink(t, lb, 1) for lb, t in zip(labels, targets, strict=False)]
    if derive:  # a bitfield that agrees with the labels, so the label checks are reached
        bits = 0
        for lb in labels:
            with contextlib.suppress(ValueError):
                bits |= 1 << int(lb[:2], 16) if len(lb) >= 2 and lb[:2].isalnum() else 0
        bitfield = bits.to_bytes(max(1, (bits.bit_length() + 7) // 8), "big")
    block = _shard_block(links, bitfield, hash_type=hash_type, fanout=fanout)
    root = CID.for_block(Codec.DAG_PB, block)
    _walk_both(root, {**_VALID_BLOCKS, root: block}, name)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(sorted(_VALID_BLOCKS, key=str)))
def test_random_bytes_in_a_hamt_give_typed_errors(junk: bytes, victim: CID) -> None:
    """Any block of a valid HAMT replaced by junk (as if unverified): typed errors only."""
    _walk_both(_VALID_ROOT, {**_VALID_BLOCKS, victim: junk}, "e3")


def test_entry_in_wrong_bucket_is_refused() -> None:
    idx = HashStream(b"moved").index(0, 8) ^ 1
    block = _shard_block([PBLink(_LEAF, f"{idx:02X}moved", 4)], (1 << idx).to_bytes(32, "big"))
    root = CID.for_block(Codec.DAG_PB, block)
    with pytest.raises(UnixFsError, match="wrong bucket"):
        run_sync(list_steps(root, block), {}.__getitem__)


@pytest.mark.parametrize(
    ("links", "bitfield", "match"),
    [
        ([("01a", _LEAF)], 1 << 2, "not in the bitfield"),
        ([("01a", _LEAF)], (1 << 1) | (1 << 5), "buckets"),
        ([("02a", _LEAF), ("01b", _LEAF)], 6, "out of order"),
        ([("xya", _LEAF)], 1, "bucket prefix"),
        ([("01..", _LEAF)], 2, "invalid entry name"),
    ],
)
def test_bitfield_and_label_mismatches(
    links: list[tuple[str, CID]], bitfield: int, match: str
) -> None:
    raw = [PBLink(c, n, 1) for n, c in links]
    node = PBNode(
        tuple(raw),
        encode_unixfs(
            UnixFSData(
                DataType.HAMT_SHARD, data=bitfield.to_bytes(32, "big"), hash_type=0x22, fanout=256
            )
        ),
    )
    root = CID.for_block(Codec.DAG_PB, b"x")
    with pytest.raises(UnixFsError, match=match):
        parse_shard(root, node, decode_unixfs(node.data or b""))


def test_shard_cycle_and_depth_are_bounded() -> None:
    # cycle: A's only bucket points at B, and (unverified) B's bytes are A's again
    b_cid = CID.for_block(Codec.DAG_PB, b"b")
    a_block = _shard_block([PBLink(b_cid, "00", 1)], b"\x01")
    a_cid = CID.for_block(Codec.DAG_PB, a_block)
    blocks = {a_cid: a_block, b_cid: a_block}
    with pytest.raises(UnixFsError, match="twice"):
        run_sync(list_steps(a_cid, a_block), blocks.__getitem__)
    # depth: a chain of 70 single-bucket sub-shards along the hash path of "deep"
    hs = HashStream(b"deep")
    chain: dict[CID, bytes] = {}
    child = _LEAF
    for depth in reversed(range(70)):
        idx = hs.index(depth, 8)
        label = f"{idx:02X}" + ("deep" if child == _LEAF else "")
        block = _shard_block([PBLink(child, label, 1)], (1 << idx).to_bytes(32, "big"))
        child = CID.for_block(Codec.DAG_PB, block)
        chain[child] = block
    for steps in (list_steps(child, chain[child]), lookup_steps(child, chain[child], "deep")):
        with pytest.raises(UnixFsError, match="deeper"):
            run_sync(steps, chain.__getitem__)  # type: ignore[arg-type]


def test_small_file_buffers_still_read_a_file_that_grew(tmp_path: Path) -> None:
    """Chunk buffers are sized from fstat (folders of small files); a stale size is no limit."""
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    data = b"abc" + b"x" * 5000 + b"y" * (3 << 20)

    class Stale:  # fstat says 3 bytes, the reads deliver more (a file that grew meanwhile)
        def __init__(self, f: io.FileIO) -> None:
            self.f, self.body = f, io.BytesIO(data)
            self.fileno, self.tell = f.fileno, self.body.tell

        def readinto(self, b: memoryview) -> int:
            return self.body.readinto(b)

    with p.open("rb", buffering=0) as f:
        got = [bytes(c) for c in iter_chunks(Stale(f))]  # type: ignore[arg-type]
    assert b"".join(got) == data
    assert [len(c) for c in got[:-1]] == [1 << 20] * (len(got) - 1)
