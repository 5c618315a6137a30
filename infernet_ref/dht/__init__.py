"""Kademlia DHT over UDP with identity-bound IDs and signed NOSTR values (spec/dht.md).

``DHTNode`` is the asyncio API (notes/CONTRACTS.md §DHT API); ``DHTCore`` the sans-I/O core;
``records`` holds the key derivations and record builders.
"""

from infernet_ref.dht.node import DHTNode, NodeContact
from infernet_ref.dht.ops import LookupResult, PutResult
from infernet_ref.dht.protocol import DHTConfig, DHTCore
from infernet_ref.dht.records import (
    content_provider_key,
    node_id_of,
    node_record_key,
    provider_key,
)
from infernet_ref.dht.routing import Contact

__all__ = [
    "Contact",
    "DHTConfig",
    "DHTCore",
    "DHTNode",
    "LookupResult",
    "NodeContact",
    "PutResult",
    "content_provider_key",
    "node_id_of",
    "node_record_key",
    "provider_key",
]
