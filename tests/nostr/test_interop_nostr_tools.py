"""Interop with nostr-tools (npm), both directions: events, NIP-44 payloads, NIP-19 strings."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from infernet_ref.nostr import (
    ProfilePointer,
    generate_secret_key,
    nip19_decode,
    nip44_conversation_key,
    nip44_decrypt,
    nip44_encrypt,
    nprofile_encode,
    npub_encode,
    nsec_encode,
    public_key,
    serialize_event,
    sign_event,
    verify_event,
)

from .nostr_tools import oracle
from .stress import STRESS, STRESS_TAGS

pytestmark = pytest.mark.interop

SK = bytes.fromhex("8f40e50a84a7462e2b8d24c28898ef1f23359fff50d8c509e6fb7ce06e142f9c")


def templates() -> list[dict[str, Any]]:
    out = [
        {"kind": 1, "created_at": 1_700_000_000 + i, "tags": [["t", name]], "content": c}
        for i, (name, c) in enumerate(STRESS.items())
    ]
    out.append(
        {"kind": 30023, "created_at": 1_700_000_100, "tags": STRESS_TAGS, "content": "many tags"}
    )
    out.append(
        {
            "kind": 38201,
            "created_at": 1_700_000_101,
            "tags": [
                ["d", "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"],
                ["endpoint", "ws://127.0.0.1:1/content"],
            ],
            "content": "",
        }
    )
    return out


def tampered(ev: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for field, value in [
        ("content", ev["content"] + "!"),
        ("created_at", ev["created_at"] + 1),
        ("kind", ev["kind"] + 1),
        ("tags", [*ev["tags"], ["x"]]),
    ]:
        bad = copy.deepcopy(ev)
        bad[field] = value
        out.append(bad)
    bad = copy.deepcopy(ev)
    bad["sig"] = ("0" if bad["sig"][0] != "0" else "1") + bad["sig"][1:]
    out.append(bad)
    return out


def test_our_events_verify_in_nostr_tools() -> None:
    events = [sign_event(t, SK) for t in templates()]
    bad = [b for ev in events for b in tampered(ev)]
    results = oracle(
        [{"op": "verify", "event": ev} for ev in events]
        + [{"op": "hash", "event": ev} for ev in events]
        + [{"op": "verify", "event": ev} for ev in bad]
    )
    n = len(events)
    assert results[:n] == [True] * n
    for ev, got in zip(events, results[n : 2 * n], strict=True):
        assert got["id"] == ev["id"]
        assert got["serialized"].encode() == serialize_event(ev)
    assert results[2 * n :] == [False] * len(bad)


def test_nostr_tools_events_verify_here() -> None:
    tmpl = templates()
    results = oracle(
        [{"op": "sign", "sk": SK.hex(), "template": t} for t in tmpl]
        + [{"op": "pubkey", "sk": SK.hex()}]
    )
    events, pk = results[:-1], results[-1]
    assert pk == public_key(SK).hex()
    for signed in events:
        ev = json.loads(json.dumps(signed))  # exactly the JSON shape a peer would send
        assert verify_event(ev), ev["content"][:40]
        for bad in tampered(ev):
            assert not verify_event(bad)


def test_nip44_both_ways() -> None:
    keys = [(generate_secret_key(), generate_secret_key()) for _ in range(4)]
    texts = [*(s for s in STRESS.values() if s and len(s.encode()) <= 65535), "a", "x" * 65535]
    requests: list[dict[str, Any]] = []
    ours: list[tuple[bytes, str, str]] = []
    for a, b in keys:
        requests.append({"op": "conversation_key", "sk": a.hex(), "pk": public_key(b).hex()})
    ck = nip44_conversation_key(keys[0][0], public_key(keys[0][1]))
    for i, text in enumerate(texts):
        nonce = bytes([i]) * 32
        payload = nip44_encrypt(text, ck)
        ours.append((nonce, text, payload))
        requests.append({"op": "nip44_decrypt", "ck": ck.hex(), "payload": payload})
        requests.append(
            {"op": "nip44_encrypt", "ck": ck.hex(), "plaintext": text, "nonce": nonce.hex()}
        )
        requests.append({"op": "nip44_encrypt", "ck": ck.hex(), "plaintext": text})
    results = oracle(requests)
    for (a, b), got in zip(keys, results[: len(keys)], strict=True):
        assert got == nip44_conversation_key(a, public_key(b)).hex()
    rest = results[len(keys) :]
    for k, (nonce, text, _payload) in enumerate(ours):
        decrypted, theirs_fixed, theirs_random = rest[3 * k : 3 * k + 3]
        # nostr-tools decodes with TextDecoder's default (ignoreBOM=false), which drops a leading
        # U+FEFF; NIP-44 plaintexts are byte-exact, so we keep it (test_nostr_tools_drops_leading_bom).
        assert decrypted == {"plaintext": text.removeprefix("\ufeff")}
        assert theirs_fixed == nip44_encrypt(text, ck, nonce)  # byte-identical for the same nonce
        assert nip44_decrypt(theirs_random, ck) == text


def test_nip44_rejections_agree() -> None:
    ck = bytes(range(32))
    good = nip44_encrypt("secret", ck)
    raw = bytearray(base64.b64decode(good))
    raw[40] ^= 1
    flipped = base64.b64encode(bytes(raw)).decode()
    results = oracle(
        [
            {"op": "nip44_decrypt", "ck": ck.hex(), "payload": p}
            for p in (good, flipped, "#" + good[1:], good[:-4])
        ]
    )
    assert results[0] == {"plaintext": "secret"}
    assert all("error" in r for r in results[1:])


def test_nip19_agrees() -> None:
    keys = [generate_secret_key() for _ in range(5)]
    relays = ["wss://relay.example", "ws://127.0.0.1:7777"]
    requests: list[dict[str, Any]] = []
    for sk in keys:
        pk = public_key(sk).hex()
        requests += [
            {"op": "npub", "hex": pk},
            {"op": "nsec", "hex": sk.hex()},
            {"op": "nprofile", "pubkey": pk, "relays": relays},
            {"op": "decode", "bech32": npub_encode(pk)},
            {"op": "decode", "bech32": nsec_encode(sk)},
            {"op": "decode", "bech32": nprofile_encode(pk, relays)},
        ]
    results = oracle(requests)
    for i, sk in enumerate(keys):
        pk = public_key(sk).hex()
        npub, nsec, nprofile, dec_npub, dec_nsec, dec_nprofile = results[6 * i : 6 * i + 6]
        assert npub == npub_encode(pk)
        assert nsec == nsec_encode(sk)
        # TLV record order differs (nostr-tools writes relays first, NIP-19's example pubkey
        # first); both are valid, so each side must decode the other's.
        assert nip19_decode(nprofile).data == ProfilePointer(bytes.fromhex(pk), tuple(relays))
        assert dec_nprofile == {"type": "nprofile", "data": {"pubkey": pk, "relays": relays}}
        assert dec_npub == {"type": "npub", "data": pk}
        assert dec_nsec == {"type": "nsec", "data": sk.hex()}


def test_nostr_tools_drops_leading_bom() -> None:
    """A divergence found by these tests (nostr-tools 2.25.2): its NIP-44 decrypt loses a leading BOM.

    The bytes on the wire are identical on both sides; only nostr-tools' UTF-8 decoding differs.
    """
    ck = bytes(range(32))
    text = "\ufeffhello"
    payload = nip44_encrypt(text, ck, bytes(32))
    (theirs_payload, theirs_plain) = oracle(
        [
            {"op": "nip44_encrypt", "ck": ck.hex(), "plaintext": text, "nonce": "00" * 32},
            {"op": "nip44_decrypt", "ck": ck.hex(), "payload": payload},
        ]
    )
    assert theirs_payload == payload
    assert nip44_decrypt(payload, ck) == text
    assert theirs_plain == {"plaintext": "hello"}
