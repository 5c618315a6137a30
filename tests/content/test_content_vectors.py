"""spec/vectors/content/ matches the reference, the IPFS JS oracle, and @ipld/dag-pb.

`make vectors` (INFERNET_WRITE_VECTORS=1) rewrites the files first.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from content_streams import oracle
from content_vectors import BIG, OUT, dagpb_vectors, file_vectors, hamt_names, hamt_vectors, write

from infernet_ref.content.cid import CID, Codec
from infernet_ref.content.dagpb import decode_node, encode_node
from infernet_ref.content.errors import DagPbError

if os.environ.get("INFERNET_WRITE_VECTORS"):  # `make vectors`
    write()
FILES = json.loads((OUT / "files.json").read_text())
DAGPB = json.loads((OUT / "dagpb.json").read_text())
HAMT = json.loads((OUT / "hamt.json").read_text())


def test_small_file_vectors_are_current() -> None:
    committed = [v for v in FILES if v["name"] not in BIG]
    assert committed == file_vectors(include_big=False)


def test_dagpb_vectors() -> None:
    assert dagpb_vectors() == DAGPB
    for v in DAGPB["valid"]:
        raw = bytes.fromhex(v["hex"])
        assert (encode_node(decode_node(raw)) == raw) is v["canonical"]
        assert str(CID.for_block(Codec.DAG_PB, raw)) == v["cid"]
    for v in DAGPB["invalid"]:
        with pytest.raises(DagPbError):
            decode_node(bytes.fromhex(v["hex"]))


@pytest.mark.interop
def test_dagpb_vectors_match_js_codec() -> None:
    """@ipld/dag-pb accepts the valid vectors and rejects the invalid_* ones, except where our
    spec is deliberately stricter (the vector marks it; this test pins the divergence down)."""
    vectors = DAGPB["valid"] + DAGPB["invalid"]
    results = oracle("decode-many", stdin=json.dumps([v["hex"] for v in vectors]))
    assert len(results) == len(vectors)
    for v, res in zip(vectors, results, strict=True):
        if v.get("stricter_than_js"):
            assert res["ok"], v["name"]
        elif v["name"].startswith("invalid_"):
            assert not res["ok"], v["name"]
        else:
            node = decode_node(bytes.fromhex(v["hex"]))
            got = res["node"]
            assert [lk["cid"] for lk in got["links"]] == [str(lk.cid) for lk in node.links]
            assert got["data"] == (node.data.hex() if node.data is not None else None)


def test_hamt_vectors_are_current() -> None:
    assert hamt_vectors() == HAMT
    for v in HAMT["directories"]:
        if v["root_hex"] is not None:
            assert str(CID.for_block(Codec.DAG_PB, bytes.fromhex(v["root_hex"]))) == v["cid"]


@pytest.mark.interop
def test_hamt_vectors_match_js_importer(tmp_path: Path) -> None:
    """The small HAMT vectors, imported from disk by the JS importer with their threshold."""
    murmur = oracle("murmur", stdin=json.dumps([m["utf8"] for m in HAMT["murmur3_x64_128"]]))
    assert [r["hex"] for r in murmur] == [m["h1"] + m["h2"] for m in HAMT["murmur3_x64_128"]]
    for v in HAMT["directories"]:
        if v["count"] > 500:
            continue  # the profile-threshold pair is checked by test_content_hamt
        d = tmp_path / v["name"]
        d.mkdir()
        for n in hamt_names(v["names"], v["count"]):
            (d / n).write_bytes(n.encode())
        js = oracle("dir", str(d), str(v["threshold"]))
        assert js[-1]["cid"] == v["cid"], v["name"]
