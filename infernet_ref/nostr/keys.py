"""secp256k1 keys (spec/nostr.md §Keys; BIP-340 §Public Key Generation).

A secret key is 32 bytes, an integer in [1, n-1]; the public key is its BIP-340 x-only encoding
(32 bytes). Hex forms are lower-case (NIP-01). Key files hold one ``nsec1...`` line, are created
with mode 0600 and are refused when group or other users may read them.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from coincurve import PrivateKey, PublicKeyXOnly

from infernet_ref.nostr.errors import Bech32Error, KeyFileError, KeyFormatError

#: Order of the secp256k1 group (SEC 2 §2.4.1).
CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HEX64 = re.compile(r"[0-9a-f]{64}")


def parse_hex(value: str, nbytes: int, what: str) -> bytes:
    """Decode ``value`` as exactly ``nbytes`` of lower-case hex (NIP-01), else :class:`KeyFormatError`."""
    if not isinstance(value, str):
        raise KeyFormatError(f"{what} must be a hex string, not {type(value).__name__}")
    if len(value) != 2 * nbytes:
        raise KeyFormatError(f"{what} must be {2 * nbytes} hex characters, got {len(value)}")
    if not re.fullmatch(r"[0-9a-f]*", value):
        raise KeyFormatError(f"{what} must be lower-case hex")
    return bytes.fromhex(value)


def as_key_bytes(value: bytes | bytearray | str, what: str) -> bytes:
    """Accept 32 raw bytes or 64 lower-case hex characters."""
    if isinstance(value, bytes | bytearray):
        if len(value) != 32:
            raise KeyFormatError(f"{what} must be 32 bytes, got {len(value)}")
        return bytes(value)
    return parse_hex(value, 32, what)


def check_secret_key(sk: bytes | bytearray | str) -> bytes:
    """Return ``sk`` as 32 bytes after checking 1 <= sk < n (BIP-340 §Default Signing)."""
    raw = as_key_bytes(sk, "secret key")
    if not 0 < int.from_bytes(raw, "big") < CURVE_ORDER:
        raise KeyFormatError("secret key must be an integer in [1, n-1]")
    return raw


def generate_secret_key() -> bytes:
    """Return a fresh secret key from the OS CSPRNG (rejection-sampled into [1, n-1])."""
    while True:
        raw = os.urandom(32)
        if 0 < int.from_bytes(raw, "big") < CURVE_ORDER:
            return raw


def public_key(sk: bytes | bytearray | str) -> bytes:
    """Return the 32-byte x-only public key of ``sk`` (BIP-340 §Public Key Generation)."""
    return bytes(PrivateKey(check_secret_key(sk)).public_key_xonly.format())


def check_public_key(pk: bytes | bytearray | str) -> bytes:
    """Return ``pk`` as 32 bytes after checking it is the x coordinate of a curve point (BIP-340 lift_x)."""
    raw = as_key_bytes(pk, "public key")
    try:
        PublicKeyXOnly(raw)
    except ValueError as exc:
        raise KeyFormatError("public key is not the x coordinate of a secp256k1 point") from exc
    return raw


def save_key_file(path: str | os.PathLike[str], sk: bytes) -> None:
    """Write ``sk`` as an ``nsec1...`` line to a new file created with mode 0600 (no overwrite)."""
    from infernet_ref.nostr.nip19 import nsec_encode  # noqa: PLC0415  (nip19 imports keys)

    line = (nsec_encode(check_secret_key(sk)) + "\n").encode()
    try:
        fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise KeyFileError(f"{path} exists; refusing to overwrite a key file") from exc
    with os.fdopen(fd, "wb") as fh:
        fh.write(line)


def load_key_file(path: str | os.PathLike[str]) -> bytes:
    """Read a secret key (``nsec1...`` or 64 hex characters); refuse files other users can read."""
    from infernet_ref.nostr.nip19 import nip19_decode  # noqa: PLC0415

    p = Path(path)
    try:
        st = p.stat()
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(
                f"{p} has mode {stat.S_IMODE(st.st_mode):04o}; a secret key file must not be "
                "accessible by group or others (chmod 600)"
            )
        if st.st_size > 4096:
            raise KeyFileError(f"{p} is {st.st_size} bytes; not a key file")
        text = p.read_text("ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read key file {p}: {exc}") from exc
    if text.startswith("nsec1"):
        try:
            _kind, value = nip19_decode(text)
        except Bech32Error as exc:
            raise KeyFileError(f"{p} holds a malformed nsec: {exc}") from exc
        assert isinstance(value, bytes)
        return value
    try:
        return check_secret_key(text)
    except KeyFormatError as exc:
        raise KeyFileError(f"{p} holds neither an nsec nor a 64-character hex secret key") from exc
