"""Content addressing and transfer (spec/content.md).

CIDs identical to IPFS's ``unixfs-v1-2025`` profile, a streaming DAG builder, an on-disk block
store with pinning and GC, CAR v1 import/export, the block exchange protocol over the WebSocket
layer, provider records in the DHT, byte-range and safetensors tensor fetch.
"""

from infernet_ref.content.builder import (
    DagEntry,
    FileBuilder,
    build_path,
    cid_for_bytes,
    cid_for_stream,
)
from infernet_ref.content.cid import CID, Codec, parse_cid

__all__ = [
    "CID",
    "Codec",
    "DagEntry",
    "FileBuilder",
    "build_path",
    "cid_for_bytes",
    "cid_for_stream",
    "parse_cid",
]
