"""Key proofs that bind node IDs to keys (spec/dht.md §Identity; S/Kademlia §4.2).

A node ID is sha256 of the node's x-only secp256k1 public key, so an ID cannot be chosen. A
contact is believed only after it has signed a fresh challenge: a query carries a 16-byte nonce
``c``; the response carries ``pk`` and a BIP-340 signature over ``sha256("infernet/dht/v2/challenge" || 0x00 || c ||
requester ID || responder address)``, the address being the one the requester sent the query to
(packed IP || port as 2 bytes; the query names it in ``to``). Binding the address means a proof
cannot be relayed: a node that forwards a challenge to another node gets a signature over the
other node's address, which the requester (who sent to the relay) refuses; and the other node
refuses to sign for an address that is not its own. A graceful LEAVE is signed
over ``sha256("infernet/dht/v1/leave" || 0x00 || recipient ID || ts as 8 bytes)``.
"""

from __future__ import annotations

import hashlib

from infernet_ref.nostr import Signer, schnorr_verify

_CHALLENGE = b"infernet/dht/v2/challenge\x00"
_LEAVE = b"infernet/dht/v1/leave\x00"


def challenge_digest(nonce: bytes, requester_id: bytes, ip: bytes, port: int) -> bytes:
    """The 32 bytes a responder at packed ``ip``:``port`` signs for ``nonce`` (spec/dht.md §Identity 2)."""
    return hashlib.sha256(_CHALLENGE + nonce + requester_id + ip + port.to_bytes(2, "big")).digest()


def leave_digest(recipient_id: bytes, ts: int) -> bytes:
    """The 32 bytes a leaving node signs for one recipient (spec/dht.md §Leave)."""
    return hashlib.sha256(_LEAVE + recipient_id + ts.to_bytes(8, "big")).digest()


class Prover:
    """Holds the node key and answers challenges. The BIP-340 keypair is computed once (a
    node signs a proof for every new contact, so this is on the hot path)."""

    __slots__ = ("_signer", "node_id", "public_key")

    def __init__(self, secret_key: bytes) -> None:
        self._signer = Signer(secret_key)
        self.public_key: bytes = self._signer.public_key
        self.node_id: bytes = hashlib.sha256(self.public_key).digest()

    def sign(self, digest: bytes, aux: bytes) -> bytes:
        """BIP-340 signature of a 32-byte digest with caller-supplied aux randomness."""
        return self._signer.sign(digest, aux)


def verify_proof(pk: bytes, sig: bytes, digest: bytes) -> bytes | None:
    """The node ID that ``pk`` proves with ``sig`` over ``digest``, or None (never raises)."""
    if not schnorr_verify(digest, pk, sig):
        return None
    return hashlib.sha256(pk).digest()
