"""Incremental UTF-8 validation (RFC 6455 §8.1, RFC 3629): valid and invalid, split everywhere."""

from __future__ import annotations

import pytest

from infernet_ref.ws.connection import Connection, Role
from infernet_ref.ws.events import Message, ProtocolFailed
from infernet_ref.ws.frames import Opcode, encode_frame
from infernet_ref.ws.utf8 import Utf8Validator

VALID = [
    "κόσμε".encode(),
    b"\x00",
    "\u0080".encode(),
    "\u07ff".encode(),
    "\u0800".encode(),
    "\ud7ff".encode(),
    "\ue000".encode(),
    "\uffff".encode(),
    "\U00010000".encode(),
    "\U0010ffff".encode(),
    "Hello-µ@ßöäüàá-UTF-8!!".encode(),
]
INVALID = [
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",  # surrogate (Autobahn 6.3)
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xf5\x80\x80\x80",
    b"\xc0\xaf",  # overlong '/'
    b"\xe0\x80\xaf",
    b"\xf0\x80\x80\xaf",
    b"\xed\xbf\xbf",  # U+DFFF
    b"\x80",  # lone continuation
    b"\xc2",  # truncated at the end of the message
    b"\xe1\xbd",
    b"\xfe",
    b"\xff",
    b"a\xc2b",
]


def _first_bad_prefix(data: bytes) -> int:
    """Length of the shortest prefix that can no longer become valid UTF-8 (None-safe)."""
    for n in range(1, len(data) + 1):
        try:
            v = Utf8Validator()
            v.feed(data[:n])
        except Exception:
            return n
    return len(data) + 1  # only detectable at the end


def _deliver(parts: list[bytes]) -> list[object]:
    """Send ``parts`` as a fragmented text message to a server core; return events per frame."""
    server = Connection(Role.SERVER)
    seen: list[object] = []
    for i, part in enumerate(parts):
        op = Opcode.TEXT if i == 0 else Opcode.CONT
        frame = encode_frame(op, part, fin=i == len(parts) - 1, mask_key=b"\x01\x02\x03\x04")
        seen.append(server.receive_data(frame))
    return seen


@pytest.mark.parametrize("data", VALID)
def test_valid_split_at_every_boundary(data: bytes) -> None:
    for cut in range(len(data) + 1):
        events = _deliver([data[:cut], data[cut:]])
        assert events[0] == []
        assert events[1] == [Message(data.decode())]


@pytest.mark.parametrize("data", INVALID)
def test_invalid_split_at_every_boundary_fails_fast(data: bytes) -> None:
    bad = _first_bad_prefix(data)
    for cut in range(len(data) + 1):
        events = _deliver([data[:cut], data[cut:]])
        failed_at = next(i for i, evs in enumerate(events) if evs)
        assert events[failed_at] == [events[failed_at][0]]
        ev = events[failed_at][0]
        assert isinstance(ev, ProtocolFailed), ev
        assert ev.code == 1007
        # Fail fast (§8.1): if the first fragment already holds an impossible prefix, the
        # connection fails on that fragment, before the message ends.
        assert failed_at == (0 if cut >= bad else 1)


@pytest.mark.parametrize("data", INVALID)
def test_invalid_whole_message(data: bytes) -> None:
    server = Connection(Role.SERVER)
    events = server.receive_data(encode_frame(Opcode.TEXT, data, mask_key=b"abcd"))
    assert len(events) == 1
    assert isinstance(events[0], ProtocolFailed)
    assert events[0].code == 1007


def test_surrogate_prefix_fails_on_second_byte() -> None:
    v = Utf8Validator()
    v.feed(b"ab\xed")
    with pytest.raises(Exception, match="invalid UTF-8"):
        v.feed(b"\xa0")
