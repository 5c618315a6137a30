"""The ``ws.*`` conformance cases, run against the websockets library (proof the cases are
right), against our server (in process and through ``infernet ws echo``) and against a
deliberately lenient server (proof the cases can fail).
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from infernet_conformance import RunReport, Target, Verdict, all_cases, load_cases, run_cases
from infernet_conformance.runner import select
from websockets.asyncio.server import serve as ws_serve

from infernet_ref import ws
from infernet_ref.ws.handshake import accept_key

pytestmark = pytest.mark.interop

PROFILE_MAX = 32 * 1024 * 1024  # spec/ws.md §3

# Where websockets 17.4 departs from RFC 6455 or our profile. Each entry is checked to still
# fail, so the list cannot go stale silently.
WEBSOCKETS_DEVIATIONS = {
    # websockets answers "400 Bad Request" without the header RFC 6455 §4.4 says MUST be there.
    "ws.handshake.bad_version_advertises_13": "lacks Sec-WebSocket-Version",
    # websockets validates the UTF-8 of a fragmented message only once it is complete; RFC 6455
    # §8.1 is met (ws.utf8.invalid_fragmented_prefix passes), spec/ws.md §2.7 fail-fast is not.
    "ws.utf8.fail_fast": "not fail-fast",
}


async def _run(port: int, patterns: list[str], timeout: float = 20.0) -> RunReport:
    load_cases()
    cases = select(all_cases(), patterns)
    assert cases
    return await run_cases(cases, Target.parse([f"ws://127.0.0.1:{port}"]), timeout=timeout)


def _by_verdict(report: RunReport, verdict: Verdict) -> dict[str, str]:
    return {r.id: r.message for r in report.results if r.verdict is verdict}


async def _echo(conn: Any) -> None:
    async for message in conn:
        await conn.send(message)


async def test_cases_against_websockets() -> None:
    async with ws_serve(_echo, "127.0.0.1", 0, max_size=PROFILE_MAX) as server:
        report = await _run(server.sockets[0].getsockname()[1], ["ws"])
    failed = _by_verdict(report, Verdict.FAIL)
    assert set(failed) == set(WEBSOCKETS_DEVIATIONS), failed
    for case_id, fragment in WEBSOCKETS_DEVIATIONS.items():
        assert fragment in failed[case_id]
    assert _by_verdict(report, Verdict.SKIP) == {}


async def test_compression_cases_skip_without_deflate() -> None:
    async with ws_serve(_echo, "127.0.0.1", 0, compression=None) as server:
        report = await _run(server.sockets[0].getsockname()[1], ["ws.compression"])
    assert {r.verdict for r in report.results} == {Verdict.SKIP}
    async with await ws.serve(_echo, compression=False) as ours:
        report = await _run(ours.port, ["ws.compression"])
    assert {r.verdict for r in report.results} == {Verdict.SKIP}


async def test_cases_against_our_server() -> None:
    async with await ws.serve(_echo, ping_interval=None) as server:
        report = await _run(server.port, ["ws"])
    assert _by_verdict(report, Verdict.FAIL) == {}
    assert _by_verdict(report, Verdict.SKIP) == {}
    assert len(report.results) >= 50


async def _lenient_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Handshakes, then echoes every frame as it came (unmasked), validating nothing."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        key = next(
            ln.split(b":", 1)[1].strip().decode()
            for ln in head.split(b"\r\n")
            if ln.lower().startswith(b"sec-websocket-key")
        )
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n".encode()
        )
        while True:
            b0, b1 = await reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = int.from_bytes(await reader.readexactly(2), "big")
            elif n == 127:
                n = int.from_bytes(await reader.readexactly(8), "big")
            key_bytes = await reader.readexactly(4) if b1 & 0x80 else b"\x00" * 4
            payload = bytes(b ^ key_bytes[i % 4] for i, b in enumerate(await reader.readexactly(n)))
            opcode = b0 & 0x0F
            if opcode == 0x9:
                b0 = (b0 & 0xF0) | 0xA
            header = bytes([b0, 126]) + n.to_bytes(2, "big") if n >= 126 else bytes([b0, n])
            writer.write(header + payload)
            if opcode == 0x8:
                break
    except (asyncio.IncompleteReadError, ConnectionError, StopIteration):
        pass
    finally:
        writer.close()


async def test_cases_fail_against_a_lenient_server() -> None:
    must_fail = [
        "ws.frame.unmasked_client_frame",
        "ws.reserved_bits.rsv2_text",
        "ws.opcode.reserved_3",
        "ws.ping.too_long",
        "ws.utf8.invalid_whole",
        "ws.close.invalid_codes",
        "ws.close.one_byte_payload",
        "ws.fragmentation.continuation_without_start",
        "ws.limits.huge_frame_header",
    ]
    server = await asyncio.start_server(_lenient_echo, "127.0.0.1", 0)
    try:
        report = await _run(server.sockets[0].getsockname()[1], must_fail, timeout=2.0)
    finally:
        server.close()
        await server.wait_closed()
    assert {r.id: r.verdict for r in report.results} == dict.fromkeys(must_fail, Verdict.FAIL)


@pytest.fixture
async def cli_echo() -> AsyncIterator[int]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "infernet_ref", "ws", "echo", "--port", "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line.startswith("listening on ws://127.0.0.1:"), line
        yield int(line.rsplit(":", 1)[1])
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert await asyncio.wait_for(proc.wait(), 20) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_cli_echo_server(cli_echo: int) -> None:
    report = await _run(
        cli_echo, ["ws.frame", "ws.close", "ws.compression.echo", "ws.utf8.fail_fast"]
    )
    assert _by_verdict(report, Verdict.FAIL) == {}
    async with ws.connect(f"ws://127.0.0.1:{cli_echo}/") as c:
        await c.send("text stays text")
        assert await c.recv() == "text stays text"
        await c.send(b"bytes stay bytes")
        assert await c.recv() == b"bytes stay bytes"
