"""Wire format of the content exchange (spec/content.md §7): text envelopes and block frames.

Text messages are job envelopes of canonical JSON validated against
``content-messages.schema.json``; a block frame is ``uvarint(len(header)) || header || block``
with a canonical-JSON header valid against ``content-block-header.schema.json``. Decoders raise
:class:`ExchangeError` carrying the ``content.error`` code (4400 malformed, 4413 over a limit,
4415 unknown type) on anything a peer could get wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from infernet_ref.content.cid import CID, parse_cid
from infernet_ref.content.dag import MAX_BLOCK_SIZE
from infernet_ref.content.errors import ContentError, ExchangeError, VarintError
from infernet_ref.content.varint import decode_uvarint, encode_uvarint
from infernet_ref.encoding import canonical_json, json_decode
from infernet_ref.errors import InfernetError
from infernet_ref.specs import validate_data

PROTOCOL_VERSION = 1
MAX_TEXT_MESSAGE = 256 * 1024  # 1024 entries of ~150 bytes fit comfortably
MAX_HEADER = 1024
MAX_ENTRIES_PER_MESSAGE = 1024
SCHEMA = "content-messages"
HEADER_SCHEMA = "content-block-header"
_CID_RE = re.compile(r"(b[a-z2-7]+|Qm[1-9A-HJ-NP-Za-km-z]{44})")


class ErrorCode(IntEnum):
    """``content.error`` codes (spec/content.md §7.6)."""

    MALFORMED = 4400
    TOO_LARGE = 4413
    UNSUPPORTED = 4415
    INTERNAL = 4500


class MsgType:
    WANT = "content.want"
    CANCEL = "content.cancel"
    HAVE = "content.have"
    DONT_HAVE = "content.dont_have"
    ERROR = "content.error"


KNOWN_TYPES = frozenset(
    {MsgType.WANT, MsgType.CANCEL, MsgType.HAVE, MsgType.DONT_HAVE, MsgType.ERROR}
)


@dataclass(frozen=True, slots=True)
class WantEntry:
    cid: CID
    priority: int = 1
    want_block: bool = True
    send_dont_have: bool = True


@dataclass(frozen=True, slots=True)
class TextMessage:
    """A decoded, schema-valid text message."""

    type: str
    id: str
    body: dict[str, Any]


def encode_message(msg_type: str, msg_id: str, body: dict[str, Any]) -> str:
    """Canonical-JSON envelope ``{v, type, id, body}``."""
    return canonical_json(
        {"v": PROTOCOL_VERSION, "type": msg_type, "id": msg_id, "body": body}
    ).decode()


def encode_want(msg_id: str, entries: list[WantEntry]) -> str:
    if not 1 <= len(entries) <= MAX_ENTRIES_PER_MESSAGE:
        raise ExchangeError(
            f"a want message carries 1..{MAX_ENTRIES_PER_MESSAGE} entries (local error)"
        )
    out = []
    for e in entries:
        item: dict[str, Any] = {"cid": str(e.cid), "priority": e.priority}
        if not e.want_block:
            item["want"] = "have"
        if not e.send_dont_have:
            item["send_dont_have"] = False
        out.append(item)
    return encode_message(MsgType.WANT, msg_id, {"entries": out})


def encode_cids(msg_type: str, msg_id: str, cids: list[CID]) -> str:
    return encode_message(msg_type, msg_id, {"cids": [str(c) for c in cids]})


def encode_error(msg_id: str, code: ErrorCode, message: str, *, fatal: bool) -> str:
    return encode_message(
        MsgType.ERROR, msg_id, {"code": int(code), "message": message[:1024], "fatal": fatal}
    )


def decode_message(text: str | bytes) -> TextMessage:
    """Decode and validate one text message; raise :class:`ExchangeError` with its wire code."""
    if len(text) > MAX_TEXT_MESSAGE:
        raise ExchangeError(
            f"text message of {len(text)} bytes over {MAX_TEXT_MESSAGE}", ErrorCode.TOO_LARGE
        )
    try:
        obj = json_decode(
            text.encode() if isinstance(text, str) else text, max_size=MAX_TEXT_MESSAGE
        )
    except InfernetError as exc:
        raise ExchangeError(f"malformed JSON: {exc}", ErrorCode.MALFORMED) from None
    if (
        isinstance(obj, dict)
        and isinstance(obj.get("type"), str)
        and obj["type"] not in KNOWN_TYPES
    ):
        raise ExchangeError(f"unsupported message type {obj['type'][:64]!r}", ErrorCode.UNSUPPORTED)
    if isinstance(obj, dict) and isinstance(obj.get("body"), dict):
        for key in ("entries", "cids"):
            v = obj["body"].get(key)
            if isinstance(v, list) and len(v) > MAX_ENTRIES_PER_MESSAGE:
                raise ExchangeError(
                    f"{len(v)} {key} in one message (max 1024)", ErrorCode.TOO_LARGE
                )
    try:
        validate_data(obj, SCHEMA)
    except InfernetError as exc:
        raise ExchangeError(f"invalid message: {exc}", ErrorCode.MALFORMED) from None
    return TextMessage(obj["type"], obj["id"], obj["body"])


def want_entries(body: dict[str, Any]) -> list[WantEntry]:
    """The entries of a validated ``content.want`` body."""
    try:
        return [
            WantEntry(
                parse_cid(e["cid"]).to_v1(),
                int(e.get("priority", 1)),
                e.get("want", "block") == "block",
                bool(e.get("send_dont_have", True)),
            )
            for e in body["entries"]
        ]
    except ContentError as exc:
        raise ExchangeError(f"bad CID in want-list: {exc}", ErrorCode.MALFORMED) from None


def body_cids(body: dict[str, Any]) -> list[CID]:
    try:
        return [parse_cid(c).to_v1() for c in body["cids"]]
    except ContentError as exc:
        raise ExchangeError(f"bad CID: {exc}", ErrorCode.MALFORMED) from None


def block_frame_prefix(cid: CID, size: int) -> bytes:
    """What precedes a block of ``size`` bytes in its frame: ``uvarint(len(header)) || header``."""
    header = canonical_json({"cid": str(cid), "size": size})
    return encode_uvarint(len(header)) + header


def encode_block_frame(cid: CID, block: bytes | bytearray | memoryview) -> bytes:
    """One block frame: ``uvarint(len(header)) || header || block``."""
    return b"".join((block_frame_prefix(cid, len(block)), block))


def check_block_header(header: object) -> CID:
    """Hot-path equivalent of validating against ``content-block-header.schema.json``.

    Exactly the schema's rules (tests check the equivalence with hypothesis): an object with
    exactly ``cid`` (a Cid string, parsed) and ``size`` (integer in [0, 2 MiB]).
    """
    if not isinstance(header, dict) or header.keys() != {"cid", "size"}:
        raise ExchangeError("block header must have exactly 'cid' and 'size'", ErrorCode.MALFORMED)
    size, text = header["size"], header["cid"]
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= MAX_BLOCK_SIZE:
        raise ExchangeError("block header 'size' out of range", ErrorCode.MALFORMED)
    if not isinstance(text, str) or not _CID_RE.fullmatch(text) or not 8 <= len(text) <= 128:
        raise ExchangeError("block header 'cid' is not a Cid string", ErrorCode.MALFORMED)
    return parse_cid(text).to_v1()


def decode_block_frame(frame: bytes | bytearray | memoryview) -> tuple[CID, memoryview]:
    """Split a block frame into ``(cid, block view)``; the hash is *not* checked here."""
    view = memoryview(frame)
    try:
        hlen, off = decode_uvarint(view)
    except VarintError as exc:
        raise ExchangeError(f"block frame: {exc}", ErrorCode.MALFORMED) from None
    if hlen > MAX_HEADER or off + hlen > len(view):
        raise ExchangeError(f"block frame header length {hlen} invalid", ErrorCode.MALFORMED)
    try:
        header = json_decode(bytes(view[off : off + hlen]), max_size=MAX_HEADER)
        cid = check_block_header(header)
    except InfernetError as exc:
        raise ExchangeError(f"block frame header: {exc}", ErrorCode.MALFORMED) from None
    block = view[off + hlen :]
    if len(block) != header["size"] or len(block) > MAX_BLOCK_SIZE:
        raise ExchangeError(
            f"block frame carries {len(block)} bytes, header says {header['size']}",
            ErrorCode.MALFORMED,
        )
    return cid, block
