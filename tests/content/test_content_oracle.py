"""Root CIDs against the official IPFS JS importer (unixfs-v1-2025 profile) at every boundary."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from content_streams import MIB, gen_bytes, gen_stream, oracle

from infernet_ref.content.builder import build_path, cid_for_bytes, cid_for_stream

pytestmark = pytest.mark.interop

HELLO = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"


def test_known_hello_world() -> None:
    assert cid_for_bytes(b"hello world") == HELLO


def test_known_hello_world_oracle(tmp_path: Path) -> None:
    f = tmp_path / "h"
    f.write_bytes(b"hello world")
    assert oracle("file", str(f))[0]["cid"] == HELLO
    assert str(build_path(f).cid) == HELLO


@pytest.mark.parametrize(
    "length", [0, 1, 11, MIB - 1, MIB, MIB + 1, 2 * MIB, 5 * MIB + 3], ids=lambda n: f"{n}B"
)
def test_boundaries_match_oracle(length: int) -> None:
    ours = cid_for_stream(gen_stream(length))
    assert ours == oracle("gen", str(length))[0]["cid"]
    assert cid_for_bytes(gen_bytes(length)) == ours  # the in-memory path agrees


@pytest.mark.slow
@pytest.mark.parametrize("chunks", [1024, 1025], ids=lambda n: f"{n}chunks")
def test_one_and_two_levels_match_oracle(chunks: int) -> None:
    """1024 chunks fill one node; 1025 needs a second level. Streamed, never on disk."""
    length = chunks * MIB
    ours = cid_for_stream(gen_stream(length))
    assert ours == oracle("gen", str(length))[0]["cid"]
    vectors = json.loads(
        (Path(__file__).parents[2] / "spec/vectors/content/files.json").read_text()
    )
    assert ours == next(v["cid"] for v in vectors if v.get("length") == length)  # vectors current


def test_single_thread_equals_threaded() -> None:
    length = 40 * MIB + 17
    assert cid_for_stream(gen_stream(length), workers=1) == cid_for_stream(
        gen_stream(length), workers=3
    )


def _model_folder(root: Path) -> Path:
    d = root / "tiny-llama"
    (d / "sub" / "deeper").mkdir(parents=True)
    (d / "empty-dir").mkdir()
    (d / "config.json").write_text('{"model_type": "llama", "hidden_size": 64}\n')
    (d / "model-00001-of-00002.safetensors").write_bytes(gen_bytes(3 * MIB + 1234))
    (d / "model-00002-of-00002.safetensors").write_bytes(gen_bytes(MIB)[::-1])
    (d / "model.safetensors.index.json").write_text('{"weight_map": {}}')
    (d / "empty.bin").write_bytes(b"")
    (d / "sub" / "deeper" / "ünïcode name.txt").write_text("x" * 100)
    (d / "sub" / "a.txt").write_text("a")
    (d / ".hidden").write_text("skipped like `ipfs add -r` without --hidden")
    os.symlink("config.json", d / "link-to-config")
    return d


def test_directory_matches_oracle(tmp_path: Path) -> None:
    d = _model_folder(tmp_path)
    entries = oracle("dir", str(d))
    root = next(e for e in entries if e["path"] == "tiny-llama")
    assert str(build_path(d).cid) == root["cid"]
    by_path = {e["path"]: e["cid"] for e in entries}
    assert str(build_path(d / "sub").cid) == by_path["tiny-llama/sub"]
    # The importer does not yield empty directories; this is the well-known empty-directory CID.
    assert (
        str(build_path(d / "empty-dir").cid)
        == "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"
    )
    assert str(build_path(d / "link-to-config").cid) == by_path["tiny-llama/link-to-config"]
