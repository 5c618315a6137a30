"""spec/vectors/dht: written with INFERNET_WRITE_VECTORS=1, otherwise checked unchanged."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import cbor2

from infernet_ref.dht import fastcbor, wire
from infernet_ref.dht.proof import Prover, challenge_digest, leave_digest, verify_proof
from infernet_ref.dht.records import content_provider_key, node_record_key, provider_key
from infernet_ref.dht.tokens import TokenIssuer
from infernet_ref.encoding import cbor_encode, json_view
from infernet_ref.specs import validate_data

from .helpers import CID

VECTORS = Path(__file__).resolve().parents[2] / "spec" / "vectors" / "dht" / "dht.json"
SK = bytes.fromhex("0000000000000000000000000000000000000000000000000000000000000003")
T = bytes.fromhex("0001020304050607")


def _build() -> dict[str, Any]:
    prover = Prover(SK)
    nonce = bytes(range(16))
    requester = hashlib.sha256(b"requester").digest()
    to = [bytes([127, 0, 0, 1]), 4000]  # the responder's address, as the requester sent to it
    digest = challenge_digest(nonce, requester, to[0], to[1])
    tk = TokenIssuer(bytes, 0.0)
    datagrams = [
        (wire.Kind.QUERY, wire.Op.PING, {"id": requester, "c": nonce, "to": to}),
        (
            wire.Kind.RESPONSE,
            wire.Op.PING,
            {
                "id": prover.node_id,
                "tk": tk.issue(("127.0.0.1", 4000), 0.0),
                "pk": prover.public_key,
                "sig": prover.sign(digest, bytes(32)),
            },
        ),
        (wire.Kind.QUERY, wire.Op.FIND_NODE, {"id": requester, "target": prover.node_id}),
        (
            wire.Kind.RESPONSE,
            wire.Op.FIND_NODE,
            {"id": prover.node_id, "nodes": [[requester, bytes([127, 0, 0, 1]), 4000]]},
        ),
        (wire.Kind.ERROR, wire.Op.STORE, {"code": 205, "msg": "bad token"}),
    ]
    invalid = {
        # Keys v, t, ... in that order: RFC 8949 §4.2.1 sorts "t" before "v".
        "invalid_not_deterministic_key_order": cbor2.dumps(
            {"v": 1, "t": T, "y": "q", "op": "PING", "body": {"id": requester}}
        ).hex(),
        "invalid_short_txid": cbor_encode(
            {"v": 1, "t": b"\x00", "y": "q", "op": "PING", "body": {"id": requester}}
        ).hex(),
        "invalid_unknown_field": cbor_encode(
            {"v": 1, "t": T, "y": "q", "op": "PING", "body": {"id": requester, "x": 1}}
        ).hex(),
        "invalid_challenge_without_to": cbor_encode(
            {"v": 1, "t": T, "y": "q", "op": "PING", "body": {"id": requester, "c": nonce}}
        ).hex(),
        "invalid_to_without_challenge": cbor_encode(
            {"v": 1, "t": T, "y": "q", "op": "PING", "body": {"id": requester, "to": to}}
        ).hex(),
        "invalid_oversized": "",
    }
    return {
        "secret_key": SK.hex(),
        "public_key": prover.public_key.hex(),
        "node_id": prover.node_id.hex(),
        "keys": {
            "cid": CID,
            "provider_key": provider_key(CID).hex(),
            "content_provider_key": content_provider_key(CID).hex(),
            "node_record_key": node_record_key(prover.node_id).hex(),
        },
        "challenge": {
            "nonce": nonce.hex(),
            "requester_id": requester.hex(),
            "responder_ip": "127.0.0.1",
            "responder_port": 4000,
            "digest": digest.hex(),
        },
        "leave": {
            "recipient_id": requester.hex(),
            "ts": 1700000000,
            "digest": leave_digest(requester, 1700000000).hex(),
        },
        "token": {
            "secret": "00" * 32,
            "ip": "127.0.0.1",
            "port": 4000,
            "token": tk.issue(("127.0.0.1", 4000), 0.0).hex(),
        },
        "datagrams": [
            {
                "hex": wire.encode(T, y, op, body).hex(),
                "json": json_view({"v": 1, "t": T, "y": y, "op": op, "body": body}),
            }
            for y, op, body in datagrams
        ],
        "invalid": invalid,
    }


def test_vectors() -> None:
    data = _build()
    if os.environ.get("INFERNET_WRITE_VECTORS") == "1":
        VECTORS.write_text(json.dumps(data, indent=2) + "\n")
    assert json.loads(VECTORS.read_text()) == data
    prover = Prover(SK)
    for d in data["datagrams"]:
        raw = bytes.fromhex(d["hex"])
        dg = wire.decode(raw)
        assert json_view({"v": 1, "t": dg.t, "y": dg.y, "op": dg.op, "body": dg.body}) == d["json"]
        validate_data(d["json"], "dht-messages")
        assert fastcbor.encode(fastcbor.decode(raw, max_size=4096)) == raw
    pk, sig = (
        bytes.fromhex(data["datagrams"][1]["json"]["body"]["pk"]),
        bytes.fromhex(data["datagrams"][1]["json"]["body"]["sig"]),
    )
    assert verify_proof(pk, sig, bytes.fromhex(data["challenge"]["digest"])) == prover.node_id
    # The same proof does not hold for any other responder address (spec/dht.md §Identity 2).
    ch = data["challenge"]
    nonce, requester = bytes.fromhex(ch["nonce"]), bytes.fromhex(ch["requester_id"])
    for ip, port in [(bytes([127, 0, 0, 1]), 4001), (bytes([127, 0, 0, 2]), 4000)]:
        assert verify_proof(pk, sig, challenge_digest(nonce, requester, ip, port)) is None
    for name, hx in data["invalid"].items():
        raw = bytes.fromhex(hx) if hx else bytes(wire.MAX_DATAGRAM + 1)
        try:
            wire.decode(raw)
        except wire.WireError:
            continue
        raise AssertionError(f"{name} was accepted")
