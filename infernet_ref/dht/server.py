"""Answering queries (spec/dht.md §Operations, §Amplification).

Theory of operation: :func:`handle_query` turns one decoded query into one response or ERROR.
Every response carries our ID and a token for the requester's address; a query that carried a
challenge gets our public key and a signature. A source is *verified* when it presented a valid
token for its address or is a proven contact at that address; an unverified source gets a reply
of at most ``amplification_factor`` times its query's size (contacts and values are trimmed to
fit, and if even the bare reply does not fit, an empty ERROR or silence). The querier itself is
offered to the routing table: directly when its key is already proven at that address, otherwise
through a challenge PING when the table would take it (spec/dht.md §Identity).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from infernet_ref.dht import wire
from infernet_ref.dht.proof import challenge_digest, leave_digest, verify_proof
from infernet_ref.dht.records import MAX_SKEW, RecordError
from infernet_ref.dht.storage import StoreResult
from infernet_ref.dht.wire import Addr, Datagram, ErrorCode, Kind, Op

if TYPE_CHECKING:
    from infernet_ref.dht.protocol import DHTCore


def _contacts_for(core: DHTCore, target: bytes, exclude: bytes) -> list[list[Any]]:
    out: list[list[Any]] = []
    for c in core.table.closest(target, core.config.k + 1):
        if c.node_id != exclude and len(out) < core.config.k:
            out.append([c.node_id, wire.pack_ip(c.addr[0]), c.addr[1]])
    return out


def _learn_querier(core: DHTCore, node_id: bytes, addr: Addr, now: float) -> None:
    """spec/dht.md §Identity: a querier enters the table only once it has proven its key."""
    proven = core.proven_id(addr)
    if proven == node_id:
        core.admit(node_id, addr, now)
        return
    if (
        addr in core.admitting
        or len(core.admitting) >= core.config.max_admissions
        or not core.table.wants(node_id)
    ):
        return
    req = core.query(addr, Op.PING, {}, now, claimed=node_id, tag=("admit", addr))
    if req is not None:
        core.admitting.add(addr)


def handle_query(core: DHTCore, dg: Datagram, addr: Addr, now: float) -> None:
    """Answer ``dg`` from ``addr`` (spec/dht.md §Operations)."""
    body = dg.body
    verified = core.proven_id(addr) == body["id"] or (
        "tk" in body and core.tokens.check(body["tk"], addr, now)
    )
    try:
        result = _dispatch(core, dg, addr, now, verified)
    except RecordError as exc:
        core.reply_error(
            dg.t,
            dg.op,
            int(exc.code or ErrorCode.INVALID_VALUE),
            str(exc),
            addr=addr,
            req_size=dg.size,
        )
        return
    if result is None:
        return
    if isinstance(result, tuple):
        code, msg = result
        core.reply_error(dg.t, dg.op, code, msg, addr=addr, req_size=dg.size)
        return
    result["id"] = core.node_id
    result["tk"] = core.tokens.issue(addr, now)
    if "c" in body:
        ip, port = body["to"]
        if not core.owns_address(ip, port):
            # spec/dht.md §Identity 2: never sign for another address (that would let a relay
            # pass our proof off as its own).
            core.reply_error(
                dg.t,
                dg.op,
                ErrorCode.PROTOCOL,
                "'to' is not our address",
                addr=addr,
                req_size=dg.size,
            )
            return
        digest = challenge_digest(body["c"], body["id"], ip, port)
        result["pk"] = core.prover.public_key
        result["sig"] = core.prover.sign(digest, core.random(32))
    limit = (
        wire.MAX_DATAGRAM
        if verified
        else min(wire.MAX_DATAGRAM, core.config.amplification_factor * dg.size)
    )
    data = _fit(dg, result, limit)
    if data is None:
        core.reply_error(
            dg.t,
            dg.op,
            ErrorCode.PROTOCOL,
            "pad the query or present a token",
            addr=addr,
            req_size=dg.size,
        )
        return
    core.send_raw(data, addr)
    if dg.op != Op.LEAVE:
        _learn_querier(core, body["id"], addr, now)


def _fit(dg: Datagram, result: dict[str, Any], limit: int) -> bytes | None:
    """Encode, trimming values then contacts until the reply fits ``limit`` bytes."""
    while True:
        data = wire.encode(dg.t, Kind.RESPONSE, dg.op, result)
        if len(data) <= limit:
            return data
        if result.get("values"):
            result["values"] = result["values"][:-1]
            result["more"] = True
        elif result.get("nodes"):
            # Drop several at once: each contact is ~45 bytes.
            excess = (len(data) - limit) // 40 + 1
            result["nodes"] = result["nodes"][: max(0, len(result["nodes"]) - excess)]
        else:
            return None


def _dispatch(
    core: DHTCore, dg: Datagram, addr: Addr, now: float, verified: bool
) -> dict[str, Any] | tuple[int, str] | None:
    body = dg.body
    if dg.op == Op.PING:
        return {}
    if dg.op == Op.FIND_NODE:
        return {"nodes": _contacts_for(core, body["target"], body["id"])}
    if dg.op == Op.FIND_VALUE:
        key = body["key"]
        values = core.store.get(key, now)
        off = body.get("o", 0)
        res: dict[str, Any] = {"nodes": _contacts_for(core, key, body["id"])}
        if values:
            chunk = values[off : off + wire.MAX_VALUES]
            res["values"] = chunk
            if off + len(chunk) < len(values):
                res["more"] = True
        return res
    if dg.op == Op.STORE:
        if not core.tokens.check(body["tk"], addr, now):
            return (ErrorCode.BAD_TOKEN, "write token missing, expired or for another address")
        exp = core.validator.validate(body["key"], body["ev"], now)
        outcome = core.store.put(body["key"], body["ev"], exp)
        if outcome in (StoreResult.KEY_FULL, StoreResult.PUBLISHER_FULL, StoreResult.STORE_FULL):
            return (ErrorCode.VALUE_REJECTED, outcome.value)
        return {"stored": 1 if outcome is StoreResult.STORED else 0}
    if dg.op == Op.LEAVE:
        return _leave(core, body, addr, now)
    return (ErrorCode.UNKNOWN_OP, "unknown operation")


def _leave(
    core: DHTCore, body: dict[str, Any], addr: Addr, now: float
) -> dict[str, Any] | tuple[int, str]:
    """spec/dht.md §Leave: a signed, fresh notice removes the sender from our table."""
    if abs(body["ts"] - now) > MAX_SKEW:
        return (ErrorCode.VALUE_REJECTED, "leave timestamp outside the allowed skew")
    who = verify_proof(body["pk"], body["sig"], leave_digest(core.node_id, body["ts"]))
    if who is None or who != body["id"]:
        return (ErrorCode.INVALID_VALUE, "leave signature does not verify")
    core.table.remove(who)
    p = core.peers.get(addr)
    if p is not None and p.node_id == who:
        p.node_id = None
    return {}
