"""Generator of spec/vectors/content/ (run as a script to rewrite them; tests check they match).

.venv/bin/python tests/content/content_vectors.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from content_streams import MIB, gen_stream

from infernet_ref.content.builder import cid_for_stream
from infernet_ref.content.cid import CID, Codec
from infernet_ref.content.dagpb import PBLink, encode_node
from infernet_ref.content.unixfs import DIRECTORY_DATA, file_node_data

OUT = Path(__file__).resolve().parents[2] / "spec" / "vectors" / "content"
LENGTHS = {
    "empty": 0,
    "one_byte": 1,
    "chunk_minus_1": MIB - 1,
    "chunk": MIB,
    "chunk_plus_1": MIB + 1,
    "five_chunks_plus_3": 5 * MIB + 3,
    "chunks_1024": 1024 * MIB,
    "chunks_1025": 1025 * MIB,
}
BIG = {"chunks_1024", "chunks_1025"}
HELLO = CID.for_block(Codec.RAW, b"hello world")
# Rules where spec/content.md is stricter than @ipld/dag-pb 4.2 (which accepts these bytes,
# decoding a bad name to U+FFFD and reading non-minimal varints).
STRICTER = {"invalid_non_minimal_varint", "invalid_name_not_utf8"}


def file_vectors(include_big: bool = True) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"name": "hello_world", "bytes_utf8": "hello world", "cid": str(HELLO)},
    ]
    for name, n in LENGTHS.items():
        if name in BIG and not include_big:
            continue
        out.append(
            {
                "name": name,
                "length": n,
                "stream": "pattern-v1",
                "cid": cid_for_stream(gen_stream(n)),
            }
        )
    return out


def dagpb_vectors() -> dict[str, list[dict[str, Any]]]:
    leaf = HELLO
    valid = {
        "empty_directory": encode_node(data=DIRECTORY_DATA),
        "file_node_two_leaves": encode_node(
            links=[PBLink(leaf, "", 11), PBLink(leaf, "", 11)], data=file_node_data([11, 11])
        ),
        "directory_sorted_links": encode_node(
            links=[PBLink(leaf, "b", 11), PBLink(leaf, "a", 11), PBLink(leaf, "ab", 11)],
            data=DIRECTORY_DATA,
        ),
        "no_data_no_links": b"",
        "empty_data": encode_node(data=b""),
        "link_without_name_or_tsize": encode_node(links=[PBLink(leaf)]),
    }
    link = encode_node(links=[PBLink(leaf, "a", 11)])
    noncanonical = {"data_first_then_links": b"\x0a\x02\x08\x01" + link}
    invalid = {
        "invalid_links_data_links": link + b"\x0a\x02\x08\x01" + link,
        "invalid_two_data_fields": b"\x0a\x00\x0a\x00",
        "invalid_unknown_field": b"\x1a\x00",
        "invalid_link_without_hash": b"\x12\x02\x12\x00",
        "invalid_hash_not_a_cid": b"\x12\x03\x0a\x01\x00",
        "invalid_truncated": link[:-1],
        "invalid_non_minimal_varint": b"\x0a\x80\x00",
        "invalid_name_not_utf8": b"\x12\x2a\x0a\x24" + leaf.to_bytes() + b"\x12\x02\xff\xfe",
        "invalid_link_fields_out_of_order": b"\x12\x2a\x12\x02ab\x0a\x24" + leaf.to_bytes(),
        "invalid_wire_type": b"\x08\x01",
    }
    return {
        "valid": [
            {
                "name": k,
                "hex": v.hex(),
                "cid": str(CID.for_block(Codec.DAG_PB, v)),
                "canonical": k in valid,
            }
            for k, v in (valid | noncanonical).items()
        ],
        "invalid": [
            {"name": k, "hex": v.hex(), "stricter_than_js": k in STRICTER}
            for k, v in invalid.items()
        ],
    }


MURMUR_INPUTS = [
    "",
    "hello",
    "The quick brown fox jumps over the lazy dog",
    "x" * 15,
    "x" * 16,
    "x" * 17,
    "model.safetensors",
    "ünïcode",
]


def hamt_names(pattern: str, count: int) -> list[str]:
    """Entry names of a HAMT vector: ``short`` = ``n0..``; ``long`` = 5 digits + an 80-byte tail."""
    if pattern == "short":
        return [f"n{i}" for i in range(count)]
    return [f"{i:05d}-" + "model-shard-with-a-rather-long-file-name" * 2 for i in range(count)]


HAMT_DIRS = [  # (name, pattern, count, threshold or None for the profile's)
    ("short_200_threshold_1000", "short", 200, 1000),
    ("short_5_threshold_100", "short", 5, 100),
    ("long_2001_profile_flat", "long", 2001, None),
    ("long_2002_profile_hamt", "long", 2002, None),
]


def hamt_vectors() -> dict[str, Any]:
    from infernet_ref.content.builder import SHARD_THRESHOLD, DagEntry, build_directory
    from infernet_ref.content.murmur3 import murmur3_x64_128

    murmur = []
    for text in MURMUR_INPUTS:
        h1, h2 = murmur3_x64_128(text.encode())
        murmur.append({"utf8": text, "h1": f"{h1:016x}", "h2": f"{h2:016x}"})
    dirs = []
    for name, pattern, count, threshold in HAMT_DIRS:
        blocks: dict[CID, bytes] = {}
        entries = {
            n: DagEntry(CID.for_block(Codec.RAW, n.encode()), len(n), len(n))
            for n in hamt_names(pattern, count)
        }
        root = build_directory(entries, blocks.__setitem__, threshold=threshold or SHARD_THRESHOLD)
        root_block = blocks[root.cid]
        dirs.append(
            {
                "name": name,
                "names": pattern,
                "count": count,
                "threshold": threshold or SHARD_THRESHOLD,
                "cid": str(root.cid),
                "tsize": root.tsize,
                "blocks": len(blocks),
                "root_hex": root_block.hex() if len(root_block) <= 8192 else None,
            }
        )
    return {"murmur3_x64_128": murmur, "directories": dirs}


def write() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "files.json").write_text(json.dumps(file_vectors(), indent=2) + "\n")
    (OUT / "dagpb.json").write_text(json.dumps(dagpb_vectors(), indent=2) + "\n")
    (OUT / "hamt.json").write_text(json.dumps(hamt_vectors(), indent=2) + "\n")


if __name__ == "__main__":
    write()
