"""BIP-340 Schnorr signatures through libsecp256k1 (coincurve).

Why coincurve and not the ``secp256k1`` binding: BIP-340 signing takes 32 bytes of auxiliary
randomness; only a binding that passes them through can reproduce the official vectors byte for
byte (rows 1-3 use non-zero ``aux_rand``). coincurve forwards them to
``secp256k1_schnorrsig_sign32`` and verifies each signature after signing (a fault-attack guard).
"""

from __future__ import annotations

import os

from coincurve import PrivateKey, PublicKeyXOnly

from infernet_ref.nostr.errors import KeyFormatError
from infernet_ref.nostr.keys import check_secret_key


def schnorr_sign(msg: bytes, sk: bytes | PrivateKey, aux: bytes | None = None) -> bytes:
    """Sign the 32-byte ``msg`` (BIP-340 §Default Signing); ``aux`` defaults to 32 fresh random bytes."""
    if not isinstance(msg, bytes | bytearray) or len(msg) != 32:
        raise KeyFormatError("BIP-340 signing here takes a 32-byte message (a hash)")
    if aux is None:
        aux = os.urandom(32)
    elif not isinstance(aux, bytes | bytearray) or len(aux) != 32:
        raise KeyFormatError("aux_rand must be 32 bytes")
    key = sk if isinstance(sk, PrivateKey) else PrivateKey(check_secret_key(sk))
    return bytes(key.sign_schnorr(bytes(msg), bytes(aux)))


def schnorr_verify(msg: bytes, pk: bytes, sig: bytes) -> bool:
    """Verify ``sig`` over ``msg`` under x-only ``pk`` (BIP-340 §Verification); never raises."""
    values: tuple[object, ...] = (msg, pk, sig)
    if not all(isinstance(v, bytes | bytearray) for v in values) or len(sig) != 64 or len(pk) != 32:
        return False
    try:
        return bool(PublicKeyXOnly(bytes(pk)).verify(bytes(sig), bytes(msg)))
    except ValueError:  # pk is not on the curve
        return False
