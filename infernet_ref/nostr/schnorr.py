"""BIP-340 Schnorr signatures through libsecp256k1 (coincurve).

Why coincurve and not the ``secp256k1`` binding: BIP-340 signing takes 32 bytes of auxiliary
randomness; only a binding that passes them through can reproduce the official vectors byte for
byte (rows 1-3 use non-zero ``aux_rand``). coincurve forwards them to
``secp256k1_schnorrsig_sign32`` and verifies each signature after signing (a fault-attack guard).
"""

from __future__ import annotations

import os

from coincurve import PrivateKey, PublicKeyXOnly
from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT

from infernet_ref.nostr.errors import KeyFormatError
from infernet_ref.nostr.keys import check_secret_key

_CTX = GLOBAL_CONTEXT.ctx


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


class Signer:
    """A secret key parsed once: its BIP-340 keypair and x-only public key are computed here.

    :meth:`sign` makes the two libsecp256k1 calls coincurve's ``sign_schnorr`` makes
    (``schnorrsig_sign32`` with aux_rand, then ``schnorrsig_verify`` of the result as a guard
    against faults) without recomputing the keypair for every signature.
    """

    __slots__ = ("_keypair", "_xonly", "public_key")

    def __init__(self, sk: bytes | str) -> None:
        secret = check_secret_key(sk)
        self._keypair = ffi.new("secp256k1_keypair *")
        if not lib.secp256k1_keypair_create(_CTX, self._keypair, secret):
            raise KeyFormatError("secret key rejected by libsecp256k1")
        self._xonly = ffi.new("secp256k1_xonly_pubkey *")
        lib.secp256k1_keypair_xonly_pub(_CTX, self._xonly, ffi.NULL, self._keypair)
        out = ffi.new("unsigned char[32]")
        lib.secp256k1_xonly_pubkey_serialize(_CTX, out, self._xonly)
        #: The 32-byte x-only public key.
        self.public_key = bytes(ffi.buffer(out, 32))

    def sign(self, msg: bytes, aux: bytes | None = None) -> bytes:
        """BIP-340 signature of the 32-byte ``msg``; ``aux`` defaults to 32 fresh random bytes."""
        if len(msg) != 32:
            raise KeyFormatError("BIP-340 signing here takes a 32-byte message (a hash)")
        aux = os.urandom(32) if aux is None else aux
        if len(aux) != 32:
            raise KeyFormatError("aux_rand must be 32 bytes")
        sig = ffi.new("unsigned char[64]")
        if not lib.secp256k1_schnorrsig_sign32(_CTX, sig, bytes(msg), self._keypair, bytes(aux)):
            raise KeyFormatError("libsecp256k1 refused to sign")
        if not lib.secp256k1_schnorrsig_verify(_CTX, sig, bytes(msg), 32, self._xonly):
            raise RuntimeError("fresh signature does not verify (hardware or memory fault?)")
        return bytes(ffi.buffer(sig, 64))
