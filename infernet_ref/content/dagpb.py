"""dag-pb codec (IPLD dag-pb spec, "Strictness" and "Canonical form").

spec/content.md §dag-pb. A node is a protobuf ``PBNode { repeated PBLink Links = 2; optional
bytes Data = 1; }`` serialized with every link *before* Data (canonical order); a link is
``PBLink { optional bytes Hash = 1; optional string Name = 2; optional uint64 Tsize = 3; }`` in
field order, Hash required. The decoder is strict like the reference JS codec: unknown fields,
wrong wire types, a second Data, Links on both sides of Data, out-of-order link fields,
truncated or non-minimal varints, invalid UTF-8 names and invalid CIDs are all
:class:`DagPbError`. A Data field *before* all links is accepted (the "data-first" order some
encoders use for HAMT shards); such a block is valid but not canonical. Encoding sorts links by the bytes of their names (stable), as the
reference encoders do, so that ``encode(decode(b)) == b`` for every canonical ``b``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from infernet_ref.content.cid import CID, cid_from_bytes
from infernet_ref.content.errors import CidError, DagPbError, VarintError
from infernet_ref.content.varint import MAX_PROTOBUF_VARINT_BYTES, decode_uvarint, encode_uvarint

MAX_NODE_SIZE = 2 * 1024 * 1024  # spec/content.md §Limits: no block over 2 MiB
MAX_LINKS = 65536

# Protobuf tags: (field << 3) | wire type (2 = length-delimited, 0 = varint).
TAG_NODE_DATA = 0x0A
TAG_NODE_LINK = 0x12
TAG_LINK_HASH = 0x0A
TAG_LINK_NAME = 0x12
TAG_LINK_TSIZE = 0x18


@dataclass(frozen=True, slots=True)
class PBLink:
    """One dag-pb link: target CID, optional name, optional cumulative size."""

    cid: CID
    name: str | None = None
    tsize: int | None = None


@dataclass(frozen=True, slots=True)
class PBNode:
    """A dag-pb node: links (canonical order) and optional data."""

    links: tuple[PBLink, ...] = ()
    data: bytes | None = None


def _name_key(link: PBLink) -> bytes:
    return link.name.encode("utf-8") if link.name is not None else b""


def encode_link(link: PBLink) -> bytes:
    """Serialize one PBLink (fields in order Hash, Name, Tsize)."""
    h = link.cid.to_bytes()
    out = bytearray((TAG_LINK_HASH,))
    out += encode_uvarint(len(h))
    out += h
    if link.name is not None:
        nb = link.name.encode("utf-8")
        out.append(TAG_LINK_NAME)
        out += encode_uvarint(len(nb))
        out += nb
    if link.tsize is not None:
        out.append(TAG_LINK_TSIZE)
        out += encode_uvarint(link.tsize)
    return bytes(out)


def encode_node(
    node: PBNode | None = None, *, links: Sequence[PBLink] = (), data: bytes | None = None
) -> bytes:
    """Serialize a node in canonical form: links sorted by name bytes, then Data."""
    if node is not None:
        links, data = node.links, node.data
    out = bytearray()
    for link in sorted(links, key=_name_key):
        lb = encode_link(link)
        out.append(TAG_NODE_LINK)
        out += encode_uvarint(len(lb))
        out += lb
    if data is not None:
        out.append(TAG_NODE_DATA)
        out += encode_uvarint(len(data))
        out += data
    return bytes(out)


def _read_bytes(buf: bytes, pos: int, end: int, what: str) -> tuple[bytes, int]:
    length, pos = decode_uvarint(buf, pos, max_bytes=MAX_PROTOBUF_VARINT_BYTES)
    if pos + length > end:
        raise DagPbError(f"{what} length {length} runs past the end of its message")
    return buf[pos : pos + length], pos + length


def decode_link(buf: bytes) -> PBLink:
    """Parse one PBLink strictly."""
    pos, end = 0, len(buf)
    cid: CID | None = None
    name: str | None = None
    tsize: int | None = None
    last = 0
    while pos < end:
        tag, pos = decode_uvarint(buf, pos, max_bytes=MAX_PROTOBUF_VARINT_BYTES)
        field = tag >> 3
        if field <= last:
            raise DagPbError("PBLink fields out of order or duplicated")
        last = field
        if tag == TAG_LINK_HASH:
            raw, pos = _read_bytes(buf, pos, end, "PBLink.Hash")
            try:
                cid = cid_from_bytes(raw)
            except CidError as exc:
                raise DagPbError(f"PBLink.Hash is not a valid CID: {exc}") from None
        elif tag == TAG_LINK_NAME:
            raw, pos = _read_bytes(buf, pos, end, "PBLink.Name")
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DagPbError("PBLink.Name is not valid UTF-8") from None
        elif tag == TAG_LINK_TSIZE:
            tsize, pos = decode_uvarint(buf, pos, max_bytes=MAX_PROTOBUF_VARINT_BYTES)
        else:
            raise DagPbError(f"unexpected PBLink field tag 0x{tag:x}")
    if cid is None:
        raise DagPbError("PBLink without Hash")
    return PBLink(cid, name, tsize)


def decode_node(block: bytes | bytearray | memoryview) -> PBNode:
    """Parse a dag-pb block strictly (spec/content.md §dag-pb); raise :class:`DagPbError`."""
    buf = bytes(block)
    if len(buf) > MAX_NODE_SIZE:
        raise DagPbError(f"dag-pb node of {len(buf)} bytes exceeds {MAX_NODE_SIZE}")
    pos, end = 0, len(buf)
    links: list[PBLink] = []
    data: bytes | None = None
    links_before_data = False
    try:
        while pos < end:
            tag, pos = decode_uvarint(buf, pos, max_bytes=MAX_PROTOBUF_VARINT_BYTES)
            if tag == TAG_NODE_LINK:
                if links_before_data:
                    raise DagPbError("PBNode Links after Data after Links (interleaved sections)")
                raw, pos = _read_bytes(buf, pos, end, "PBNode.Links")
                if len(links) >= MAX_LINKS:
                    raise DagPbError(f"PBNode has more than {MAX_LINKS} links")
                links.append(decode_link(raw))
            elif tag == TAG_NODE_DATA:
                if data is not None:
                    raise DagPbError("PBNode has a second Data field")
                data, pos = _read_bytes(buf, pos, end, "PBNode.Data")
                links_before_data = bool(links)
            else:
                raise DagPbError(f"unexpected PBNode field tag 0x{tag:x}")
    except VarintError as exc:
        raise DagPbError(f"malformed dag-pb varint: {exc}") from None
    return PBNode(tuple(links), data)
