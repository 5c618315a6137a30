"""NIP-19 bech32 entities: npub, nsec, note, nprofile, nevent, naddr (spec/nostr.md §NIP-19).

Bare entities carry 32 bytes. TLV entities carry ``type(1) length(1) value`` records: 0 special
(pubkey / event id / identifier), 1 relay (UTF-8), 2 author (32 bytes), 3 kind (32-bit big-endian).
Unknown TLV types are skipped; a known type with the wrong length, a missing special record, or a
truncated record is a :class:`Bech32Error`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from infernet_ref.nostr.bech32 import bech32_decode, bech32_encode
from infernet_ref.nostr.errors import Bech32Error, KeyFormatError
from infernet_ref.nostr.keys import as_key_bytes, check_secret_key

TLV_SPECIAL, TLV_RELAY, TLV_AUTHOR, TLV_KIND = 0, 1, 2, 3
_BARE = ("npub", "nsec", "note")


@dataclass(frozen=True, slots=True)
class ProfilePointer:
    """nprofile: a public key and relays where it may be found."""

    pubkey: bytes
    relays: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EventPointer:
    """nevent: an event id with optional relays, author and kind."""

    id: bytes
    relays: tuple[str, ...] = ()
    author: bytes | None = None
    kind: int | None = None


@dataclass(frozen=True, slots=True)
class AddressPointer:
    """naddr: an addressable event's coordinate (kind, pubkey, d-tag identifier)."""

    identifier: str
    pubkey: bytes
    kind: int
    relays: tuple[str, ...] = ()


class Nip19(NamedTuple):
    """Result of :func:`nip19_decode`: the prefix and its decoded value."""

    type: str
    data: bytes | ProfilePointer | EventPointer | AddressPointer


def npub_encode(pk: str | bytes) -> str:
    """Encode an x-only public key (hex or bytes) as ``npub1...`` (NIP-19)."""
    return bech32_encode("npub", as_key_bytes(pk, "public key"))


def nsec_encode(sk: str | bytes) -> str:
    """Encode a secret key as ``nsec1...`` (NIP-19)."""
    return bech32_encode("nsec", check_secret_key(sk))


def note_encode(event_id: str | bytes) -> str:
    """Encode an event id as ``note1...`` (NIP-19)."""
    return bech32_encode("note", as_key_bytes(event_id, "event id"))


def _tlv(records: list[tuple[int, bytes]]) -> bytes:
    out = bytearray()
    for typ, value in records:
        if len(value) > 255:
            raise KeyFormatError(f"TLV value of {len(value)} bytes exceeds 255")
        out += bytes((typ, len(value))) + value
    return bytes(out)


def _relays(relays: tuple[str, ...] | list[str]) -> list[tuple[int, bytes]]:
    return [(TLV_RELAY, r.encode("utf-8")) for r in relays]


def nprofile_encode(pk: str | bytes, relays: tuple[str, ...] | list[str] = ()) -> str:
    """Encode an nprofile TLV (NIP-19 §Shareable identifiers with extra metadata)."""
    return bech32_encode(
        "nprofile", _tlv([(TLV_SPECIAL, as_key_bytes(pk, "public key")), *_relays(relays)])
    )


def nevent_encode(
    event_id: str | bytes,
    relays: tuple[str, ...] | list[str] = (),
    author: str | bytes | None = None,
    kind: int | None = None,
) -> str:
    """Encode an nevent TLV (NIP-19)."""
    records = [(TLV_SPECIAL, as_key_bytes(event_id, "event id")), *_relays(relays)]
    if author is not None:
        records.append((TLV_AUTHOR, as_key_bytes(author, "author")))
    if kind is not None:
        records.append((TLV_KIND, kind.to_bytes(4, "big")))
    return bech32_encode("nevent", _tlv(records))


def naddr_encode(
    identifier: str, pk: str | bytes, kind: int, relays: tuple[str, ...] | list[str] = ()
) -> str:
    """Encode an naddr TLV (NIP-19)."""
    records = [(TLV_SPECIAL, identifier.encode("utf-8")), *_relays(relays)]
    records += [(TLV_AUTHOR, as_key_bytes(pk, "public key")), (TLV_KIND, kind.to_bytes(4, "big"))]
    return bech32_encode("naddr", _tlv(records))


def _parse_tlv(data: bytes) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {}
    i = 0
    while i < len(data):
        if i + 2 > len(data):
            raise Bech32Error("truncated TLV record header")
        typ, length = data[i], data[i + 1]
        value = data[i + 2 : i + 2 + length]
        if len(value) != length:
            raise Bech32Error(f"TLV record of type {typ} is truncated")
        out.setdefault(typ, []).append(value)
        i += 2 + length
    return out


def _one(tlv: dict[int, list[bytes]], typ: int, size: int | None, what: str) -> bytes | None:
    values = tlv.get(typ)
    if not values:
        return None
    if size is not None and len(values[0]) != size:
        raise Bech32Error(f"TLV {what} must be {size} bytes, got {len(values[0])}")
    return values[0]


def _relay_list(tlv: dict[int, list[bytes]]) -> tuple[str, ...]:
    try:
        return tuple(v.decode("utf-8") for v in tlv.get(TLV_RELAY, []))
    except UnicodeDecodeError as exc:
        raise Bech32Error("TLV relay is not UTF-8") from exc


def nip19_decode(text: str) -> Nip19:
    """Decode any NIP-19 entity; raise :class:`Bech32Error` on anything malformed or unknown."""
    hrp, data = bech32_decode(text)
    if hrp in _BARE:
        if len(data) != 32:
            raise Bech32Error(f"{hrp} must carry 32 bytes, got {len(data)}")
        if hrp == "nsec":
            try:
                check_secret_key(data)
            except KeyFormatError as exc:
                raise Bech32Error(f"nsec: {exc}") from exc
        return Nip19(hrp, data)
    if hrp not in ("nprofile", "nevent", "naddr"):
        raise Bech32Error(f"unknown NIP-19 prefix {hrp!r}")
    tlv = _parse_tlv(data)
    relays = _relay_list(tlv)
    author = _one(tlv, TLV_AUTHOR, 32, "author")
    raw_kind = _one(tlv, TLV_KIND, 4, "kind")
    kind = int.from_bytes(raw_kind, "big") if raw_kind is not None else None
    if hrp == "naddr":
        ident = _one(tlv, TLV_SPECIAL, None, "identifier")
        if ident is None or author is None or kind is None:
            raise Bech32Error("naddr needs identifier, author and kind records")
        try:
            return Nip19(hrp, AddressPointer(ident.decode("utf-8"), author, kind, relays))
        except UnicodeDecodeError as exc:
            raise Bech32Error("naddr identifier is not UTF-8") from exc
    special = _one(tlv, TLV_SPECIAL, 32, "pubkey" if hrp == "nprofile" else "event id")
    if special is None:
        raise Bech32Error(f"{hrp} lacks its type-0 record")
    if hrp == "nprofile":
        return Nip19(hrp, ProfilePointer(special, relays))
    return Nip19(hrp, EventPointer(special, relays, author, kind))
