"""Content addressing and transfer (spec/content.md).

CIDs identical to IPFS's ``unixfs-v1-2025`` profile, a streaming DAG builder (flat and
HAMT-sharded directories), an on-disk block
store with pinning and GC, CAR v1 import/export, the block exchange protocol over the WebSocket
layer, provider records in the DHT, byte-range and safetensors tensor fetch.
"""

from infernet_ref.content.api import add_path, fetch, read_range
from infernet_ref.content.builder import (
    DagEntry,
    FileBuilder,
    build_path,
    cid_for_bytes,
    cid_for_stream,
)
from infernet_ref.content.cid import CID, Codec, parse_cid
from infernet_ref.content.exchange import ContentServer, ExchangeClient, serve_content
from infernet_ref.content.reader import directory_entries, export_to_path, resolve_path
from infernet_ref.content.safetensors_fetch import (
    fetch_tensors,
    layer_tensor_names,
    tensor_locations,
)
from infernet_ref.content.store import BlockStore

__all__ = [
    "CID",
    "BlockStore",
    "Codec",
    "ContentServer",
    "DagEntry",
    "ExchangeClient",
    "FileBuilder",
    "add_path",
    "build_path",
    "cid_for_bytes",
    "cid_for_stream",
    "directory_entries",
    "export_to_path",
    "fetch",
    "fetch_tensors",
    "layer_tensor_names",
    "parse_cid",
    "read_range",
    "resolve_path",
    "serve_content",
    "tensor_locations",
]
