"""UnixFS v1 ``Data`` messages (IPFS UnixFS spec, "Data Format").

spec/content.md §UnixFS. The protobuf is
``Data { DataType Type = 1; bytes Data = 2; uint64 filesize = 3; repeated uint64 blocksizes = 4;
uint64 hashType = 5; uint64 fanout = 6; uint32 mode = 7; UnixTime mtime = 8; }``.
Encoding writes fields in number order and ``blocksizes`` unpacked, exactly like the reference
encoders (so CIDs match). ``filesize`` is written for File and Raw nodes only, as
``len(Data) + sum(blocksizes)``. Decoding accepts fields in any order (protobuf semantics) but
rejects wrong wire types, unknown types, duplicated scalars, and inconsistent file sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from infernet_ref.content.errors import UnixFsError, VarintError
from infernet_ref.content.varint import MAX_PROTOBUF_VARINT_BYTES, decode_uvarint, encode_uvarint

MAX_BLOCKSIZES = 65536


class DataType(IntEnum):
    """UnixFS ``Data.DataType`` (UnixFS spec §Data Format)."""

    RAW = 0
    DIRECTORY = 1
    FILE = 2
    METADATA = 3
    SYMLINK = 4
    HAMT_SHARD = 5


@dataclass(frozen=True, slots=True)
class UnixFSData:
    """A decoded UnixFS ``Data`` message (mtime is kept as raw bytes, unused by the profile)."""

    type: DataType
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: tuple[int, ...] = ()
    hash_type: int | None = None
    fanout: int | None = None
    mode: int | None = None
    mtime: bytes | None = None

    def file_size(self) -> int:
        """Bytes of file content under this node: ``len(data) + sum(blocksizes)``."""
        return (len(self.data) if self.data else 0) + sum(self.blocksizes)


def _varint_field(field: int, value: int) -> bytes:
    return encode_uvarint(field << 3) + encode_uvarint(value)


def encode_unixfs(msg: UnixFSData) -> bytes:
    """Serialize a UnixFS Data message in field order (as the reference encoders do)."""
    out = bytearray(_varint_field(1, int(msg.type)))
    if msg.data:
        out += b"\x12" + encode_uvarint(len(msg.data)) + msg.data
    if msg.type in (DataType.FILE, DataType.RAW):
        out += _varint_field(3, msg.file_size())
    for size in msg.blocksizes:
        out += _varint_field(4, size)
    if msg.hash_type is not None:
        out += _varint_field(5, msg.hash_type)
    if msg.fanout is not None:
        out += _varint_field(6, msg.fanout)
    if msg.mode is not None:
        out += _varint_field(7, msg.mode)
    if msg.mtime is not None:
        out += b"\x42" + encode_uvarint(len(msg.mtime)) + msg.mtime
    return bytes(out)


def file_node_data(blocksizes: list[int] | tuple[int, ...]) -> bytes:
    """The Data of an intermediate File node with the given child sizes (hot path)."""
    return encode_unixfs(UnixFSData(DataType.FILE, blocksizes=tuple(blocksizes)))


DIRECTORY_DATA = b"\x08\x01"  # encode_unixfs(UnixFSData(DataType.DIRECTORY))


def decode_unixfs(buf: bytes) -> UnixFSData:
    """Parse a UnixFS Data message; raise :class:`UnixFsError` on anything malformed."""
    pos, end = 0, len(buf)
    fields: dict[int, int | bytes] = {}
    blocksizes: list[int] = []
    try:
        while pos < end:
            tag, pos = decode_uvarint(buf, pos, max_bytes=MAX_PROTOBUF_VARINT_BYTES)
            field, wire = tag >> 3, tag & 7
            if field in (2, 8) and wire == 2:
                length, pos = decode_uvarint(buf, pos, max_bytes=MAX_PROTOBUF_VARINT_BYTES)
                if pos + length > end:
                    raise UnixFsError("UnixFS length-delimited field runs past the end")
                value: int | bytes = buf[pos : pos + length]
                pos += length
            elif field in (1, 3, 4, 5, 6, 7) and wire == 0:
                value, pos = decode_uvarint(buf, pos, max_bytes=MAX_PROTOBUF_VARINT_BYTES)
            else:
                raise UnixFsError(f"unexpected UnixFS field {field} with wire type {wire}")
            if field == 4:
                if len(blocksizes) >= MAX_BLOCKSIZES:
                    raise UnixFsError("too many UnixFS blocksizes")
                blocksizes.append(int(value))
            elif field in fields:
                raise UnixFsError(f"UnixFS field {field} repeated")
            else:
                fields[field] = value
    except VarintError as exc:
        raise UnixFsError(f"malformed UnixFS varint: {exc}") from None
    if 1 not in fields:
        raise UnixFsError("UnixFS Data without Type")
    try:
        dtype = DataType(int(fields[1]))
    except ValueError:
        raise UnixFsError(f"unknown UnixFS type {fields[1]!r}") from None
    msg = UnixFSData(
        type=dtype,
        data=_bytes_or_none(fields.get(2)),
        filesize=_int_or_none(fields.get(3)),
        blocksizes=tuple(blocksizes),
        hash_type=_int_or_none(fields.get(5)),
        fanout=_int_or_none(fields.get(6)),
        mode=_int_or_none(fields.get(7)),
        mtime=_bytes_or_none(fields.get(8)),
    )
    if (
        dtype in (DataType.FILE, DataType.RAW)
        and msg.filesize is not None
        and msg.filesize != msg.file_size()
    ):
        raise UnixFsError(f"UnixFS filesize {msg.filesize} != data + blocksizes {msg.file_size()}")
    return msg


def _int_or_none(v: int | bytes | None) -> int | None:
    return v if isinstance(v, int) else None


def _bytes_or_none(v: int | bytes | None) -> bytes | None:
    return bytes(v) if isinstance(v, bytes) else None
