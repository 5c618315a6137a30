"""DHT datagrams <-> deterministic CBOR (spec/dht.md §Wire format).

Theory of operation: one UDP datagram carries one deterministic-CBOR map, the envelope
``{v, t, y, op, body}`` of spec/schemas/dht-datagram.schema.json. :func:`decode` is the single
entry point for peer bytes: it enforces the size limit before touching the bytes, decodes under
the strict CBOR data model, then checks the envelope and the operation's body against the rules
that the per-operation schemas (spec/schemas/dht-*.schema.json) state. The checks are written out
by hand because they run for every datagram of a thousand-node swarm; tests hold them equal to the
JSON Schemas, and the CBOR codec is :mod:`infernet_ref.dht.fastcbor` (held byte-equal to
``infernet_ref.encoding.cbor_encode``/``cbor_decode`` by tests). Every failure is a :class:`WireError` carrying the wire error code and, when the
transaction id could be read, that id (so the caller may answer with an ERROR).

:func:`encode` is the inverse for the datagrams this node sends.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from infernet_ref.dht import fastcbor
from infernet_ref.errors import EncodingError, RemoteProtocolError

#: spec/dht.md §Versioning: the envelope's ``v``.
PROTOCOL_VERSION = 1
#: spec/dht.md §Limits: no datagram (sent or accepted) is larger than this.
MAX_DATAGRAM = 4096
#: spec/dht.md §Limits: at most this many contacts in one response (Kademlia k).
MAX_CONTACTS = 20
#: spec/dht.md §Limits: at most this many values in one FIND_VALUE response.
MAX_VALUES = 16
TXID_LEN = 8
ID_LEN = 32
NONCE_LEN = 16
MAX_TOKEN_LEN = 32
MAX_PAD = 1400
MAX_MESSAGE_TEXT = 200


class Op:
    """Operation names (spec/dht.md §Operations)."""

    PING = "PING"
    FIND_NODE = "FIND_NODE"
    FIND_VALUE = "FIND_VALUE"
    STORE = "STORE"
    LEAVE = "LEAVE"


OPS = frozenset({Op.PING, Op.FIND_NODE, Op.FIND_VALUE, Op.STORE, Op.LEAVE})
_OP_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,31}").fullmatch


class Kind:
    """Envelope ``y`` (spec/dht.md §Envelope; BEP 5 style q/r/e)."""

    QUERY = "q"
    RESPONSE = "r"
    ERROR = "e"


class ErrorCode(IntEnum):
    """ERROR body codes (spec/dht.md §Errors; 201-204 as BEP 5)."""

    GENERIC = 201  # BEP 5 §Errors: generic error
    SERVER = 202  # BEP 5: server error
    PROTOCOL = 203  # BEP 5: malformed datagram / body
    UNKNOWN_OP = 204  # BEP 5: method unknown
    BAD_TOKEN = 205  # spec/dht.md §Write tokens
    INVALID_VALUE = 206  # spec/dht.md §Values: bad id, signature or schema
    VALUE_REJECTED = 207  # spec/dht.md §Values: expiry, skew, key binding, caps
    VERSION = 208  # spec/dht.md §Versioning
    RATE_LIMITED = 209  # spec/dht.md §Rate limits


class WireError(RemoteProtocolError):
    """A peer's datagram broke spec/dht.md §Wire format; ``txid`` is set when it was readable."""

    def __init__(
        self,
        message: str,
        code: int = ErrorCode.PROTOCOL,
        txid: bytes | None = None,
        op: str | None = None,
    ) -> None:
        super().__init__(message, code)
        self.txid = txid
        self.op = op


Addr = tuple[str, int]


@dataclass(frozen=True, slots=True)
class WireContact:
    """A contact as it travels: ``[id, ip, port]`` (spec/dht.md §Contacts)."""

    node_id: bytes
    ip: bytes
    port: int


@dataclass(frozen=True, slots=True)
class Datagram:
    """A decoded datagram; ``body`` has passed its operation's checks."""

    t: bytes
    y: str
    op: str
    body: dict[str, Any]
    size: int


def _fail(
    msg: str, t: bytes | None, op: str | None = None, code: int = ErrorCode.PROTOCOL
) -> WireError:
    return WireError(msg, code, t, op)


def _bytes(
    body: dict[str, Any],
    key: str,
    n: int | None,
    t: bytes,
    op: str,
    *,
    required: bool = True,
    max_len: int | None = None,
) -> None:
    if key not in body:
        if required:
            raise _fail(f"{op} body lacks '{key}'", t, op)
        return
    val = body[key]
    if not isinstance(val, bytes):
        raise _fail(f"{op} '{key}' must be a byte string", t, op)
    if n is not None and len(val) != n:
        raise _fail(f"{op} '{key}' must be {n} bytes, got {len(val)}", t, op)
    if max_len is not None and len(val) > max_len:
        raise _fail(f"{op} '{key}' longer than {max_len} bytes", t, op)
    if key == "tk" and not val:
        raise _fail(f"{op} 'tk' is empty", t, op)


def _uint(
    body: dict[str, Any],
    key: str,
    bounds: tuple[int, int],
    t: bytes,
    op: str,
    *,
    required: bool = True,
) -> None:
    lo, hi = bounds
    if key not in body:
        if required:
            raise _fail(f"{op} body lacks '{key}'", t, op)
        return
    val = body[key]
    if not isinstance(val, int) or isinstance(val, bool) or not lo <= val <= hi:
        raise _fail(f"{op} '{key}' must be an integer in [{lo}, {hi}]", t, op)


def _contacts(body: dict[str, Any], t: bytes, op: str) -> None:
    if "nodes" not in body:
        return
    nodes = body["nodes"]
    if not isinstance(nodes, list) or len(nodes) > MAX_CONTACTS:
        raise _fail(f"{op} 'nodes' must be a list of at most {MAX_CONTACTS} contacts", t, op)
    for c in nodes:
        if (
            not isinstance(c, list)
            or len(c) != 3
            or not isinstance(c[0], bytes)
            or len(c[0]) != ID_LEN
            or not isinstance(c[1], bytes)
            or len(c[1]) not in (4, 16)
            or not isinstance(c[2], int)
            or isinstance(c[2], bool)
            or not 1 <= c[2] <= 65535
        ):
            raise _fail(f"{op} has a malformed contact", t, op)


def _event_shape(ev: Any, t: bytes, op: str) -> None:
    """Shallow NIP-01 shape check; full validation (id, signature, schema) is records.py's."""
    if not isinstance(ev, dict) or set(ev) != {
        "id",
        "pubkey",
        "created_at",
        "kind",
        "tags",
        "content",
        "sig",
    }:
        raise _fail(f"{op} value is not a NIP-01 event object", t, op, ErrorCode.INVALID_VALUE)


_QUERY_KEYS = {
    Op.PING: frozenset({"id", "c", "to", "tk", "pad"}),
    Op.FIND_NODE: frozenset({"id", "c", "to", "tk", "pad", "target"}),
    Op.FIND_VALUE: frozenset({"id", "c", "to", "tk", "pad", "key", "o"}),
    Op.STORE: frozenset({"id", "c", "to", "tk", "pad", "key", "ev"}),
    Op.LEAVE: frozenset({"id", "pk", "ts", "sig"}),
}
_RESPONSE_KEYS = frozenset({"id", "tk", "pk", "sig", "nodes", "values", "more", "stored"})


def _challenge_address(body: dict[str, Any], t: bytes, op: str) -> None:
    """spec/dht.md §Identity 2: ``to`` = [packed IP, port] comes with ``c`` and only with it."""
    if ("c" in body) != ("to" in body):
        raise _fail(f"{op} query must carry 'to' exactly when it carries 'c'", t, op)
    if "to" not in body:
        return
    to = body["to"]
    if (
        not isinstance(to, list)
        or len(to) != 2
        or not isinstance(to[0], bytes)
        or len(to[0]) not in (4, 16)
        or not isinstance(to[1], int)
        or isinstance(to[1], bool)
        or not 1 <= to[1] <= 65535
    ):
        raise _fail(f"{op} 'to' must be [4- or 16-byte IP, port 1-65535]", t, op)


def _check_query(op: str, body: dict[str, Any], t: bytes) -> None:
    extra = set(body) - _QUERY_KEYS[op]
    if extra:
        raise _fail(f"{op} query has unknown field(s) {sorted(extra, key=str)}", t, op)
    _bytes(body, "id", ID_LEN, t, op)
    if op == Op.LEAVE:
        _bytes(body, "pk", ID_LEN, t, op)
        _bytes(body, "sig", 64, t, op)
        _uint(body, "ts", (0, 0xFFFFFFFF), t, op)
        return
    _bytes(body, "c", NONCE_LEN, t, op, required=False)
    _challenge_address(body, t, op)
    _bytes(body, "tk", None, t, op, required=False, max_len=MAX_TOKEN_LEN)
    _bytes(body, "pad", None, t, op, required=False, max_len=MAX_PAD)
    if op == Op.FIND_NODE:
        _bytes(body, "target", ID_LEN, t, op)
    elif op == Op.FIND_VALUE:
        _bytes(body, "key", ID_LEN, t, op)
        _uint(body, "o", (0, 1024), t, op, required=False)
    elif op == Op.STORE:
        _bytes(body, "key", ID_LEN, t, op)
        _bytes(body, "tk", None, t, op, max_len=MAX_TOKEN_LEN)
        if "ev" not in body:
            raise _fail("STORE body lacks 'ev'", t, op)
        _event_shape(body["ev"], t, op)


def _check_response(op: str, body: dict[str, Any], t: bytes) -> None:
    extra = set(body) - _RESPONSE_KEYS
    if extra:
        raise _fail(f"{op} response has unknown field(s) {sorted(extra, key=str)}", t, op)
    _bytes(body, "id", ID_LEN, t, op)
    _bytes(body, "tk", None, t, op, required=False, max_len=MAX_TOKEN_LEN)
    _bytes(body, "pk", ID_LEN, t, op, required=False)
    _bytes(body, "sig", 64, t, op, required=False)
    if ("pk" in body) != ("sig" in body):
        raise _fail(f"{op} response carries only one of 'pk' and 'sig'", t, op)
    _contacts(body, t, op)
    if "values" in body:
        vals = body["values"]
        if not isinstance(vals, list) or len(vals) > MAX_VALUES:
            raise _fail(f"{op} 'values' must be a list of at most {MAX_VALUES} events", t, op)
        for ev in vals:
            _event_shape(ev, t, op)
    if "more" in body and not isinstance(body["more"], bool):
        raise _fail(f"{op} 'more' must be a boolean", t, op)
    _uint(body, "stored", (0, 1), t, op, required=False)


def _check_error(op: str, body: dict[str, Any], t: bytes) -> None:
    if set(body) - {"code", "msg"}:
        raise _fail("ERROR body has unknown fields", t, op)
    _uint(body, "code", (100, 999), t, op)
    msg = body.get("msg", "")
    if not isinstance(msg, str) or len(msg) > MAX_MESSAGE_TEXT:
        raise _fail(f"ERROR 'msg' must be text of at most {MAX_MESSAGE_TEXT} characters", t, op)


def decode(data: bytes) -> Datagram:
    """Parse one datagram (spec/dht.md §Wire format); raises only :class:`WireError`."""
    if len(data) > MAX_DATAGRAM:
        raise WireError(f"datagram of {len(data)} bytes exceeds {MAX_DATAGRAM}")
    try:
        msg = fastcbor.decode(data, max_size=MAX_DATAGRAM)
    except EncodingError as exc:
        raise WireError(f"not a deterministic CBOR item: {exc}") from exc
    if not isinstance(msg, dict):
        raise WireError("datagram is not a CBOR map")
    t = msg.get("t")
    if not isinstance(t, bytes) or len(t) != TXID_LEN:
        raise WireError("datagram lacks an 8-byte transaction id 't'")
    if set(msg) != {"v", "t", "y", "op", "body"}:
        raise _fail("envelope must have exactly v, t, y, op, body", t)
    v, y, op, body = msg["v"], msg["y"], msg["op"], msg["body"]
    if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 65535:
        raise _fail("envelope 'v' must be an integer in [1, 65535]", t)
    if y not in (Kind.QUERY, Kind.RESPONSE, Kind.ERROR):
        raise _fail("envelope 'y' must be q, r or e", t)
    if not isinstance(op, str) or not op or len(op) > 32:
        raise _fail("envelope 'op' must be an operation name", t)
    if not isinstance(body, dict) or not all(isinstance(k, str) for k in body):
        raise _fail("envelope 'body' must be a map with text keys", t, op)
    try:
        if v != PROTOCOL_VERSION:
            raise _fail(f"protocol version {v} is not supported", t, op, ErrorCode.VERSION)
        if op not in OPS and y != Kind.ERROR:  # an ERROR may echo an operation we do not know
            raise _fail(f"unknown operation {op[:32]!r}", t, op, ErrorCode.UNKNOWN_OP)
        if y == Kind.QUERY:
            _check_query(op, body, t)
        elif y == Kind.RESPONSE:
            _check_response(op, body, t)
        else:
            _check_error(op, body, t)
    except WireError as exc:
        if y != Kind.QUERY:  # never answer a bad response or error (no error ping-pong)
            exc.txid = None
        raise
    return Datagram(t, y, op, body, len(data))


def encode(t: bytes, y: str, op: str, body: dict[str, Any]) -> bytes:
    """Serialize one datagram (spec/dht.md §Wire format)."""
    return fastcbor.encode({"v": PROTOCOL_VERSION, "t": t, "y": y, "op": op, "body": body})


def encode_error(t: bytes, op: str, code: int, msg: str) -> bytes:
    """An ERROR datagram (spec/dht.md §Errors); the text is clipped to the limit."""
    return encode(t, Kind.ERROR, op, {"code": int(code), "msg": msg[:MAX_MESSAGE_TEXT]})


def contact_to_wire(c: WireContact) -> list[Any]:
    """spec/dht.md §Contacts: ``[id, ip, port]`` with the IP as 4 or 16 packed bytes."""
    return [c.node_id, c.ip, c.port]


@functools.lru_cache(maxsize=8192)
def pack_ip(host: str) -> bytes:
    """The packed form (4 or 16 bytes) of a textual IP address."""
    return ipaddress.ip_address(host).packed


@functools.lru_cache(maxsize=8192)
def unpack_ip(raw: bytes) -> str:
    """The textual form of a packed IPv4 (4 bytes) or IPv6 (16 bytes) address."""
    return str(ipaddress.ip_address(raw))
