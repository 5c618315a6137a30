"""Hostile inputs: link cycles, deep DAGs, lying size fields, oversized frames, sharding threshold."""

from __future__ import annotations

from pathlib import Path

import pytest

from infernet_ref.content.builder import SHARD_THRESHOLD, DagEntry, build_directory, build_path
from infernet_ref.content.cid import CID, Codec
from infernet_ref.content.dag import MAX_DEPTH, walk
from infernet_ref.content.dagpb import PBLink, decode_node, encode_node
from infernet_ref.content.errors import ContentError, ExchangeError, PathError, UnixFsError
from infernet_ref.content.exchange.session import ClientSession
from infernet_ref.content.exchange.wire import WantEntry, decode_block_frame, encode_block_frame
from infernet_ref.content.reader import read_range_local
from infernet_ref.content.store import BlockStore
from infernet_ref.content.unixfs import DataType, decode_unixfs, file_node_data

LEAF = CID.for_block(Codec.RAW, b"x" * 10)


def test_walk_survives_a_cycle_of_unverified_blocks() -> None:
    """Hashes forbid true cycles, but a walk over an untrusted block map must still terminate."""
    a, b = CID.for_block(Codec.DAG_PB, b"a"), CID.for_block(Codec.DAG_PB, b"b")
    blocks = {a: encode_node(links=[PBLink(b)]), b: encode_node(links=[PBLink(a)])}
    assert [c for c, _ in walk(a, blocks.get)] == [a, b]


def test_walk_refuses_absurd_depth() -> None:
    chain: dict[CID, bytes] = {}
    child = LEAF
    for i in range(MAX_DEPTH + 2):
        node = encode_node(links=[PBLink(child)], data=bytes([i % 256]))
        child = CID.for_block(Codec.DAG_PB, node)
        chain[child] = node
    with pytest.raises(UnixFsError, match="deeper"):
        list(walk(child, chain.get))


def test_lying_blocksizes_are_detected(tmp_path: Path) -> None:
    s = BlockStore(tmp_path / "s", fsync=False)
    leaf = s.put_block(b"x" * 10)
    lie = encode_node(links=[PBLink(leaf, "", 10)], data=file_node_data([20]))  # claims 20 bytes
    root = s.put_block(lie, Codec.DAG_PB)
    with pytest.raises(UnixFsError, match="parent says 20"):
        read_range_local(s, root, 0, 20)
    mismatch = encode_node(links=[PBLink(leaf, "", 10)], data=file_node_data([10, 10]))
    root2 = s.put_block(mismatch, Codec.DAG_PB)
    with pytest.raises(UnixFsError, match="blocksizes"):
        read_range_local(s, root2, 0, 5)


def test_truncated_and_corrupt_blocks_rejected() -> None:
    c = ClientSession()
    block = b"y" * 1000
    cid = CID.for_block(Codec.RAW, block)
    c.want([WantEntry(cid)])
    frame = encode_block_frame(cid, block)
    with pytest.raises(ContentError):
        c.receive_block(frame[:-1])  # truncated: size mismatch
    with pytest.raises(ContentError):
        c.receive_block(frame[:-1] + b"z")  # corrupt: hash mismatch
    assert cid in c.inflight  # still wanted: nothing half-accepted
    assert c.receive_block(frame) is not None


def test_oversized_block_frame_rejected() -> None:
    big = b"\0" * (2 * 1024 * 1024 + 1)
    frame = encode_block_frame(CID.for_block(Codec.RAW, big), big)
    with pytest.raises(ExchangeError):
        decode_block_frame(frame)


def test_directory_over_sharding_threshold_is_a_hamt() -> None:
    """Over the threshold a directory is HAMT-sharded (no longer refused); see test_content_hamt."""
    entry = DagEntry(LEAF, 10, 10)
    n = SHARD_THRESHOLD // 40 + 10
    blocks: dict[CID, bytes] = {}
    root = build_directory({f"file-{i:06d}": entry for i in range(n)}, blocks.__setitem__)
    node = decode_node(blocks[root.cid])
    assert node.data is not None
    assert decode_unixfs(node.data).type == DataType.HAMT_SHARD


def test_bad_paths(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(PathError):
        build_path(fifo)
    with pytest.raises(PathError):
        build_directory({"a/b": DagEntry(LEAF, 10, 10)})
