"""Opening handshake (RFC 6455 §4) and extension negotiation (RFC 7692 §7.1), sans-I/O."""

from __future__ import annotations

import pytest

from infernet_ref.ws.errors import HandshakeError
from infernet_ref.ws.extensions import parse_extensions
from infernet_ref.ws.extensions.deflate import (
    DeflateConfig,
    client_accept,
    client_offer,
    server_accept,
)
from infernet_ref.ws.handshake import ClientHandshake, ServerHandshake, accept_key
from infernet_ref.ws.http import HandshakeLimits, HttpResponse

GOOD = (
    b"GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n"
    b"Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, infernet.v1\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
)


def test_rfc_accept_example() -> None:
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # §1.3


def _server(**kw: object) -> ServerHandshake:
    return ServerHandshake(subprotocols=("infernet.v1",), deflate=DeflateConfig(), **kw)  # type: ignore[arg-type]


def test_server_accepts_and_client_checks() -> None:
    client = ClientHandshake(
        "h:1", "/p?q=1", subprotocols=("infernet.v1",), deflate=DeflateConfig()
    )
    server = _server()
    request = server.receive_data(client.request_bytes[:10])
    assert request is None
    request = server.receive_data(client.request_bytes[10:] + b"\x81\x80trailing")
    assert request is not None
    assert request.path == "/p?q=1"
    assert server.trailing_data == b"\x81\x80trailing"
    raw, accepted = server.accept(request)
    assert accepted.subprotocol == "infernet.v1"
    assert accepted.deflate is not None
    result = client.receive_data(raw + b"\x81\x00")
    assert result is not None
    assert result.subprotocol == "infernet.v1"
    assert result.deflate is not None
    assert client.trailing_data == b"\x81\x00"


def test_rfc_example_request() -> None:
    server = _server()
    request = server.receive_data(GOOD + b"\r\n")
    assert request is not None
    raw, accepted = server.accept(request)
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in raw
    assert accepted.subprotocol == "infernet.v1"


@pytest.mark.parametrize(
    ("edit", "status"),
    [
        ((b"GET /chat", b"POST /chat"), 405),
        ((b"Upgrade: websocket\r\n", b""), 426),
        ((b"Connection: keep-alive, Upgrade", b"Connection: keep-alive"), 400),
        ((b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"), 426),
        ((b"dGhlIHNhbXBsZSBub25jZQ==", b"c2hvcnQ="), 400),
        ((b"dGhlIHNhbXBsZSBub25jZQ==", b"not base64!!"), 400),
        ((b"HTTP/1.1", b"HTTP/1.0"), 400),
    ],
)
def test_bad_requests(edit: tuple[bytes, bytes], status: int) -> None:
    server = _server()
    request = server.receive_data(GOOD.replace(*edit) + b"\r\n")
    assert request is not None
    with pytest.raises(HandshakeError) as info:
        server.accept(request)
    assert info.value.status == status
    response = ServerHandshake.reject(info.value)
    assert response.startswith(f"HTTP/1.1 {status} ".encode())
    assert str(info.value).encode() in response  # the body names the reason
    if status == 426:
        assert b"Sec-WebSocket-Version: 13" in response


def test_malformed_http_is_400() -> None:
    with pytest.raises(HandshakeError) as info:
        _server().receive_data(b"GARBAGE\r\n\r\n")
    assert info.value.status == 400


def test_missing_host_is_400() -> None:
    with pytest.raises(HandshakeError):
        _server().receive_data(GOOD.replace(b"Host: server.example.com\r\n", b"") + b"\r\n")


def test_head_limits() -> None:
    limits = HandshakeLimits(max_line=100, max_head=1000, max_headers=10)
    with pytest.raises(HandshakeError) as info:
        _server(limits=limits).receive_data(b"GET /" + b"a" * 200)
    assert info.value.status == 414
    with pytest.raises(HandshakeError) as info:
        _server(limits=limits).receive_data(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 300)
    assert info.value.status == 431
    many = b"GET / HTTP/1.1\r\n" + b"".join(b"X%d: y\r\n" % i for i in range(20)) + b"\r\n"
    with pytest.raises(HandshakeError) as info:
        _server(limits=limits).receive_data(many)
    assert info.value.status == 431


def test_origin_policy() -> None:
    server = _server(origins={"http://ok.example"})
    request = server.receive_data(GOOD + b"\r\n")
    assert request is not None
    with pytest.raises(HandshakeError) as info:
        server.accept(request)
    assert info.value.status == 403
    server = _server(origins=lambda origin: origin == "http://example.com")
    request = server.receive_data(GOOD + b"\r\n")
    assert request is not None
    server.accept(request)


def test_client_rejects_bad_responses() -> None:
    def run(response: bytes) -> HandshakeError:
        client = ClientHandshake("h", "/", subprotocols=("infernet.v1",), deflate=DeflateConfig())
        with pytest.raises(HandshakeError) as info:
            client.receive_data(response.replace(b"ACCEPT", accept_key(client.key).encode()))
        return info.value

    ok = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ACCEPT\r\n"
    assert run(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n").status == 403
    assert "Accept" in str(run(ok.replace(b"ACCEPT", b"wrong") + b"\r\n"))
    assert "subprotocol" in str(run(ok + b"Sec-WebSocket-Protocol: other\r\n\r\n"))
    assert "extension" in str(run(ok + b"Sec-WebSocket-Extensions: x-unknown\r\n\r\n"))
    assert "permessage-deflate" in str(
        run(ok + b"Sec-WebSocket-Extensions: permessage-deflate; foo\r\n\r\n")
    )


def test_extension_grammar() -> None:
    assert parse_extensions('permessage-deflate; client_max_window_bits="10", x; a=b') == [
        ("permessage-deflate", [("client_max_window_bits", "10")]),
        ("x", [("a", "b")]),
    ]
    for bad in ("a b", "x; =1", 'x; a="b c"'):
        with pytest.raises(HandshakeError):
            parse_extensions(bad)


def test_deflate_negotiation_all_parameters() -> None:
    cfg = DeflateConfig(
        server_no_context_takeover=True,
        client_no_context_takeover=True,
        server_max_window_bits=10,
        client_max_window_bits=11,
    )
    offer = client_offer(cfg)
    chosen = server_accept([offer], DeflateConfig())
    assert chosen is not None
    response, server_params = chosen
    assert server_params.local_no_context_takeover
    assert server_params.remote_no_context_takeover
    assert (server_params.local_max_window_bits, server_params.remote_max_window_bits) == (10, 11)
    client_params = client_accept(response, cfg)
    assert (client_params.local_max_window_bits, client_params.remote_max_window_bits) == (11, 10)
    assert client_params.local_no_context_takeover
    assert client_params.remote_no_context_takeover


def test_deflate_declines_invalid_offers_and_tries_the_next() -> None:
    offers = [
        [("server_max_window_bits", "8")],
        [("bogus", None)],
        [("server_max_window_bits", "07")],
        [],
    ]
    chosen = server_accept(offers, DeflateConfig())
    assert chosen is not None
    assert chosen[0] == []  # the last, parameter-less offer was taken
    assert server_accept(offers[:3], DeflateConfig()) is None


def test_client_refuses_8_bit_window_and_ignored_requests() -> None:
    with pytest.raises(HandshakeError):
        client_accept([("client_max_window_bits", "8")], DeflateConfig())
    with pytest.raises(HandshakeError):
        client_accept([], DeflateConfig(server_no_context_takeover=True))
    with pytest.raises(HandshakeError):
        client_accept([("server_max_window_bits", "12")], DeflateConfig(server_max_window_bits=10))


def test_http_response_serialization() -> None:
    raw = HttpResponse(200, [("Content-Type", "application/json")], b"{}").to_bytes()
    assert (
        raw
        == b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    )
    with pytest.raises(ValueError, match="invalid HTTP header"):
        HttpResponse(200, [("X", "a\r\nInjected: 1")]).to_bytes()
