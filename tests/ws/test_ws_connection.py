"""The sans-I/O connection (RFC 6455 §5-§7, RFC 7692): a client and a server core wired in memory."""

from __future__ import annotations

import os
import zlib

import pytest

from infernet_ref.ws.connection import Connection, Role, State
from infernet_ref.ws.errors import InvalidState
from infernet_ref.ws.events import CloseReceived, Message, Ping, Pong, ProtocolFailed
from infernet_ref.ws.extensions.deflate import DeflateConfig, DeflateParams, PerMessageDeflate
from infernet_ref.ws.frames import Opcode, encode_frame

KEY = b"\x11\x22\x33\x44"


def pair(
    deflate: tuple[DeflateParams, DeflateParams] | None = None, **kw: int
) -> tuple[Connection, Connection]:
    cfg = DeflateConfig(min_size=0)
    c_def = PerMessageDeflate(deflate[0], cfg) if deflate else None
    s_def = PerMessageDeflate(deflate[1], cfg) if deflate else None
    return Connection(Role.CLIENT, deflate=c_def, **kw), Connection(
        Role.SERVER, deflate=s_def, **kw
    )


def test_messages_both_ways() -> None:
    client, server = pair()
    for data in ["", "héllo", b"", b"\x00" * 70000, os.urandom(1000)]:
        assert server.receive_data(client.send_message(data)) == [Message(data)]
        assert client.receive_data(server.send_message(data)) == [Message(data)]


def test_fragmented_with_interleaved_control_frames() -> None:
    client, server = pair()
    wire = client.send_fragment("frag", fin=False)
    wire += client.send_ping(b"p1")
    wire += client.send_fragment("ment", fin=False)
    wire += client.send_pong(b"unsolicited")
    wire += client.send_fragment("ed", fin=True)
    events = server.receive_data(wire)
    assert events == [Ping(b"p1"), Pong(b"unsolicited"), Message("fragmented")]
    # The pong answering the ping waits in data_to_send, unmasked (server to client).
    assert client.receive_data(server.data_to_send()) == [Pong(b"p1")]


def test_fragment_type_mixing_is_refused_locally() -> None:
    client, _ = pair()
    client.send_fragment(b"a", fin=False)
    with pytest.raises(InvalidState):
        client.send_fragment("b", fin=True)
    with pytest.raises(InvalidState):
        client.send_message("whole")


@pytest.mark.parametrize(
    ("wire", "code"),
    [
        (encode_frame(Opcode.CONT, b"x", mask_key=KEY), 1002),  # continuation outside a message
        (
            encode_frame(Opcode.TEXT, b"a", fin=False, mask_key=KEY)
            + encode_frame(Opcode.TEXT, b"b", mask_key=KEY),
            1002,
        ),
        (encode_frame(Opcode.CLOSE, b"\x03", mask_key=KEY), 1002),  # 1-byte close payload
        (encode_frame(Opcode.CLOSE, (1005).to_bytes(2, "big"), mask_key=KEY), 1002),
        (encode_frame(Opcode.CLOSE, (1006).to_bytes(2, "big"), mask_key=KEY), 1002),
        (encode_frame(Opcode.CLOSE, (1015).to_bytes(2, "big"), mask_key=KEY), 1002),
        (encode_frame(Opcode.CLOSE, (999).to_bytes(2, "big"), mask_key=KEY), 1002),
        (encode_frame(Opcode.CLOSE, (2000).to_bytes(2, "big"), mask_key=KEY), 1002),
        (encode_frame(Opcode.CLOSE, (5000).to_bytes(2, "big"), mask_key=KEY), 1002),
        (encode_frame(Opcode.CLOSE, b"\x03\xe8\xff", mask_key=KEY), 1007),  # bad UTF-8 reason
        (encode_frame(Opcode.BINARY, b"x", rsv1=True, mask_key=KEY), 1002),  # RSV1 without deflate
        (encode_frame(Opcode.BINARY, b"x"), 1002),  # unmasked from a client
    ],
)
def test_violations_fail_with_code(wire: bytes, code: int) -> None:
    _, server = pair()
    events = server.receive_data(wire)
    assert isinstance(events[-1], ProtocolFailed)
    assert events[-1].code == code
    assert server.state is State.CLOSED
    # The close frame with the code is queued, unmasked.
    out = server.data_to_send()
    assert out[0] == 0x88
    assert int.from_bytes(out[2:4], "big") == code
    assert server.receive_data(encode_frame(Opcode.TEXT, b"more", mask_key=KEY)) == []


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1007, 1011, 1012, 1013, 1014, 3000, 4999])
def test_close_handshake_echoes_code(code: int) -> None:
    client, server = pair()
    wire = client.send_close(code, "bye")
    assert client.state is State.CLOSING
    assert server.receive_data(wire) == [CloseReceived(code, "bye")]
    assert server.state is State.CLOSED
    assert client.receive_data(server.data_to_send()) == [CloseReceived(code, "")]
    assert client.state is State.CLOSED
    with pytest.raises(InvalidState):
        client.send_message("late")


def test_empty_close_is_echoed_empty() -> None:
    client, server = pair()
    assert server.receive_data(client.send_close(None)) == [CloseReceived(1005, "")]
    assert server.data_to_send() == b"\x88\x00"


def test_frames_after_close_are_ignored() -> None:
    client, server = pair()
    wire = client.send_close(1000) + encode_frame(Opcode.TEXT, b"x", mask_key=KEY)
    assert server.receive_data(wire) == [CloseReceived(1000, "")]


def test_local_close_arguments_checked() -> None:
    client, _ = pair()
    for bad in (1005, 1006, 1015, 999, 2999):
        with pytest.raises(InvalidState):
            client.send_close(bad)
    with pytest.raises(InvalidState):
        client.send_close(1000, "x" * 124)
    with pytest.raises(InvalidState):
        client.send_ping(b"x" * 126)


def test_message_size_limit_whole_and_fragmented() -> None:
    client, server = pair(max_message_size=1000)
    assert isinstance(server.receive_data(client.send_message(b"x" * 1001))[-1], ProtocolFailed)
    client, server = pair(max_message_size=1000)
    events = []
    for _ in range(20):
        events += server.receive_data(client.send_fragment(b"x" * 100, fin=False))
    assert events[-1] == ProtocolFailed(1009, events[-1].reason)  # type: ignore[attr-defined]
    assert len(events) == 1


# -- permessage-deflate --------------------------------------------------------------------


def _params(
    server_nct: bool, client_nct: bool, sbits: int, cbits: int
) -> tuple[DeflateParams, DeflateParams]:
    client = DeflateParams(client_nct, server_nct, cbits, sbits)
    server = DeflateParams(server_nct, client_nct, sbits, cbits)
    return client, server


@pytest.mark.parametrize("server_nct", [False, True])
@pytest.mark.parametrize("client_nct", [False, True])
@pytest.mark.parametrize("bits", [(15, 15), (9, 9), (12, 10)])
def test_deflate_round_trips(server_nct: bool, client_nct: bool, bits: tuple[int, int]) -> None:
    client, server = pair(_params(server_nct, client_nct, *bits))
    messages: list[str | bytes] = ["a" * 1000, "a" * 1000, b"", os.urandom(3000), "é" * 5000]
    for data in messages:
        wire = client.send_message(data)
        assert wire[0] & 0x40  # RSV1: compressed
        assert server.receive_data(wire) == [Message(data)]
        assert client.receive_data(server.send_message(data)) == [Message(data)]
    # Context takeover makes the repeated message smaller the second time.
    first, second = client.send_message("z" * 4000), client.send_message("z" * 4000)
    assert (len(second) < len(first)) == (not client_nct)
    server.receive_data(first + second)


def test_deflate_fragmented_send_and_receive() -> None:
    client, server = pair(_params(False, False, 15, 15))
    wire = client.send_fragment("hello " * 100, fin=False)
    wire += client.send_ping(b"!")
    wire += client.send_fragment("world " * 100, fin=True)
    assert server.receive_data(wire) == [Ping(b"!"), Message("hello " * 100 + "world " * 100)]


def test_rsv1_on_continuation_fails() -> None:
    _client, server = pair(_params(False, False, 15, 15))
    wire = encode_frame(Opcode.TEXT, b"", fin=False, rsv1=True, mask_key=KEY)
    wire += encode_frame(Opcode.CONT, b"", rsv1=True, mask_key=KEY)
    assert server.receive_data(wire)[-1].code == 1002  # type: ignore[attr-defined]


def test_decompression_bomb_is_bounded() -> None:
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    payload = bomb.compress(b"\x00" * (50 * 1024 * 1024)) + bomb.flush(zlib.Z_SYNC_FLUSH)
    assert len(payload) < 100_000
    _, server = pair(_params(False, False, 15, 15), max_message_size=1 << 20)
    events = server.receive_data(encode_frame(Opcode.BINARY, payload[:-4], rsv1=True, mask_key=KEY))
    assert events == [ProtocolFailed(1009, events[0].reason)]  # type: ignore[attr-defined]


def test_undecodable_compressed_data_is_1007() -> None:
    _, server = pair(_params(False, False, 15, 15))
    events = server.receive_data(
        encode_frame(Opcode.BINARY, b"\xff\xff\xff", rsv1=True, mask_key=KEY)
    )
    assert events[-1].code == 1007  # type: ignore[attr-defined]


def test_bfinal_block_accepted() -> None:
    """RFC 7692 §7.2.3.4: a sender may end a message with a BFINAL block."""
    _, server = pair(_params(False, False, 15, 15))
    for _ in range(2):
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        payload = c.compress(b"final block") + c.flush(zlib.Z_FINISH)
        events = server.receive_data(encode_frame(Opcode.BINARY, payload, rsv1=True, mask_key=KEY))
        assert events == [Message(b"final block")]
