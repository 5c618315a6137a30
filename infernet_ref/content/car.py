"""CAR v1 archives (IPLD CARv1 spec): import into and export from a block store.

spec/content.md §CAR. Layout: ``varint(len(header)) || header || section*`` where the header
is the DAG-CBOR map ``{"roots": [CID...], "version": 1}`` (CIDs as CBOR tag 42 over
``0x00 || binary CID``) and each section is ``varint(len(cid) + len(block)) || cid || block``.
Export writes the DAG in depth-first pre-order from the root (as ``ipfs dag export``). Import
verifies every block against its CID before storing it; a bad archive raises :class:`CarError`
and leaves only verified blocks behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import cbor2

from infernet_ref.content.cid import CID, cid_from_bytes, cid_from_bytes_prefix
from infernet_ref.content.dag import MAX_BLOCK_SIZE, walk
from infernet_ref.content.errors import BlockNotFound, CarError, CidError, ContentError, VarintError
from infernet_ref.content.store import BlockStore
from infernet_ref.content.varint import decode_uvarint, encode_uvarint

MAX_HEADER_SIZE = 64 * 1024
MAX_SECTION_SIZE = MAX_BLOCK_SIZE + 64
CID_TAG = 42


def _cbor_head(major: int, n: int) -> bytes:
    if n < 24:
        return bytes((major << 5 | n,))
    if n < 0x100:
        return bytes((major << 5 | 24, n))
    if n < 0x10000:
        return bytes((major << 5 | 25,)) + n.to_bytes(2, "big")
    return bytes((major << 5 | 26,)) + n.to_bytes(4, "big")


def encode_header(roots: list[CID]) -> bytes:
    """DAG-CBOR ``{"roots": [...], "version": 1}`` (keys in DAG-CBOR length-first order)."""
    out = bytearray(b"\xa2\x65roots")
    out += _cbor_head(4, len(roots))
    for r in roots:
        raw = b"\x00" + r.to_bytes()
        out += b"\xd8\x2a" + _cbor_head(2, len(raw)) + raw
    out += b"\x67version\x01"
    return bytes(out)


def decode_header(raw: bytes) -> list[CID]:
    """Parse and check a CARv1 header; return its roots."""
    try:
        obj = cbor2.loads(raw)
    except Exception as exc:  # cbor2 raises assorted types on hostile input
        raise CarError(f"CAR header is not valid CBOR: {exc}") from None
    if not isinstance(obj, dict) or set(obj) != {"roots", "version"}:
        raise CarError("CAR header must be a map with exactly 'roots' and 'version'")
    if obj["version"] != 1:
        raise CarError(f"unsupported CAR version {obj['version']!r}")
    roots = obj["roots"]
    if not isinstance(roots, list) or not roots:
        raise CarError("CAR header roots must be a non-empty list")
    out = []
    for r in roots:
        if not isinstance(r, cbor2.CBORTag) or r.tag != CID_TAG or not isinstance(r.value, bytes):
            raise CarError("CAR root is not a tag-42 CID")
        if r.value[:1] != b"\x00":
            raise CarError("tag-42 CID must start with the 0x00 multibase prefix")
        try:
            out.append(cid_from_bytes(r.value[1:]))
        except CidError as exc:
            raise CarError(f"CAR root: {exc}") from None
    return out


def _read_varint(f: BinaryIO) -> int | None:
    raw = bytearray()
    while True:
        b = f.read(1)
        if not b:
            if raw:
                raise CarError("truncated varint in CAR")
            return None
        raw += b
        if b[0] < 0x80 or len(raw) >= 9:
            break
    try:
        return decode_uvarint(bytes(raw))[0]
    except VarintError as exc:
        raise CarError(f"bad CAR varint: {exc}") from None


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise CarError(f"truncated CAR {what}: wanted {n} bytes, got {len(data)}")
    return data


def read_car(f: BinaryIO) -> tuple[list[CID], Iterator[tuple[CID, bytes]]]:
    """Parse the header; return the roots and an iterator of verified ``(cid, block)``."""
    hlen = _read_varint(f)
    if hlen is None or hlen == 0 or hlen > MAX_HEADER_SIZE:
        raise CarError(f"CAR header length {hlen} out of range")
    roots = decode_header(_read_exact(f, hlen, "header"))

    def sections() -> Iterator[tuple[CID, bytes]]:
        while (n := _read_varint(f)) is not None:
            if n == 0 or n > MAX_SECTION_SIZE:
                raise CarError(f"CAR section length {n} out of range")
            sec = _read_exact(f, n, "section")
            try:
                cid, off = cid_from_bytes_prefix(sec)
            except CidError as exc:
                raise CarError(f"CAR section CID: {exc}") from None
            block = sec[off:]
            if not cid.matches(block):
                raise CarError(f"CAR block does not hash to {cid}")
            yield cid, block

    return roots, sections()


def write_car(f: BinaryIO, roots: list[CID], blocks: Iterator[tuple[CID, bytes]]) -> int:
    """Write a CARv1; return the number of blocks written."""
    header = encode_header(roots)
    f.write(encode_uvarint(len(header)) + header)
    n = 0
    for cid, block in blocks:
        cb = cid.to_bytes()
        f.write(encode_uvarint(len(cb) + len(block)))
        f.write(cb)
        f.write(block)
        n += 1
    return n


def export_car(store: BlockStore, root: CID, f: BinaryIO) -> int:
    """Export the complete DAG under ``root``; raise :class:`BlockNotFound` if a block is missing."""

    def blocks() -> Iterator[tuple[CID, bytes]]:
        for cid, block in walk(root, store.get_or_none):
            if block is None:
                raise BlockNotFound(str(cid))
            yield cid, block

    return write_car(f, [root.to_v1()], blocks())


def import_car(store: BlockStore, f: BinaryIO) -> tuple[list[CID], int]:
    """Import every block (each verified); return ``(roots, blocks_imported)``."""
    roots, sections = read_car(f)
    n = 0
    try:
        for cid, block in sections:
            store.put(cid, block, verify=False)  # read_car verified it
            n += 1
    except CarError:
        raise
    except ContentError as exc:
        raise CarError(f"CAR import failed: {exc}") from None
    return roots, n
