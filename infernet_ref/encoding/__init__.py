"""Canonical encoders: JSON with NIP-01 escaping and deterministic CBOR (RFC 8949 §4.2).

The rules are in ``spec/encoding.md``; these functions are their executable form.
"""

from infernet_ref.encoding.canonical_cbor import MAX_CBOR_SIZE, cbor_decode, cbor_encode, json_view
from infernet_ref.encoding.canonical_json import (
    MAX_JSON_DEPTH,
    MAX_JSON_SIZE,
    canonical_json,
    json_decode,
    nip01_string,
)

__all__ = [
    "MAX_CBOR_SIZE",
    "MAX_JSON_DEPTH",
    "MAX_JSON_SIZE",
    "canonical_json",
    "cbor_decode",
    "cbor_encode",
    "json_decode",
    "json_view",
    "nip01_string",
]
