"""spec/vectors/content/ matches the reference, the IPFS JS oracle, and @ipld/dag-pb.

`make vectors` (INFERNET_WRITE_VECTORS=1) rewrites the files first.
"""

from __future__ import annotations

import json
import os

import pytest
from content_streams import oracle
from content_vectors import BIG, OUT, dagpb_vectors, file_vectors, write

from infernet_ref.content.cid import CID, Codec
from infernet_ref.content.dagpb import decode_node, encode_node
from infernet_ref.content.errors import DagPbError

if os.environ.get("INFERNET_WRITE_VECTORS"):  # `make vectors`
    write()
FILES = json.loads((OUT / "files.json").read_text())
DAGPB = json.loads((OUT / "dagpb.json").read_text())


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
