"""Pure parts of the provider's router (spec/job.md §Direct routing): the fed-back token frame
is read without decoding it, and must agree with the runtime's full frame decoder (the oracle
here) on every frame the last stage can send; hostile bytes only ever give JobProtocolError."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from infernet_ref.errors import InfernetError
from infernet_ref.node.errors import JobProtocolError
from infernet_ref.node.routing import Ring, Route, _single_token, finish_reason, token_frame
from infernet_ref.runtime.frames import ActivationFrame, decode_frame, encode_frame


@given(
    st.integers(0, 2**62),
    st.integers(0, 1 << 20),
    st.text("abcXYZ019_-", min_size=1, max_size=64),
)
def test_token_frame_is_read_like_the_full_decoder(token: int, position: int, session: str) -> None:
    frame = token_frame(session, position, [token])
    full = decode_frame(frame)
    assert (full.kind, full.position, full.session) == ("input_ids", position, session)
    assert _single_token(frame) == int(full.tensor[0]) == token


def test_frames_other_than_one_token_are_refused() -> None:
    import torch

    two = token_frame("s", 0, [1, 2])
    hidden = encode_frame(ActivationFrame("s", 0, "hidden_states", torch.zeros(1, 4)))
    for bad in (two, hidden, b"", b"\x08" + b"\x00" * 7 + b"{}      " + b"\x00" * 8):
        with pytest.raises(JobProtocolError):
            _single_token(bad)


@given(st.binary(max_size=200))
def test_hostile_bytes_give_a_typed_error(data: bytes) -> None:
    try:
        token = _single_token(data)
    except JobProtocolError:
        return
    assert isinstance(token, int)
    assert token >= 0


@given(st.integers(0, 2**62))
def test_mutated_token_frames_never_crash(token: int) -> None:
    frame = bytearray(token_frame("s1", 3, [token]))
    for i in range(8, len(frame) - 8, 7):  # flip header bytes one at a time
        mutated = bytes(frame[:i]) + bytes([frame[i] ^ 0x20]) + bytes(frame[i + 1 :])
        try:
            _single_token(mutated)
        except JobProtocolError:
            pass
        except InfernetError as exc:  # pragma: no cover - would be a typing bug
            raise AssertionError(f"untyped failure {exc!r}") from exc


def test_finish_reason_order() -> None:
    route = Route.from_wire(
        {
            "prev": "a" * 64,
            "next": {"node": "b" * 64, "endpoint": "ws://127.0.0.1:1/job"},
            "client": "c" * 64,
            "generation": {
                "prompt_tokens": 2,
                "max_new_tokens": 3,
                "sampling": {"temperature": 0, "seed": 0},
                "stop_ids": [9],
                "eos_ids": [2],
            },
        },
        {"stage": 0, "layer_start": 0, "layer_end": 2, "num_layers": 4, "tp": 1},
    )
    assert (route.first, route.last) == (True, False)
    ring = Ring([1, 1])
    assert finish_reason(route, ring) is None
    ring.generated = [5, 9]
    assert finish_reason(route, ring) == "stop"
    ring.generated = [5, 2]
    assert finish_reason(route, ring) == "eos"
    ring.generated = [5, 6, 7]
    assert finish_reason(route, ring) == "length"


async def test_next_hop_links_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """A driver picks the next-hop endpoints, so one provider's outbound links are bounded."""
    import asyncio

    from infernet_ref.node import routing
    from infernet_ref.node.log import JsonLog
    from infernet_ref.nostr import generate_secret_key

    class Open:  # an open link that answers as the expected key
        def __init__(self, key: str) -> None:
            self.peer_pubkey, self.closed = key, asyncio.Event()

        async def close(self) -> None:
            self.closed.set()

    async def fake_open(endpoint: str, *_: object, **__: object) -> Open:
        return Open(endpoint[-64:])

    monkeypatch.setattr(routing, "open_peer", fake_open)
    monkeypatch.setattr(routing, "MAX_LINKS", 3)

    async def no_compute(*_: object, **__: object) -> tuple[bytes, float, int | None]:
        raise AssertionError

    r = routing.Router(generate_secret_key(), "0" * 64, JsonLog(level="error"), no_compute)
    keys = [f"{i:064x}" for i in range(5)]
    for k in keys[:3]:
        await r._link(f"ws://h/{k}", k)
    with pytest.raises(JobProtocolError) as exc:
        await r._link(f"ws://h/{keys[3]}", keys[3])
    assert exc.value.error_code == 4100
    r.links[f"ws://h/{keys[0]}"].closed.set()  # type: ignore[attr-defined]
    await r._link(f"ws://h/{keys[3]}", keys[3])  # a closed link frees its place
    assert len(r.links) == 3
    assert len(r._locks) <= 4
