"""Infernet event kinds: tag rules in code agree with spec/schemas/nostr-kinds.schema.json."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infernet_ref.errors import InfernetError
from infernet_ref.nostr import EventError, public_key, sign_event, verify_event
from infernet_ref.nostr.kinds import Kind, check_kind_rules, verify_infernet_event
from infernet_ref.specs import validate_data

SK = bytes.fromhex("0000000000000000000000000000000000000000000000000000000000000005")
PK = public_key(SK).hex()
NODE_ID = hashlib.sha256(bytes.fromhex(PK)).hexdigest()
CID = "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
DEFS = {
    Kind.AUTH: "AuthEvent",
    Kind.PROVIDER_ANNOUNCEMENT: "ProviderAnnouncementEvent",
    Kind.CONTENT_PROVIDER: "ContentProviderEvent",
    Kind.NODE_RECORD: "NodeRecordEvent",
    Kind.JOB_RECEIPT: "JobReceiptEvent",
    Kind.REPUTATION: "ReputationAttestationEvent",
}
GOOD: dict[Kind, tuple[list[list[str]], str]] = {
    Kind.AUTH: ([["relay", "ws://127.0.0.1:1"], ["challenge", "c" * 32]], ""),
    Kind.PROVIDER_ANNOUNCEMENT: ([["d", NODE_ID]], json.dumps({"models": []})),
    Kind.CONTENT_PROVIDER: ([["d", CID], ["endpoint", "wss://node.example/content"]], ""),
    Kind.NODE_RECORD: ([["d", "node"]], "{}"),
    Kind.JOB_RECEIPT: ([["job", "j-01HZX3R8Q9"], ["p", PK], ["result", "ab" * 32]], ""),
    Kind.REPUTATION: ([["p", PK], ["job", "j-01HZX3R8Q9"], ["verdict", "mismatch"]], ""),
}


def make(kind: Kind, tags: list[list[str]], content: str = "") -> dict[str, Any]:
    return sign_event(
        {"kind": kind, "created_at": 1_700_000_000, "tags": tags, "content": content},
        SK,
        aux=bytes(32),
    )


def schema_ok(ev: dict[str, Any]) -> bool:
    name = DEFS.get(ev["kind"])
    if name is None:
        return True
    try:
        validate_data(ev, "nostr-kinds", pointer=f"/$defs/{name}")
    except InfernetError:
        return False
    return True


def code_ok(ev: dict[str, Any]) -> bool:
    try:
        check_kind_rules(ev)
    except EventError:
        return False
    return True


@pytest.mark.parametrize("kind", list(Kind))
def test_good_events(kind: Kind) -> None:
    ev = make(kind, *GOOD[kind])
    assert verify_event(ev)
    assert verify_infernet_event(ev)
    assert schema_ok(ev)


BAD = [
    (
        Kind.PROVIDER_ANNOUNCEMENT,
        [["d", "00" * 32]],
        "{}",
        False,
    ),  # d is not sha256(pubkey): code only
    (Kind.PROVIDER_ANNOUNCEMENT, [["d", NODE_ID]], "[]", False),  # content not an object: code only
    (Kind.PROVIDER_ANNOUNCEMENT, [["d", NODE_ID.upper()]], "{}", True),
    (Kind.CONTENT_PROVIDER, [["d", CID]], "", True),
    (Kind.CONTENT_PROVIDER, [["d", "not a cid"], ["endpoint", "ws://x"]], "", True),
    (Kind.NODE_RECORD, [["d", "nodes"]], "{}", True),
    (Kind.NODE_RECORD, [["d", "node"]], "not json", False),
    (Kind.JOB_RECEIPT, [["job", "short"], ["p", PK], ["result", "ab" * 32]], "", True),
    (
        Kind.JOB_RECEIPT,
        [["job", "j-01HZX3R8Q9"], ["p", PK], ["p", PK], ["result", "ab" * 32]],
        "",
        True,
    ),
    (Kind.JOB_RECEIPT, [["job", "j-01HZX3R8Q9"], ["p", PK]], "", True),
    (Kind.REPUTATION, [["p", PK], ["job", "j-01HZX3R8Q9"], ["verdict", "great"]], "", True),
    (Kind.REPUTATION, [["p", PK], ["job", "j-01HZX3R8Q9"], ["verdict"]], "", True),
]


@pytest.mark.parametrize(("kind", "tags", "content", "schema_sees_it"), BAD)
def test_bad_events(kind: Kind, tags: list[list[str]], content: str, schema_sees_it: bool) -> None:
    ev = make(kind, tags, content)
    assert verify_event(ev)  # valid NIP-01 ...
    assert not verify_infernet_event(ev)  # ... but not a valid Infernet event
    with pytest.raises(EventError):
        check_kind_rules(ev)
    assert schema_ok(ev) is not schema_sees_it


tag_names = st.sampled_from(
    ["d", "p", "job", "result", "verdict", "relay", "endpoint", "challenge", "t", "e"]
)
tag_values = st.one_of(
    st.sampled_from(
        [
            NODE_ID,
            PK,
            CID,
            "node",
            "ok",
            "mismatch",
            "timeout",
            "j-01HZX3R8Q9",
            "ws://h:1/x",
            "wss://h",
            "c" * 20,
        ]
    ),
    st.text(max_size=30),
)
tags_st = st.lists(
    st.one_of(st.tuples(tag_names).map(list), st.tuples(tag_names, tag_values).map(list)),
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(Kind)), tags_st, st.booleans())
def test_code_and_schema_agree(kind: Kind, tags: list[list[str]], mutate_from_good: bool) -> None:
    if mutate_from_good:
        tags = copy.deepcopy(GOOD[kind][0]) + tags[:1]
    ev = {
        "id": "0" * 64,
        "pubkey": PK,
        "created_at": 1,
        "kind": int(kind),
        "tags": tags,
        "content": GOOD[kind][1],
        "sig": "0" * 128,
    }
    # The schema cannot express the node-id rule; compare on the rest.
    expected = schema_ok(ev)
    if kind == Kind.PROVIDER_ANNOUNCEMENT and expected:
        d = [t[1] for t in tags if t[0] == "d"]
        expected = d == [NODE_ID]
    assert code_ok(ev) is expected


def test_schema_examples_are_valid_infernet_events() -> None:
    from infernet_ref.specs import default_registry

    doc = default_registry().schema("nostr-kinds")
    for kind, name in DEFS.items():
        (example,) = doc["$defs"][name]["examples"]
        assert example["kind"] == kind
        assert verify_infernet_event(example)
        validate_data(example, "nostr-kinds", pointer=f"/$defs/{name}")


def test_addressable_supersedes() -> None:
    from infernet_ref.nostr.kinds import address, supersedes

    tags = [["d", CID], ["endpoint", "ws://h:1/x"]]
    old = make(Kind.CONTENT_PROVIDER, tags)
    newer = sign_event(
        {"kind": 38201, "created_at": old["created_at"] + 1, "tags": tags, "content": ""}, SK
    )
    assert address(old) == (38201, PK, CID)
    assert supersedes(newer, old)
    assert not supersedes(old, newer)
    tie = sign_event(
        {"kind": 38201, "created_at": old["created_at"], "tags": tags, "content": "x"}, SK
    )
    assert supersedes(tie, old) is (tie["id"] < old["id"])
    assert supersedes(old, tie) is (old["id"] < tie["id"])
    other_d = sign_event(
        {"kind": 38201, "created_at": old["created_at"] + 5, "tags": [["d", "x"]], "content": ""},
        SK,
    )
    assert not supersedes(other_d, old)
    receipt = make(Kind.JOB_RECEIPT, *GOOD[Kind.JOB_RECEIPT])
    assert not supersedes(receipt, receipt)
