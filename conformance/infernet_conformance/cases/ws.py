"""``ws.*``: black-box checks of a WebSocket echo endpoint against RFC 6455, RFC 7692 and spec/ws.md.

The target is an echo server (``--target ws://host:port``): it echoes every data message (text
as text, binary as binary). Cases talk raw TCP with a frame writer/reader written here — not
the reference's — so they can send what a well-behaved client never would and check how strict
the peer is. Ordered like RFC 6455: handshake (§4), framing (§5.2), masking (§5.3),
fragmentation (§5.4), ping/pong (§5.5.2-3), reserved bits and opcodes, UTF-8 (§8.1), closing
(§7), limits (spec/ws.md §3), compression (RFC 7692).

Where RFC 6455 leaves the close code of a failure open (a decompression error, a 64-bit length
with its top bit set that is also beyond any limit), a case accepts each code the RFCs allow and
says so in its description.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from infernet_conformance import CaseContext, CaseFailed, CaseSkipped, case, check

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MiB = 1024 * 1024


def frame(
    opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bool = True
) -> bytes:
    """One frame as a client would send it (RFC 6455 §5.2), with arbitrary bits allowed."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    m = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, m | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, m | 126, n)
    else:
        head = struct.pack("!BBQ", b0, m | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    rep = (key * (n // 4 + 1))[:n]
    body = (int.from_bytes(payload, "little") ^ int.from_bytes(rep, "little")).to_bytes(n, "little")
    return head + key + body


class Peer:
    """A raw WebSocket client: writes arbitrary frames, reads the server's frames."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[str, str]
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.headers = headers
        self.inflater: zlib._Decompress | None = None

    def send(
        self,
        opcode: int,
        payload: bytes = b"",
        *,
        fin: bool = True,
        rsv: int = 0,
        mask: bool = True,
    ) -> None:
        """Write one frame; ``rsv`` is the 3 RSV bits as an int (4 = RSV1)."""
        self.writer.write(frame(opcode, payload, fin=fin, rsv=rsv, mask=mask))

    async def read_frame(self) -> tuple[bool, int, int, bytes]:
        """(fin, rsv bits, opcode, payload) of the next server frame; checks §5.1-§5.2 rules."""
        try:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(await self.reader.readexactly(2), "big")
                check(n >= 126, "server used a 16-bit length for a short payload (RFC 6455 §5.2)")
            elif n == 127:
                n = int.from_bytes(await self.reader.readexactly(8), "big")
                check(n >= 65536, "server used a 64-bit length for a short payload (RFC 6455 §5.2)")
            check(not b1 & 0x80, "server masked a frame (RFC 6455 §5.1)")
            payload = await self.reader.readexactly(n)
        except asyncio.IncompleteReadError:
            raise EOFError("server closed the TCP connection") from None
        return bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0x0F, payload

    async def message(self) -> tuple[int, bytes]:
        """The next data message (reassembled, inflated), skipping pongs."""
        parts: list[bytes] = []
        first_op, compressed = None, False
        while True:
            fin, rsv, op, payload = await self.read_frame()
            if op == PONG:
                continue
            if op == CLOSE:
                raise CaseFailed(f"expected a message, got close {_code(payload)}")
            if first_op is None:
                first_op, compressed = op, bool(rsv & 4)
            parts.append(payload)
            if fin:
                data = b"".join(parts)
                if compressed:
                    check(
                        self.inflater is not None,
                        "server compressed without negotiating (RFC 7692)",
                    )
                    assert self.inflater is not None
                    data = self.inflater.decompress(data + b"\x00\x00\xff\xff")
                return first_op, data

    async def echo(self, opcode: int, payload: bytes) -> None:
        """Send one message and check it comes back unchanged."""
        self.send(opcode, payload)
        op, data = await self.message()
        check(op == opcode and data == payload, f"echo of a {len(payload)}-byte message differs")

    async def expect_close(self, *codes: int | None) -> int | None:
        """Read until the server's close frame; its code must be one of ``codes`` (None = empty)."""
        while True:
            try:
                _, _, op, payload = await self.read_frame()
            except EOFError:
                raise CaseFailed(
                    f"server dropped TCP without a close frame; expected close {codes}"
                ) from None
            if op == CLOSE:
                code = _code(payload)
                check(code in codes, f"server closed with {code}, expected one of {codes}")
                return code
            if op != PONG:
                raise CaseFailed(
                    f"server sent a data frame (opcode {op:#x}) instead of close {codes}"
                )

    async def expect_eof(self, timeout: float = 5.0) -> None:
        """The server closes TCP after the closing handshake (RFC 6455 §7.1.1)."""
        try:
            data = await asyncio.wait_for(self.reader.read(), timeout)
        except TimeoutError:
            raise CaseFailed(
                "server did not close the TCP connection after the close handshake"
            ) from None
        except ConnectionError:
            return
        check(data == b"", "server sent data after its close frame")


def _code(payload: bytes) -> int | None:
    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None


def _request(
    host: str, path: str = "/", extra: str = "", key: str | None = None, version: str = "13"
) -> bytes:
    key = key or base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n{extra}\r\n"
    ).encode()


async def _http(
    ctx: CaseContext, raw: bytes
) -> tuple[int, dict[str, str], asyncio.StreamReader, asyncio.StreamWriter]:
    ep = ctx.require("ws")
    if ep.scheme == "wss":
        raise CaseSkipped("raw-socket cases need a ws:// target")
    reader, writer = await asyncio.open_connection(ep.host, ep.port)
    writer.write(raw)
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        writer.close()
        raise CaseFailed("server closed the connection without an HTTP response") from None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
    }
    return int(parts[1]), headers, reader, writer


@asynccontextmanager
async def peer(ctx: CaseContext, *, deflate: str | None = None) -> AsyncIterator[Peer]:
    """An open raw connection; ``deflate`` is a permessage-deflate offer to make."""
    key = base64.b64encode(os.urandom(16)).decode()
    extra = f"Sec-WebSocket-Extensions: {deflate}\r\n" if deflate else ""
    host = ctx.require("ws")
    status, headers, reader, writer = await _http(
        ctx, _request(f"{host.host}:{host.port}", extra=extra, key=key)
    )
    try:
        check(status == 101, f"handshake answered HTTP {status}, expected 101")
        expected = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        check(
            headers.get("sec-websocket-accept") == expected,
            "wrong Sec-WebSocket-Accept (RFC 6455 §4.2.2)",
        )
        p = Peer(reader, writer, headers)
        ext = headers.get("sec-websocket-extensions", "")
        if "permessage-deflate" in ext:
            bits = 15
            for param in ext.split(";"):
                name, _, value = param.strip().partition("=")
                if name == "server_max_window_bits":
                    bits = int(value.strip('"'))
            p.inflater = zlib.decompressobj(-max(bits, 9))
        yield p
    finally:
        writer.close()


# -- §4 opening handshake -------------------------------------------------------------------


@case(
    "ws.handshake.accept",
    section="RFC 6455 §4.2.2",
    description="A valid upgrade gets 101 with Upgrade, Connection and the right Sec-WebSocket-Accept",
)
async def _(ctx: CaseContext) -> None:
    async with peer(ctx) as p:
        check(p.headers.get("upgrade", "").lower() == "websocket", "101 lacks Upgrade: websocket")
        check("upgrade" in p.headers.get("connection", "").lower(), "101 lacks Connection: Upgrade")


@case(
    "ws.handshake.bad_version",
    section="RFC 6455 §4.2.2",
    description="Sec-WebSocket-Version 8 is refused with a 4xx",
)
async def _(ctx: CaseContext) -> None:
    ep = ctx.require("ws")
    status, _, _, writer = await _http(ctx, _request(f"{ep.host}:{ep.port}", version="8"))
    writer.close()
    check(400 <= status < 500, f"bad version answered {status}")


@case(
    "ws.handshake.bad_version_advertises_13",
    section="RFC 6455 §4.4",
    description="The refusal of an unknown version carries Sec-WebSocket-Version: 13 (a MUST of §4.4)",
)
async def _(ctx: CaseContext) -> None:
    ep = ctx.require("ws")
    _, headers, _, writer = await _http(ctx, _request(f"{ep.host}:{ep.port}", version="8"))
    writer.close()
    check(
        "13" in headers.get("sec-websocket-version", ""),
        "refusal lacks Sec-WebSocket-Version: 13 (RFC 6455 §4.4 MUST)",
    )


@case(
    "ws.handshake.bad_key",
    section="RFC 6455 §4.2.1 item 5",
    description="A Sec-WebSocket-Key that is not base64 of 16 bytes is refused with 400",
)
async def _(ctx: CaseContext) -> None:
    ep = ctx.require("ws")
    status, _, _, writer = await _http(ctx, _request(f"{ep.host}:{ep.port}", key="c2hvcnQ="))
    writer.close()
    check(status == 400, f"bad key answered {status}, expected 400")


@case(
    "ws.handshake.not_get",
    section="RFC 6455 §4.2.1 item 1",
    description="An upgrade with POST is refused with a 4xx",
)
async def _(ctx: CaseContext) -> None:
    ep = ctx.require("ws")
    raw = _request(f"{ep.host}:{ep.port}").replace(b"GET ", b"POST ", 1)
    status, _, _, writer = await _http(
        ctx, raw.replace(b"\r\n\r\n", b"\r\nContent-Length: 0\r\n\r\n")
    )
    writer.close()
    check(400 <= status < 500, f"POST upgrade answered {status}")


@case(
    "ws.handshake.missing_connection",
    section="RFC 6455 §4.2.1 item 4",
    description="An upgrade without Connection: Upgrade is refused with a 4xx",
)
async def _(ctx: CaseContext) -> None:
    ep = ctx.require("ws")
    raw = _request(f"{ep.host}:{ep.port}").replace(b"Connection: Upgrade\r\n", b"")
    status, _, _, writer = await _http(ctx, raw)
    writer.close()
    check(400 <= status < 500, f"upgrade without Connection answered {status}")


# -- §5.2 framing, §5.3 masking ---------------------------------------------------------------


@case(
    "ws.frame.lengths",
    section="RFC 6455 §5.2",
    description="Payloads at the 7/16/64-bit length boundaries echo back, minimally encoded and unmasked",
)
async def _(ctx: CaseContext) -> None:
    async with peer(ctx) as p:
        for n in (0, 1, 125, 126, 127, 65535, 65536, 65537, 300_000):
            await p.echo(BINARY, os.urandom(n))
            await p.echo(TEXT, b"a" * n)


@case(
    "ws.frame.unmasked_client_frame",
    section="RFC 6455 §5.1",
    description="A server fails a connection whose client sends an unmasked frame, with 1002",
)
async def _(ctx: CaseContext) -> None:
    async with peer(ctx) as p:
        p.send(TEXT, b"unmasked", mask=False)
        await p.expect_close(1002)


@case(
    "ws.frame.non_minimal_length",
    section="RFC 6455 §5.2, spec/ws.md §2.2",
    description="A 16-bit length for a 5-byte payload is either failed with 1002 or read correctly (never misparsed)",
)
async def _(ctx: CaseContext) -> None:
    async with peer(ctx) as p:
        key = os.urandom(4)
        body = bytes(b ^ key[i % 4] for i, b in enumerate(b"hello"))
        p.writer.write(b"\x82\xfe\x00\x05" + key + body)
        _, _, op, payload = await p.read_frame()
        if op == CLOSE:
            check(_code(payload) == 1002, f"closed with {_code(payload)}, expected 1002")
        else:
            check((op, payload) == (BINARY, b"hello"), "non-minimal length frame was misparsed")


@case(
    "ws.frame.length_msb",
    section="RFC 6455 §5.2",
    description="A 64-bit length with its most significant bit set fails the connection (1002, or 1009 as an over-limit length)",
)
async def _(ctx: CaseContext) -> None:
    async with peer(ctx) as p:
        p.writer.write(b"\x82\xff" + b"\x80" + b"\x00" * 7 + os.urandom(4))
        await p.expect_close(1002, 1009)


# -- reserved bits and opcodes -----------------------------------------------------------------

for _rsv in (1, 2, 4, 7):
    for _op in (TEXT, PING):

        @case(
            f"ws.reserved_bits.rsv{_rsv}_{'text' if _op == TEXT else 'ping'}",
            section="RFC 6455 §5.2",
            description=f"RSV bits {_rsv:03b} without a negotiated extension fail with 1002",
        )
        async def _(ctx: CaseContext, rsv: int = _rsv, op: int = _op) -> None:
            async with peer(ctx) as p:
                p.send(op, b"reserved", rsv=rsv)
                await p.expect_close(1002)


for _opcode in (3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF):

    @case(
        f"ws.opcode.reserved_{_opcode:x}",
        section="RFC 6455 §5.2, §11.8",
        description=f"Reserved opcode {_opcode:#x} fails with 1002",
    )
    async def _(ctx: CaseContext, opcode: int = _opcode) -> None:
        async with peer(ctx) as p:
            await p.echo(TEXT, b"before")
            p.send(opcode, b"")
            await p.expect_close(1002)


# -- §5.5.2-3 ping and pong --------------------------------------------------------------------


@case(
    "ws.ping.pong_echoes_payload",
    section="RFC 6455 §5.5.2-3",
    description="A ping is answered by a pong with the same payload (0 and 125 bytes)",
)
async def _(ctx: CaseContext) -> None:
    async with peer(ctx) as p:
        for payload in (b"", os.urandom(125), "κόσμε".encode()):
            p.send(PING, payload)
            _, _, op, data = await p.read_frame()
            check(op == PONG, f"ping answered with opcode {op:#x}")
            check(data == payload, "pong payload differs from the ping's")


@case("ws.ping.too_long", section="RFC 6455 §5.5", description="A 126-byte ping fails with 1002")
async def _(ctx: CaseContext) -> None:
    async with peer(ctx) as p:
        p.send(PING, b"x" * 126)
        await p.expect_close(1002)


@case(
    "ws.ping.fragmented", section="RFC 6455 §5.5", description="A ping without FIN fails with 1002"
)
async def _(ctx: CaseContext) -> None:
    async with peer(ctx) as p:
        p.send(PING, b"frag", fin=False)
        await p.expect_close(1002)


@case(
    "ws.pong.unsolicited", section="RFC 6455 §5.5.3", description="An unsolicited pong is ignored"
)
async def _(ctx: CaseContext) -> None:
    async with peer(ctx) as p:
        p.send(PONG, b"heartbeat")
        await p.echo(TEXT, b"after pong")


@case(
    "ws.ping.flood",
    section="RFC 6455 §5.5.2, spec/ws.md §3",
    description="1000 pings in a row are each answered, in order, and the connection keeps working",
)
async def _(ctx: CaseContext) -> None:
    async with peer(ctx) as p:
        for i in range(1000):
            p.send(PING, i.to_bytes(2, "big"))
        for i in range(1000):
            _, _, op, data = await p.read_frame()
            check(op == PONG and data == i.to_bytes(2, "big"), f"pong {i} missing or out of order")
        await p.echo(BINARY, b"still alive")


# -- §5.4 fragmentation ------------------------------------------------------------------------


@case(
    "ws.fragmentation.reassembly",
    section="RFC 6455 §5.4",
    description="Text and binary messages in 1..20 fragments, empty ones included, echo whole",
)
async def _(ctx: CaseContext) -> None:
    async with peer(ctx) as p:
        for opcode in (TEXT, BINARY):
            for count in (1, 2, 3, 20):
                chunks = [b"" if i % 3 == 1 else f"part{i}-".encode() for i in range(count)]
                for i, chunk in enumerate(chunks):
                    p.send(opcode if i == 0 else CONT, chunk, fin=i == count - 1)
                op, data = await p.message()
                check(
                    op == opcode and data == b"".join(chunks), f"{count}-fragment message differs"
                )


@case(
    "ws.fragmentation.interleaved_control",
    section="RFC 6455 §5.4, §5.5",
    description="Pings between fragments are answered at once and the message still reassembles",
)
async def _(ctx: CaseContext) -> None:
    async with peer(ctx) as p:
        p.send(TEXT, b"frag", fin=False)
        p.send(PING, b"p1")
        _, _, op, data = await p.read_frame()
        check(op == PONG and data == b"p1", "no pong while a fragmented message is open")
        p.send(CONT, b"men", fin=False)
        p.send(PONG, b"unsolicited")
        p.send(CONT, b"ted", fin=True)
        op, data = await p.message()
        check(
            (op, data) == (TEXT, b"fragmented"), "message with interleaved control frames differs"
        )


@case(
    "ws.fragmentation.continuation_without_start",
    section="RFC 6455 §5.4",
    description="A continuation frame outside a message fails with 1002",
)
async def _(ctx: CaseContext) -> None:
    async with peer(ctx) as p:
        p.send(CONT, b"orphan")
        await p.expect_close(1002)


@case(
    "ws.fragmentation.new_message_inside",
    section="RFC 6455 §5.4",
    description="A text frame inside an open fragmented message fails with 1002",
)
async def _(ctx: CaseContext) -> None:
    async with peer(ctx) as p:
        p.send(TEXT, b"first", fin=False)
        p.send(TEXT, b"second")
        await p.expect_close(1002)


# -- §8.1 UTF-8 --------------------------------------------------------------------------------

VALID_UTF8 = [
    "κόσμε".encode(),
    "\u0080\u07ff\u0800\ud7ff\ue000\ufffd\uffff".encode(),
    "\U00010000\U0010ffff".encode(),
    "Hello-µ@ßöäüàá-UTF-8!!".encode(),
]
INVALID_UTF8 = [
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",  # surrogate
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xc0\xaf",  # overlong
    b"\xe0\x80\xaf",  # overlong
    b"\xed\xbf\xbf",  # surrogate U+DFFF
    b"\x80",  # lone continuation
    b"\xfe",
    b"ab\xc2",  # truncated at the end of the message
]


@case(
    "ws.utf8.valid_split_everywhere",
    section="RFC 6455 §8.1, RFC 3629",
    description="Valid UTF-8 split into two fragments at every byte boundary echoes back",
)
async def _(ctx: CaseContext) -> None:
    async with peer(ctx) as p:
        for text in VALID_UTF8:
            for cut in range(len(text) + 1):
                p.send(TEXT, text[:cut], fin=False)
                p.send(CONT, text[cut:])
                op, data = await p.message()
                check((op, data) == (TEXT, text), f"valid UTF-8 split at {cut} did not echo")


@case(
    "ws.utf8.invalid_whole",
    section="RFC 6455 §8.1",
    description="Each invalid sequence in a single text frame fails with 1007",
)
async def _(ctx: CaseContext) -> None:
    for text in INVALID_UTF8:
        async with peer(ctx) as p:
            p.send(TEXT, text)
            await p.expect_close(1007)


@case(
    "ws.utf8.invalid_split_everywhere",
    section="RFC 6455 §8.1",
    description="Invalid UTF-8 split into two fragments at every byte boundary fails with 1007",
)
async def _(ctx: CaseContext) -> None:
    for text in INVALID_UTF8[:3]:
        for cut in range(len(text) + 1):
            async with peer(ctx) as p:
                p.send(TEXT, text[:cut], fin=False)
                p.send(CONT, text[cut:])
                await p.expect_close(1007)


FAIL_FAST_PREFIXES = (
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80",
    b"ok\xc0",
    b"ok\xf5",
)


@case(
    "ws.utf8.invalid_fragmented_prefix",
    section="RFC 6455 §8.1",
    description="An invalid first fragment fails with 1007 by the end of the message at the latest",
)
async def _(ctx: CaseContext) -> None:
    for prefix in FAIL_FAST_PREFIXES:
        async with peer(ctx) as p:
            p.send(TEXT, prefix, fin=False)
            p.send(CONT, b"rest of the message")
            await p.expect_close(1007)


@case(
    "ws.utf8.fail_fast",
    section="spec/ws.md §2.7 (RFC 6455 §8.1)",
    description="An impossible UTF-8 prefix fails with 1007 within 5 s while the message is still open (no FIN sent)",
)
async def _(ctx: CaseContext) -> None:
    for prefix in FAIL_FAST_PREFIXES:
        async with peer(ctx) as p:
            p.send(TEXT, prefix, fin=False)
            try:
                await asyncio.wait_for(p.expect_close(1007), 5.0)
            except TimeoutError:
                raise CaseFailed(
                    f"no close 1007 within 5 s of the invalid prefix {prefix[-4:]!r}; "
                    "the peer waits for the end of the message (not fail-fast)"
                ) from None


# -- §7 closing ----------------------------------------------------------------------------------


@case(
    "ws.close.normal",
    section="RFC 6455 §5.5.1, §7.1.1",
    description="Close 1000 with a reason is echoed with 1000, then the server closes TCP",
)
async def _(ctx: CaseContext) -> None:
    async with peer(ctx) as p:
        p.send(CLOSE, (1000).to_bytes(2, "big") + b"bye")
        await p.expect_close(1000)
        await p.expect_eof()


@case(
    "ws.close.empty",
    section="RFC 6455 §5.5.1, §7.1.5",
    description="An empty close frame is answered with an empty close (or 1000)",
)
async def _(ctx: CaseContext) -> None:
    async with peer(ctx) as p:
        p.send(CLOSE, b"")
        await p.expect_close(None, 1000)
        await p.expect_eof()


VALID_CODES = (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999)
INVALID_CODES = (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535)


@case(
    "ws.close.valid_codes",
    section="RFC 6455 §7.4.1-2",
    description="Each sendable close code is accepted and echoed",
)
async def _(ctx: CaseContext) -> None:
    for code in VALID_CODES:
        async with peer(ctx) as p:
            p.send(CLOSE, code.to_bytes(2, "big"))
            await p.expect_close(code)


@case(
    "ws.close.invalid_codes",
    section="RFC 6455 §7.4",
    description="Close codes that must never be sent (1004-1006, 1015, unassigned) fail with 1002",
)
async def _(ctx: CaseContext) -> None:
    for code in INVALID_CODES:
        async with peer(ctx) as p:
            p.send(CLOSE, code.to_bytes(2, "big"))
            await p.expect_close(1002)


@case(
    "ws.close.one_byte_payload",
    section="RFC 6455 §5.5.1",
    description="A 1-byte close payload fails with 1002",
)
async def _(ctx: CaseContext) -> None:
    async with peer(ctx) as p:
        p.send(CLOSE, b"\x03")
        await p.expect_close(1002)


@case(
    "ws.close.invalid_utf8_reason",
    section="RFC 6455 §5.5.1, §8.1",
    description="A close reason that is not UTF-8 fails with 1007",
)
async def _(ctx: CaseContext) -> None:
    async with peer(ctx) as p:
        p.send(CLOSE, (1000).to_bytes(2, "big") + b"\xce\xba\xed\xa0\x80")
        await p.expect_close(1007)


@case(
    "ws.close.max_reason",
    section="RFC 6455 §5.5",
    description="A close with a 123-byte reason (125-byte payload) is accepted",
)
async def _(ctx: CaseContext) -> None:
    async with peer(ctx) as p:
        p.send(CLOSE, (1000).to_bytes(2, "big") + b"r" * 123)
        await p.expect_close(1000)


@case(
    "ws.close.data_after_close",
    section="RFC 6455 §5.5.1",
    description="Frames after the client's close frame are ignored; only the close echo comes back",
)
async def _(ctx: CaseContext) -> None:
    async with peer(ctx) as p:
        # One write, so the server cannot close TCP between the frames (a reset would then
        # destroy its close frame in our receive buffer).
        p.writer.write(
            frame(CLOSE, (1000).to_bytes(2, "big")) + frame(TEXT, b"x") + frame(PING, b"y")
        )
        _, _, op, payload = await p.read_frame()
        check(
            op == CLOSE and _code(payload) == 1000,
            f"expected the close echo first, got opcode {op:#x}",
        )
        await p.expect_eof()


# -- spec/ws.md §3 limits ------------------------------------------------------------------------


@case(
    "ws.limits.huge_frame_header",
    section="spec/ws.md §3, RFC 6455 §7.4.1",
    description="A frame header announcing 1 TiB fails with 1009 at once, without waiting for the payload",
)
async def _(ctx: CaseContext) -> None:
    async with peer(ctx) as p:
        p.writer.write(b"\x82\xff" + (1 << 40).to_bytes(8, "big") + os.urandom(4) + b"x" * 100)
        await p.expect_close(1009)


@case(
    "ws.limits.accepts_16mib",
    section="spec/ws.md §3",
    description="A 16 MiB binary message in one frame and a 16 MiB text message in 16 fragments echo back",
)
async def _(ctx: CaseContext) -> None:
    async with peer(ctx) as p:
        data = os.urandom(16 * MiB)
        await p.echo(BINARY, data)
        chunk = b"x" * MiB
        for i in range(16):
            p.send(TEXT if i == 0 else CONT, chunk, fin=i == 15)
            await p.writer.drain()
        op, echoed = await p.message()
        check(op == TEXT and echoed == chunk * 16, "16 MiB fragmented text message did not echo")


@case(
    "ws.limits.endless_fragments",
    section="spec/ws.md §3",
    description="A never-ending fragmented message is failed with 1009 before 64 MiB have been sent",
)
async def _(ctx: CaseContext) -> None:
    async with peer(ctx) as p:
        chunk = b"\x00" * MiB
        p.send(BINARY, chunk, fin=False)
        close_task = asyncio.ensure_future(p.expect_close(1009))
        try:
            for _ in range(64):
                if close_task.done():
                    break
                p.send(CONT, chunk, fin=False)
                try:
                    await p.writer.drain()
                except ConnectionError:
                    break
            await close_task
        finally:
            close_task.cancel()


# -- RFC 7692 permessage-deflate ------------------------------------------------------------------

OFFER = "permessage-deflate; client_max_window_bits"


@asynccontextmanager
async def deflate_peer(ctx: CaseContext, offer: str = OFFER) -> AsyncIterator[Peer]:
    async with peer(ctx, deflate=offer) as p:
        if p.inflater is None:
            raise CaseSkipped("the endpoint does not accept permessage-deflate")
        yield p


def _compress(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]


@case(
    "ws.compression.negotiation",
    section="RFC 7692 §7.1",
    description="A permessage-deflate answer carries only valid, offered parameters",
)
async def _(ctx: CaseContext) -> None:
    async with deflate_peer(ctx, "permessage-deflate; client_max_window_bits") as p:
        answer = p.headers["sec-websocket-extensions"]
        for param in answer.split(";")[1:]:
            name, _, value = param.strip().partition("=")
            check(
                name
                in (
                    "server_no_context_takeover",
                    "client_no_context_takeover",
                    "server_max_window_bits",
                    "client_max_window_bits",
                ),
                f"unknown parameter {name!r}",
            )
            if value:
                check(8 <= int(value.strip('"')) <= 15, f"{name}={value} out of range")


@case(
    "ws.compression.echo",
    section="RFC 7692 §7.2",
    description="Compressed text and binary messages (also fragmented, also empty) echo back intact",
)
async def _(ctx: CaseContext) -> None:
    async with deflate_peer(ctx) as p:
        for opcode, data in (
            (TEXT, "κόσμε ".encode() * 500),
            (BINARY, os.urandom(5000)),
            (TEXT, b""),
        ):
            p.send(opcode, _compress(data), rsv=4)
            op, echoed = await p.message()
            check((op, echoed) == (opcode, data), "compressed message did not echo")
        payload = _compress(b"fragmented and compressed " * 100)
        third = len(payload) // 3
        p.send(TEXT, payload[:third], fin=False, rsv=4)
        p.send(CONT, payload[third : 2 * third], fin=False)
        p.send(CONT, payload[2 * third :])
        op, echoed = await p.message()
        check(
            echoed == b"fragmented and compressed " * 100,
            "fragmented compressed message did not echo",
        )


@case(
    "ws.compression.rsv1_on_continuation",
    section="RFC 7692 §6.1",
    description="RSV1 on a continuation frame fails with 1002",
)
async def _(ctx: CaseContext) -> None:
    async with deflate_peer(ctx) as p:
        payload = _compress(b"hello")
        p.send(TEXT, payload, fin=False, rsv=4)
        p.send(CONT, b"", rsv=4)
        await p.expect_close(1002)


@case(
    "ws.compression.corrupt",
    section="RFC 7692 §8 (no code fixed), spec/ws.md §6.4",
    description="A compressed payload that does not inflate fails the connection (1007, or 1002)",
)
async def _(ctx: CaseContext) -> None:
    async with deflate_peer(ctx) as p:
        p.send(BINARY, b"\xff\xff\xff\xff\xff", rsv=4)
        await p.expect_close(1007, 1002)


@case(
    "ws.compression.bomb",
    section="RFC 7692 §8.1, spec/ws.md §3",
    description="A 64 KiB frame inflating to 64 MiB fails with 1009 without inflating it all",
)
async def _(ctx: CaseContext) -> None:
    async with deflate_peer(ctx) as p:
        p.send(BINARY, _compress(b"\x00" * (64 * MiB)), rsv=4)
        await p.expect_close(1009)
