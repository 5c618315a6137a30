"""NIP-42-style authentication: challenge, kind-22242 response, endpoint, window, replay."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infernet_ref.nostr import AuthError, generate_secret_key, public_key, sign_event
from infernet_ref.nostr.auth import AuthChallenger, auth_response, normalize_url

from .conftest import emit_vectors

URL = "ws://127.0.0.1:9000/infernet"
NOW = 1_700_000_000
SK = bytes.fromhex("0000000000000000000000000000000000000000000000000000000000000003")


@pytest.fixture
def server() -> AuthChallenger:
    return AuthChallenger(URL, window=600, ttl=300)


def test_happy_path_and_replay(server: AuthChallenger) -> None:
    c = server.issue(NOW)
    ev = auth_response(c, URL, SK, created_at=NOW)
    assert server.verify(ev, NOW + 1, challenge=c) == public_key(SK).hex()
    with pytest.raises(AuthError, match="already used"):
        server.verify(ev, NOW + 2)


@pytest.mark.parametrize("tag", ["relay", "endpoint"])
def test_either_url_tag_and_normalised_url(server: AuthChallenger, tag: str) -> None:
    c = server.issue(NOW)
    ev = auth_response(c, "WS://127.0.0.1:9000/infernet/", SK, created_at=NOW, tag=tag)
    assert server.verify(ev, NOW)


def test_wrong_endpoint(server: AuthChallenger) -> None:
    c = server.issue(NOW)
    with pytest.raises(AuthError, match="not this endpoint"):
        server.verify(auth_response(c, "ws://127.0.0.1:9001/infernet", SK, created_at=NOW), NOW)
    # the challenge was consumed by that attempt
    with pytest.raises(AuthError, match="already used"):
        server.verify(auth_response(c, URL, SK, created_at=NOW), NOW)


@pytest.mark.parametrize("skew", [-601, 601, -10_000])
def test_created_at_window(server: AuthChallenger, skew: int) -> None:
    c = server.issue(NOW)
    with pytest.raises(AuthError, match="server clock"):
        server.verify(auth_response(c, URL, SK, created_at=NOW + skew), NOW)


def test_window_edges_accepted(server: AuthChallenger) -> None:
    for skew in (-600, 600):
        c = server.issue(NOW)
        assert server.verify(auth_response(c, URL, SK, created_at=NOW + skew), NOW)


def test_unknown_and_expired_challenges(server: AuthChallenger) -> None:
    with pytest.raises(AuthError, match="unknown"):
        server.verify(auth_response("f" * 64, URL, SK, created_at=NOW), NOW)
    c = server.issue(NOW)
    with pytest.raises(AuthError, match="expired"):
        server.verify(auth_response(c, URL, SK, created_at=NOW + 301), NOW + 301)


def test_connection_binding(server: AuthChallenger) -> None:
    mine, other = server.issue(NOW), server.issue(NOW)
    with pytest.raises(AuthError, match="another challenge"):
        server.verify(auth_response(other, URL, SK, created_at=NOW), NOW, challenge=mine)


def test_wrong_kind_and_bad_signature(server: AuthChallenger) -> None:
    c = server.issue(NOW)
    ev = sign_event(
        {"kind": 1, "created_at": NOW, "tags": [["relay", URL], ["challenge", c]], "content": ""},
        SK,
    )
    with pytest.raises(AuthError, match="kind"):
        server.verify(ev, NOW)
    ev = auth_response(c, URL, SK, created_at=NOW)
    ev["sig"] = ev["sig"][:-1] + ("0" if ev["sig"][-1] != "0" else "1")
    with pytest.raises(AuthError, match="signature"):
        server.verify(ev, NOW)


@pytest.mark.parametrize(
    "tags",
    [
        [["relay", URL]],
        [["challenge", "c" * 32]],
        [["relay", URL], ["challenge", "c" * 32], ["challenge", "d" * 32]],
        [["relay", URL], ["endpoint", URL], ["challenge", "c" * 32]],
        [["relay", "http://x"], ["challenge", "c" * 32]],
        [["relay", URL], ["challenge", "short"]],
        [["relay"], ["challenge", "c" * 32]],
    ],
)
def test_tag_rules(server: AuthChallenger, tags: list[list[str]]) -> None:
    ev = sign_event({"kind": 22242, "created_at": NOW, "tags": tags, "content": ""}, SK)
    with pytest.raises(AuthError):
        server.verify(ev, NOW)


@pytest.mark.parametrize("junk", [None, 5, "x", {}, {"kind": 22242}])
def test_junk_is_auth_error(server: AuthChallenger, junk: Any) -> None:
    with pytest.raises(AuthError):
        server.verify(junk, NOW)


def test_state_is_bounded() -> None:
    server = AuthChallenger(URL, max_pending=3)
    first = server.issue(NOW)
    for _ in range(5):
        server.issue(NOW)
    assert len(server._pending) == 3
    with pytest.raises(AuthError, match="unknown"):
        server.verify(auth_response(first, URL, SK, created_at=NOW), NOW)


def test_many_clients() -> None:
    server = AuthChallenger(URL)
    keys = [generate_secret_key() for _ in range(20)]
    chals = [server.issue(NOW) for _ in keys]
    for sk, c in zip(keys, chals, strict=True):
        assert (
            server.verify(auth_response(c, URL, sk, created_at=NOW), NOW, challenge=c)
            == public_key(sk).hex()
        )


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("ws://Host:80/a/", "ws://host/a"),
        ("wss://h:443", "wss://h"),
        ("ws://[::1]:9/x", "ws://[::1]:9/x"),
    ],
)
def test_normalize_url(a: str, b: str) -> None:
    assert normalize_url(a) == normalize_url(b)


def test_vectors() -> None:
    """spec/vectors/nostr/auth.json: exchanges a server must accept or refuse (with ``now``)."""
    c = "b" * 64
    good_relay = sign_event(
        {
            "kind": 22242,
            "created_at": NOW,
            "tags": [["relay", URL], ["challenge", c]],
            "content": "",
        },
        SK,
        aux=bytes(32),
    )
    good = sign_event(
        {
            "kind": 22242,
            "created_at": NOW,
            "tags": [["endpoint", URL], ["challenge", c]],
            "content": "",
        },
        SK,
        aux=bytes(32),
    )

    def variant(**kw: Any) -> dict[str, Any]:
        tags = kw.pop(
            "tags", [["endpoint", kw.pop("url", URL)], ["challenge", kw.pop("challenge", c)]]
        )
        t = {
            "kind": kw.pop("kind", 22242),
            "created_at": kw.pop("created_at", NOW),
            "tags": tags,
            "content": "",
        }
        return sign_event(t, SK, aux=bytes(32))

    tampered = dict(good, content="x")
    cases = [
        {"name": "valid_endpoint_tag", "event": good, "accept": True},
        {"name": "valid_relay_tag", "event": good_relay, "accept": True},
        {"name": "invalid_wrong_challenge", "event": variant(challenge="c" * 64), "accept": False},
        {
            "name": "invalid_wrong_endpoint",
            "event": variant(url="ws://127.0.0.1:9001/infernet"),
            "accept": False,
        },
        {"name": "invalid_too_old", "event": variant(created_at=NOW - 601), "accept": False},
        {"name": "invalid_too_new", "event": variant(created_at=NOW + 601), "accept": False},
        {"name": "invalid_kind", "event": variant(kind=22243), "accept": False},
        {
            "name": "invalid_missing_challenge",
            "event": variant(tags=[["endpoint", URL]]),
            "accept": False,
        },
        {"name": "invalid_tampered", "event": tampered, "accept": False},
    ]
    for case in cases:
        server = AuthChallenger(URL, window=600)
        server._pending[c] = NOW + 600  # as if issued on this connection
        if case["accept"]:
            assert server.verify(case["event"], NOW, challenge=c) == public_key(SK).hex()
            with pytest.raises(AuthError):
                server.verify(case["event"], NOW, challenge=c)  # replay
        else:
            with pytest.raises(AuthError):
                server.verify(case["event"], NOW, challenge=c)
    emit_vectors(
        "auth.json", {"endpoint": URL, "challenge": c, "now": NOW, "window": 600, "cases": cases}
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=70),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["id", "pubkey", "created_at", "kind", "tags", "content", "sig", None]),
    json_values,
    st.lists(st.lists(st.text(max_size=70), min_size=1, max_size=3), max_size=4),
)
def test_hostile_responses_only_auth_errors(
    field: str | None, value: Any, tags: list[list[str]]
) -> None:
    """Any response other than the one genuine answer is refused with AuthError, and nothing else."""
    server = AuthChallenger(URL)
    c = server.issue(NOW)
    genuine = auth_response(c, URL, SK, created_at=NOW)
    if field is not None:
        ev: dict[str, Any] = {**genuine, field: value}
    else:
        ev = sign_event({"kind": 22242, "created_at": NOW, "tags": tags, "content": ""}, SK)
    try:
        assert server.verify(ev, NOW) == public_key(SK).hex()
    except AuthError:
        return
    assert ev == genuine or (
        field is None and sorted(tags) == sorted([["relay", URL], ["challenge", c]])
    )
