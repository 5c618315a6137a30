"""Infernet event kinds and their tag rules (spec/nostr.md §Event kinds; notes CONTRACTS.md).

:func:`check_kind_rules` applies the rules of the kind-specific schema in
``spec/schemas/nostr-kinds.schema.json`` (hand-compiled here; a test checks the two agree) plus
the rules a schema cannot express (a provider announcement's ``d`` tag is sha256 of its pubkey).
Kinds not in :class:`Kind` pass: they are ordinary NOSTR events.
"""

from __future__ import annotations

import hashlib
import re
from enum import IntEnum
from typing import Any

from infernet_ref.nostr.errors import EventError


class Kind(IntEnum):
    """Event kinds of the Infernet Protocol (NIP-01 §Kinds ranges in comments)."""

    JOB_RECEIPT = 8200  # regular (1000..9999)
    REPUTATION = 8201  # regular
    AUTH = 22242  # ephemeral (20000..29999), NIP-42
    PROVIDER_ANNOUNCEMENT = 38200  # addressable (30000..39999)
    CONTENT_PROVIDER = 38201  # addressable
    NODE_RECORD = 38202  # addressable


HEX64 = re.compile(r"[0-9a-f]{64}")
WS_URL = re.compile(r"[wW][sS][sS]?://[^\s]{1,2040}")  # scheme is case-insensitive (RFC 3986 §3.1)
CID = re.compile(r"(b[a-z2-7]{7,127}|Qm[1-9A-HJ-NP-Za-km-z]{44})")
JOB_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
CHALLENGE = re.compile(r"[\x21-\x7e]{16,256}")
VERDICTS = ("ok", "mismatch", "timeout")

# kind -> list of (tag names, value pattern or allowed values, minimum, maximum count)
Rule = tuple[tuple[str, ...], "re.Pattern[str] | tuple[str, ...]", int, int]
RULES: dict[int, list[Rule]] = {
    Kind.AUTH: [(("challenge",), CHALLENGE, 1, 1), (("relay", "endpoint"), WS_URL, 1, 1)],
    Kind.PROVIDER_ANNOUNCEMENT: [(("d",), HEX64, 1, 1)],
    Kind.CONTENT_PROVIDER: [(("d",), CID, 1, 1), (("endpoint",), WS_URL, 1, 16)],
    Kind.NODE_RECORD: [(("d",), ("node",), 1, 1)],
    Kind.JOB_RECEIPT: [(("job",), JOB_ID, 1, 1), (("p",), HEX64, 1, 1), (("result",), HEX64, 1, 1)],
    Kind.REPUTATION: [
        (("p",), HEX64, 1, 1),
        (("job",), JOB_ID, 1, 1),
        (("verdict",), VERDICTS, 1, 1),
    ],
}
#: Kinds whose content MUST be a JSON object.
JSON_CONTENT = (Kind.PROVIDER_ANNOUNCEMENT, Kind.NODE_RECORD)


def _value_ok(value: str, allowed: re.Pattern[str] | tuple[str, ...]) -> bool:
    if isinstance(allowed, tuple):
        return value in allowed
    return allowed.fullmatch(value) is not None


def check_kind_rules(event: dict[str, Any]) -> None:
    """Raise :class:`EventError` if a shape-valid ``event`` of an Infernet kind breaks its tag rules."""
    kind = event["kind"]
    rules = RULES.get(kind)
    if rules is None:
        return
    for names, allowed, low, high in rules:
        found = [(i, t) for i, t in enumerate(event["tags"]) if t[0] in names]
        if not low <= len(found) <= high:
            raise EventError(
                f"kind {kind} needs {low}..{high} {'/'.join(names)} tag(s), found {len(found)}",
                "$.tags",
            )
        for i, tag in found:
            if len(tag) < 2 or not _value_ok(tag[1], allowed):
                raise EventError(f"kind {kind}: bad {tag[0]!r} tag value", f"$.tags[{i}][1]")
    if kind == Kind.PROVIDER_ANNOUNCEMENT:
        d = next(t[1] for t in event["tags"] if t[0] == "d")
        if d != hashlib.sha256(bytes.fromhex(event["pubkey"])).hexdigest():
            raise EventError(
                "provider announcement d tag must be sha256(pubkey), the node id", "$.tags"
            )
    if kind in JSON_CONTENT:
        from infernet_ref.encoding import json_decode  # noqa: PLC0415
        from infernet_ref.errors import EncodingError  # noqa: PLC0415

        try:
            content = json_decode(event["content"])
        except EncodingError as exc:
            raise EventError(
                f"kind {kind} content must be a JSON object: {exc}", "$.content"
            ) from exc
        if not isinstance(content, dict):
            raise EventError(f"kind {kind} content must be a JSON object", "$.content")


def verify_infernet_event(event: Any) -> bool:
    """True iff ``event`` verifies (NIP-01) and satisfies its Infernet kind's rules; never raises."""
    from infernet_ref.nostr.event import check_event  # noqa: PLC0415

    try:
        check_event(event)
        check_kind_rules(event)
    except EventError:
        return False
    return True


def is_addressable(kind: int) -> bool:
    """NIP-01 §Kinds: 30000 <= kind < 40000 is addressable (one event per kind, pubkey, d tag)."""
    return 30000 <= kind < 40000


def address(event: dict[str, Any]) -> tuple[int, str, str]:
    """The (kind, pubkey, d) coordinate of an addressable event (a missing d tag counts as "")."""
    d = next((t[1] for t in event["tags"] if len(t) >= 2 and t[0] == "d"), "")
    return event["kind"], event["pubkey"], d


def supersedes(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """True if ``new`` replaces ``old`` at the same address (spec/nostr.md rule 11, NIP-01).

    The greater ``created_at`` wins; on a tie the lower id wins. Events at different addresses, or
    not addressable, never supersede each other.
    """
    if not is_addressable(new["kind"]) or address(new) != address(old):
        return False
    return (new["created_at"], old["id"]) > (old["created_at"], new["id"])
