"""spec/vectors/ws/ws.json: frames, messages, invalid input with its close code, handshake keys
and the RFC 7692 §7.2.3 compression examples.

Run with ``INFERNET_WRITE_VECTORS=1`` to (re)write the file; otherwise the test checks the file
is what this module generates and feeds every vector to the sans-I/O core.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from infernet_ref.ws.connection import Connection, Role
from infernet_ref.ws.events import Message, ProtocolFailed
from infernet_ref.ws.extensions.deflate import DeflateConfig, DeflateParams, PerMessageDeflate
from infernet_ref.ws.frames import Opcode, encode_frame
from infernet_ref.ws.handshake import accept_key

PATH = Path(__file__).resolve().parents[2] / "spec" / "vectors" / "ws" / "ws.json"
KEY = bytes.fromhex("37fa213d")


def _masked(op: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> str:
    return encode_frame(op, payload, fin=fin, rsv1=rsv1, mask_key=KEY).hex()


def _unmasked(op: int, payload: bytes, fin: bool = True) -> str:
    return encode_frame(op, payload, fin=fin).hex()


def build() -> dict[str, Any]:
    big = bytes(range(256)) * 256  # 65536 bytes: the smallest 64-bit length
    messages = [
        # RFC 6455 §5.7 examples and length boundaries; sender "client" = masked with KEY.
        {
            "name": "rfc_text_unmasked",
            "sender": "server",
            "frames": ["810548656c6c6f"],
            "text": "Hello",
        },
        {
            "name": "rfc_text_masked",
            "sender": "client",
            "frames": ["818537fa213d7f9f4d5158"],
            "text": "Hello",
        },
        {
            "name": "rfc_fragmented",
            "sender": "server",
            "frames": ["010348656c", "80026c6f"],
            "text": "Hello",
        },
        {
            "name": "empty_binary",
            "sender": "client",
            "frames": [_masked(Opcode.BINARY, b"")],
            "binary": "",
        },
        {
            "name": "len_125",
            "sender": "client",
            "frames": [_masked(Opcode.BINARY, b"\x01" * 125)],
            "binary": "01" * 125,
        },
        {
            "name": "len_126",
            "sender": "client",
            "frames": [_masked(Opcode.BINARY, b"\x02" * 126)],
            "binary": "02" * 126,
        },
        {
            "name": "len_65536_masked",
            "sender": "client",
            "frames": [_masked(Opcode.BINARY, big)],
            "binary_sha256": hashlib.sha256(big).hexdigest(),
        },
        {
            "name": "fragments_with_ping",
            "sender": "client",
            "frames": [
                _masked(Opcode.TEXT, "κό".encode()[:3], fin=False),
                _masked(Opcode.PING, b"ping"),
                _masked(Opcode.CONT, "κόσμε".encode()[3:]),
            ],
            "text": "κόσμε",
            "replies": [_unmasked(Opcode.PONG, b"ping")],
        },
    ]
    invalid = [
        ("invalid_unmasked_from_client", "server", "8105" + b"Hello".hex(), 1002),
        ("invalid_masked_from_server", "client", "818537fa213d7f9f4d5158", 1002),
        ("invalid_reserved_opcode_3", "server", _masked(3, b""), 1002),
        ("invalid_reserved_opcode_b", "server", _masked(0xB, b""), 1002),
        ("invalid_rsv1_without_extension", "server", _masked(Opcode.TEXT, b"x", rsv1=True), 1002),
        ("invalid_rsv2", "client", "a200", 1002),
        ("invalid_fragmented_ping", "client", "0900", 1002),
        ("invalid_ping_126", "client", "897e007e" + "00" * 126, 1002),
        ("invalid_non_minimal_16", "client", "827e0005" + b"Hello".hex(), 1002),
        ("invalid_non_minimal_64", "client", "827f" + (300).to_bytes(8, "big").hex(), 1002),
        ("invalid_length_msb", "client", "827f" + "80" + "00" * 7, 1002),
        ("invalid_orphan_continuation", "client", "8003616263", 1002),
        ("invalid_nested_message", "client", "010161810162", 1002),
        ("invalid_close_1_byte", "client", "880103", 1002),
        ("invalid_close_1005", "client", "880203ed", 1002),
        ("invalid_close_1006", "client", "880203ee", 1002),
        ("invalid_close_1015", "client", "880203f7", 1002),
        ("invalid_close_5000", "client", "88021388", 1002),
        ("invalid_close_reason_utf8", "client", "880403e8ceed", 1007),
        ("invalid_text_utf8", "client", "8104cebae1bd", 1007),
        ("invalid_text_surrogate", "client", "8103eda080", 1007),
        ("invalid_text_fail_fast", "client", "0104f4908080", 1007),
        ("invalid_frame_too_big", "client", "827f" + (1 << 40).to_bytes(8, "big").hex(), 1009),
    ]
    deflate = {
        "params": "server_max_window_bits=15, client_max_window_bits=15, context takeover on both sides",
        # RFC 7692 §7.2.3.1-§7.2.3.5, server to client (unmasked). One list = one connection.
        "connections": [
            {
                "name": "rfc7692_7.2.3.1_single",
                "frames": ["c107f248cdc9c90700"],
                "texts": ["Hello"],
            },
            {
                "name": "rfc7692_7.2.3.1_fragmented",
                "frames": ["4103f248cd", "8004c9c90700"],
                "texts": ["Hello"],
            },
            {
                "name": "rfc7692_7.2.3.2_shared_window",
                "frames": ["c107f248cdc9c90700", "c105f200110000"],
                "texts": ["Hello", "Hello"],
            },
            {
                "name": "rfc7692_7.2.3.3_stored_block",
                "frames": ["c10b000500faff48656c6c6f00"],
                "texts": ["Hello"],
            },
            {
                "name": "rfc7692_7.2.3.4_bfinal",
                "frames": ["c108f348cdc9c9070000"],
                "texts": ["Hello"],
            },
            {
                "name": "rfc7692_7.2.3.5_two_blocks",
                "frames": ["c10df24805000000ffffcac9c90700"],
                "texts": ["Hello"],
            },
        ],
    }
    keys = ["dGhlIHNhbXBsZSBub25jZQ==", "AAAAAAAAAAAAAAAAAAAAAA==", "x3JJHMbDL1EzLkh9GBhXDw=="]
    return {
        "description": "WebSocket vectors (spec/ws.md); see README.md",
        "masking_key": KEY.hex(),
        "messages": messages,
        "invalid": [
            {"name": n, "receiver": r, "hex": h, "close_code": c} for n, r, h, c in invalid
        ],
        "deflate": deflate,
        "handshake": [{"key": k, "accept": accept_key(k)} for k in keys],
    }


def _load() -> dict[str, Any]:
    generated = build()
    text = json.dumps(generated, indent=1, ensure_ascii=False) + "\n"
    if os.environ.get("INFERNET_WRITE_VECTORS") == "1":
        PATH.parent.mkdir(parents=True, exist_ok=True)
        PATH.write_text(text, encoding="utf-8")
    assert PATH.read_text(encoding="utf-8") == text, (
        "spec/vectors/ws/ws.json is stale: rerun with INFERNET_WRITE_VECTORS=1"
    )
    data: dict[str, Any] = json.loads(text)
    return data


def test_vectors() -> None:
    vectors = _load()
    for m in vectors["messages"]:
        receiver = Connection(Role.SERVER if m["sender"] == "client" else Role.CLIENT)
        events = []
        for frame in m["frames"]:
            events += receiver.receive_data(bytes.fromhex(frame))
        got = [e.data for e in events if isinstance(e, Message)]
        if "binary_sha256" in m:
            assert len(got) == 1, m["name"]
            assert isinstance(got[0], bytes), m["name"]
            assert hashlib.sha256(got[0]).hexdigest() == m["binary_sha256"], m["name"]
        else:
            assert got == [m["text"] if "text" in m else bytes.fromhex(m["binary"])], m["name"]
        assert receiver.data_to_send().hex() == "".join(m.get("replies", [])), m["name"]
    for bad in vectors["invalid"]:
        receiver = Connection(
            Role.SERVER if bad["receiver"] == "server" else Role.CLIENT, max_message_size=1 << 20
        )
        events = receiver.receive_data(bytes.fromhex(bad["hex"]))
        assert isinstance(events[-1], ProtocolFailed), bad["name"]
        assert events[-1].code == bad["close_code"], bad["name"]
    for h in vectors["handshake"]:
        assert accept_key(h["key"]) == h["accept"]


def test_rfc7692_examples() -> None:
    for conn_vec in _load()["deflate"]["connections"]:
        deflate = PerMessageDeflate(DeflateParams(False, False, 15, 15), DeflateConfig())
        client = Connection(Role.CLIENT, deflate=deflate)
        events = []
        for frame in conn_vec["frames"]:
            events += client.receive_data(bytes.fromhex(frame))
        assert events == [Message(t) for t in conn_vec["texts"]], conn_vec["name"]


def test_our_compressor_matches_rfc7692_example() -> None:
    """RFC 7692 §7.2.3.1/§7.2.3.2: "Hello" twice with a shared window, byte for byte."""
    server = Connection(
        Role.SERVER,
        deflate=PerMessageDeflate(DeflateParams(False, False, 15, 15), DeflateConfig(min_size=0)),
    )
    assert server.send_message("Hello").hex() == "c107f248cdc9c90700"
    assert server.send_message("Hello").hex() == "c105f200110000"
