"""HAMT-sharded directories: murmur3, the sharding decision and the trie, against the JS importer.

Every directory is generated on disk here and imported by both sides (tests/content/js/oracle.mjs
runs ``ipfs-unixfs-importer`` under the unixfs-v1-2025 profile); nothing large is committed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from content_streams import oracle

from infernet_ref.content.builder import (
    SHARD_THRESHOLD,
    DagEntry,
    build_directory,
    build_path,
    cid_for_bytes,
    directory_node,
)
from infernet_ref.content.cid import CID, Codec, parse_cid
from infernet_ref.content.dagpb import decode_node
from infernet_ref.content.errors import PathError, UnixFsError
from infernet_ref.content.hamt import HashStream
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
from infernet_ref.content.unixfs import DataType, decode_unixfs

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
