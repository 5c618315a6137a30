"""Sans-I/O job connection: auth state machine, binary pairing, errors, heartbeats (spec/job.md)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infernet_ref.errors import LocalProtocolError
from infernet_ref.node.auth import AuthChallenger, make_auth_event
from infernet_ref.node.errors import ErrorCode
from infernet_ref.node.messages import build_message, encode_message
from infernet_ref.node.protocol import (
    Authenticated,
    CloseRequested,
    ConnState,
    JobConnection,
    MessageReceived,
    PeerTimedOut,
    ProtocolViolation,
    Side,
)
from infernet_ref.nostr import generate_secret_key, public_key, sign_event

EP = "ws://127.0.0.1:9/job"
T0 = 1_700_000_000.0


def pair(guard: AuthChallenger | None = None) -> tuple[JobConnection, JobConnection]:
    server = JobConnection(
        Side.SERVER,
        EP,
        generate_secret_key(),
        T0,
        challenger=guard or AuthChallenger(EP),
    )
    client = JobConnection(Side.CLIENT, EP, generate_secret_key(), T0)
    return server, client


def pump(a: JobConnection, b: JobConnection, now: float = T0) -> tuple[list[object], list[object]]:
    """Deliver frames both ways until quiet; returns (events at a, events at b)."""
    ev_a: list[object] = []
    ev_b: list[object] = []
    for _ in range(20):
        out_a, out_b = a.data_to_send(), b.data_to_send()
        if not out_a and not out_b:
            break
        for f in out_a:
            ev_b += b.receive_binary(f, now) if isinstance(f, bytes) else b.receive_text(f, now)
        for f in out_b:
            ev_a += a.receive_binary(f, now) if isinstance(f, bytes) else a.receive_text(f, now)
    return ev_a, ev_b


def errors_in(frames: list[str | bytes]) -> list[int]:
    return [
        json.loads(f)["body"]["code"] for f in frames if isinstance(f, str) and '"sys.error"' in f
    ]


def test_handshake_authenticates_both_sides() -> None:
    server, client = pair()
    ev_s, ev_c = pump(server, client)
    assert server.state is client.state is ConnState.AUTHENTICATED
    assert ev_s == [Authenticated(public_key(client.secret_key).hex())]
    assert ev_c == [Authenticated(public_key(server.secret_key).hex())]


def test_message_with_binary_payload_round_trips() -> None:
    server, client = pair()
    pump(server, client)
    client.send(
        "stage.forward", {"session": "s1", "step": 0, "position": 0}, payload=b"\x00\x01activations"
    )
    ev_s, _ = pump(server, client)
    assert len(ev_s) == 1
    assert isinstance(ev_s[0], MessageReceived)
    assert ev_s[0].payload == b"\x00\x01activations"
    assert ev_s[0].message.body.session == "s1"


def test_message_before_auth_is_refused_with_4001() -> None:
    server, _ = pair()
    server.data_to_send()
    ev = server.receive_text(
        encode_message(build_message("job.status", "x1", {"job": "j-00000001"})), T0
    )
    assert ev == [ProtocolViolation(4001, "job.status before authentication")]
    assert errors_in(server.data_to_send()) == [4001]
    assert server.state is ConnState.AWAIT_AUTH


def _response(
    sk: bytes, challenge: str, endpoint: str = EP, created: float = T0, kind: int = 22242
) -> str:
    if kind == 22242:
        ev = make_auth_event(sk, challenge=challenge, endpoint=endpoint, now=created)
    else:
        ev = sign_event(
            {
                "kind": kind,
                "tags": [["endpoint", endpoint], ["challenge", challenge]],
                "content": "",
                "created_at": int(created),
            },
            sk,
        )
    return encode_message(build_message("auth.response", "r1", {"event": ev}))


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"challenge": "d" * 24}, "challenge"),
        ({"endpoint": "ws://evil/job"}, "endpoint"),
        ({"created": T0 - 3600}, "window"),
        ({"kind": 1}, "kind"),
    ],
)
def test_bad_auth_is_fatal_4002(kwargs: dict[str, object], why: str) -> None:
    server, _ = pair()
    server.data_to_send()
    args: dict[str, object] = {"challenge": server.challenge} | kwargs
    ev = server.receive_text(_response(generate_secret_key(), **args), T0)  # type: ignore[arg-type]
    assert isinstance(ev[0], ProtocolViolation), why
    assert ev[0].code == 4002, why
    assert isinstance(ev[-1], CloseRequested)
    assert ev[-1].code == 1008
    assert server.state is ConnState.CLOSED
    assert errors_in(server.data_to_send()) == [4002]


def test_tampered_signature_refused() -> None:
    server, _ = pair()
    server.data_to_send()
    ev = make_auth_event(
        generate_secret_key(), challenge=str(server.challenge), endpoint=EP, now=T0
    )
    ev["sig"] = ("0" if ev["sig"][0] != "0" else "1") + ev["sig"][1:]
    out = server.receive_text(
        encode_message(build_message("auth.response", "r1", {"event": ev})), T0
    )
    assert isinstance(out[0], ProtocolViolation)
    assert out[0].code == 4002


def test_replayed_auth_refused() -> None:
    guard = AuthChallenger(EP)
    sk = generate_secret_key()
    s1, _ = pair(guard)
    frame = _response(sk, str(s1.challenge))
    assert isinstance(s1.receive_text(frame, T0)[0], Authenticated)
    s2, _ = pair(guard)
    ev = s2.receive_text(frame, T0)  # the same event on another connection: wrong/used challenge
    assert isinstance(ev[0], ProtocolViolation)
    assert ev[0].code == 4002


def test_response_to_another_connections_challenge_refused() -> None:
    guard = AuthChallenger(EP)
    s1, _ = pair(guard)
    s2, _ = pair(guard)
    ev = s2.receive_text(_response(generate_secret_key(), str(s1.challenge)), T0)
    assert isinstance(ev[0], ProtocolViolation)
    assert ev[0].code == 4002


def test_binary_mismatch_and_unannounced_binary_get_4000_and_connection_survives() -> None:
    server, client = pair()
    pump(server, client)
    assert server.receive_binary(b"stray", T0)[0] == ProtocolViolation(
        4000, "binary frame without an announcing envelope"
    )
    client.send("stage.forward", {"session": "s1", "step": 0, "position": 0}, payload=b"abc")
    frames = client.data_to_send()
    server.receive_text(frames[0], T0)
    ev = server.receive_binary(b"abd", T0)
    assert isinstance(ev[0], ProtocolViolation)
    assert ev[0].code == 4000
    client.send("job.status", {"job": "j-00000001"})
    ev_s, _ = pump(server, client)
    assert isinstance(ev_s[-1], MessageReceived)


def test_announced_binary_replaced_by_text_is_an_error_then_text_processed() -> None:
    server, client = pair()
    pump(server, client)
    client.send("stage.forward", {"session": "s1", "step": 0, "position": 0}, payload=b"abc")
    env = client.data_to_send()[0]
    server.receive_text(env, T0)
    client.send("job.status", {"job": "j-00000001"})
    ev = server.receive_text(client.data_to_send()[0], T0)
    assert isinstance(ev[0], ProtocolViolation)
    assert isinstance(ev[1], MessageReceived)


def test_error_codes_for_malformed_unknown_version_and_oversize() -> None:
    server, client = pair()
    pump(server, client)
    server.max_message_size = 200
    server.receive_text("{not json", T0)
    server.receive_text('{"v":1,"type":"job.frobnicate","id":"a","body":{}}', T0)
    server.receive_text('{"v":7,"type":"job.status","id":"a","body":{"job":"j-00000001"}}', T0)
    server.receive_text("x" * 201, T0)
    server.receive_text(
        '{"v":1,"type":"auth.ok","id":"a","body":{"pubkey":"' + "0" * 64 + '"}}', T0
    )
    assert errors_in(server.data_to_send()) == [4000, 4004, 4006, 4005, 4090]
    assert server.state is ConnState.AUTHENTICATED


def test_refusals_name_the_refused_message_when_its_id_is_usable() -> None:
    server, client = pair()
    pump(server, client)
    server.receive_text('{"v":1,"type":"job.status","id":"m-7","body":{"job":1}}', T0)
    server.receive_text('{"v":1,"type":"job.frobnicate","id":"m-8","body":{}}', T0)
    server.receive_text('{"v":2,"type":"job.status","id":"m-9","body":{"job":"j-00000001"}}', T0)
    server.receive_text('{"v":1,"type":"job.status","id":"bad id!","body":{}}', T0)
    server.receive_text('{"v":1,"type":"job.status","id":7,"body":{}}', T0)
    replies = [json.loads(f) for f in server.data_to_send() if isinstance(f, str)]
    assert [(r["body"]["code"], r.get("re")) for r in replies] == [
        (4000, "m-7"),
        (4004, "m-8"),
        (4006, "m-9"),
        (4000, None),
        (4000, None),
    ]


def test_too_many_errors_close_the_connection() -> None:
    server, client = pair()
    pump(server, client)
    events: list[object] = []
    for _ in range(17):
        events += server.receive_text("[]", T0)
    assert isinstance(events[-1], CloseRequested)
    assert server.state is ConnState.CLOSED
    assert server.receive_text("[]", T0) == []


def test_heartbeat_answered_sent_when_idle_and_timeout_reported() -> None:
    server, client = pair()
    pump(server, client)
    assert client.tick(T0 + 16) == []
    _, _ = pump(server, client, T0 + 16)
    assert server.tick(T0 + 16 + 46) == [PeerTimedOut(46.0)]


def test_send_before_auth_is_local_error() -> None:
    _, client = pair()
    with pytest.raises(LocalProtocolError):
        client.send("job.status", {"job": "j-00000001"})
    with pytest.raises(LocalProtocolError):
        JobConnection(Side.SERVER, EP, generate_secret_key(), T0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=64), st.text(max_size=64)), max_size=8))
def test_fuzz_any_frames_give_events_never_exceptions(frames: list[bytes | str]) -> None:
    for authed in (False, True):
        server, client = pair()
        if authed:
            pump(server, client)
        for f in frames:
            out = (
                server.receive_binary(f, T0) if isinstance(f, bytes) else server.receive_text(f, T0)
            )
            assert all(
                isinstance(e, ProtocolViolation | CloseRequested | MessageReceived) for e in out
            )
        assert all(c in {e.value for e in ErrorCode} for c in errors_in(server.data_to_send()))
