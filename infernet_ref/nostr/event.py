"""NIP-01 events: canonical serialization, id, signing and verification (spec/nostr.md §Events).

Theory of operation. An event's id is ``sha256`` of the UTF-8 JSON array
``[0, pubkey, created_at, kind, tags, content]`` written with no whitespace and NIP-01's string
escaping (``\\n \\" \\\\ \\r \\t \\b \\f``; other C0 controls as lower-case ``\\u00XX``; everything
else, U+2028/U+2029 included, verbatim). That is exactly ``json.dumps(..., ensure_ascii=False,
separators=(",", ":"))`` and :func:`infernet_ref.encoding.canonical_json` for this array (a test
pins the agreement); a lone surrogate has no UTF-8 form and is refused.

Verification has two faces. :func:`check_event` explains: it raises :class:`EventError` naming the
first broken rule. :func:`verify_event` answers: it returns ``False`` on any hostile input and never
raises. Both apply the same shape rules, which are a hand-compiled copy of
``spec/schemas/nostr-event.schema.json`` (a property test checks them against the schema), so the
hot path needs one string build (C-escaped strings joined), one ``sha256``, two hex round trips
and one libsecp256k1 verify.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any

from coincurve import PrivateKey, PublicKeyXOnly
from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT

from infernet_ref.errors import LocalProtocolError
from infernet_ref.nostr.errors import EventEncodingError, EventError, KeyFormatError
from infernet_ref.nostr.schnorr import Signer

#: Limits copied from nostr-event.schema.json (spec/nostr.md §Events).
MAX_TAGS = 2000
MAX_TAG_ITEMS = 64
MAX_TAG_VALUE = 65536
MAX_CONTENT = 1 << 20
MAX_CREATED_AT = 0xFFFFFFFF
MAX_KIND = 65535

_FIELDS = frozenset(("id", "pubkey", "created_at", "kind", "tags", "content", "sig"))
_TEMPLATE_FIELDS = frozenset(("pubkey", "created_at", "kind", "tags", "content"))
_HEX64 = re.compile(r"[0-9a-f]{64}").fullmatch
_HEX128 = re.compile(r"[0-9a-f]{128}").fullmatch
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
_sha256 = hashlib.sha256
# The two libsecp256k1 calls coincurve's PublicKeyXOnly(...).verify(...) makes, without its
# per-call Python object (coincurve is pinned <22; tests hold both paths to the same verdicts).
_CTX = GLOBAL_CONTEXT.ctx
_xonly_new = ffi.new
_xonly_parse = lib.secp256k1_xonly_pubkey_parse
_schnorr_verify = lib.secp256k1_schnorrsig_verify
#: Parsed x-only keys by hex (BIP-340 lift_x costs a square root). Only keys that parsed are
#: stored; parsing is a pure function of the 32 bytes, so a hit gives the same verdict as a parse.
KEY_CACHE_SIZE = 4096
_KEY_CACHE: dict[str, Any] = {}


def clear_key_cache() -> None:
    """Forget parsed public keys (benchmarks use it to measure the cold path)."""
    _KEY_CACHE.clear()


#: NIP-01 string escaping: json's C string encoder, the one json.dumps(ensure_ascii=False) uses.
_encode_str: Any = json.encoder.encode_basestring


def serialize_checked(
    pubkey: str, created_at: int, kind: int, tags: list[list[str]], content: str
) -> str:
    """NIP-01 serialization of fields already known to be well-typed (hex pubkey, ints, strings).

    The string :func:`verify_event` hashes, equal to :func:`serialize_event` (property-tested).
    Raises ``ValueError`` for tags outside the schema's limits, ``TypeError`` for a non-string.
    """
    text = _serialize_tags_checked(tags)
    if text is None:
        raise ValueError("tags break nostr-event.schema.json")
    return _serialize_with_tags(pubkey, created_at, kind, text, content)


def _serialize_with_tags(pk: str, created_at: int, kind: int, tags_json: str, content: str) -> str:
    # [0,pubkey,created_at,kind,tags,content] exactly as json.dumps(ensure_ascii=False,
    # separators=(",", ":")) writes it: plain ints, strings through the same C escaper.
    return f'[0,"{pk}",{created_at},{kind},{tags_json},{_encode_str(content)}]'


def _shape_error(ev: Any) -> tuple[str, str] | None:
    """Return (reason, path) of the first rule of nostr-event.schema.json ``ev`` breaks, or None."""
    if type(ev) is not dict:
        return "an event must be a JSON object", "$"
    if ev.keys() != _FIELDS:
        missing = sorted(_FIELDS - ev.keys())
        extra = sorted(k for k in ev if k not in _FIELDS)
        return f"fields missing {missing} / not allowed {[str(k) for k in extra]}", "$"
    for name, match in (("id", _HEX64), ("pubkey", _HEX64), ("sig", _HEX128)):
        value = ev[name]
        if type(value) is not str or not match(value):
            return (
                f"{name} must be {128 if name == 'sig' else 64} lower-case hex characters",
                f"$.{name}",
            )
    for name, top in (("created_at", MAX_CREATED_AT), ("kind", MAX_KIND)):
        value = ev[name]
        if type(value) is not int or not 0 <= value <= top:
            return f"{name} must be an integer in [0, {top}]", f"$.{name}"
    content = ev["content"]
    if type(content) is not str or len(content) > MAX_CONTENT:
        return f"content must be a string of at most {MAX_CONTENT} characters", "$.content"
    return _tags_error(ev["tags"])


def _tags_error(tags: Any) -> tuple[str, str] | None:
    if type(tags) is not list or len(tags) > MAX_TAGS:
        return f"tags must be an array of at most {MAX_TAGS} tags", "$.tags"
    for i, tag in enumerate(tags):
        if type(tag) is not list or not 0 < len(tag) <= MAX_TAG_ITEMS:
            return f"a tag must be an array of 1 to {MAX_TAG_ITEMS} strings", f"$.tags[{i}]"
        for j, item in enumerate(tag):
            if type(item) is not str or len(item) > MAX_TAG_VALUE:
                return (
                    f"a tag item must be a string of at most {MAX_TAG_VALUE} characters",
                    f"$.tags[{i}][{j}]",
                )
    return None


def serialize_event(event: dict[str, Any]) -> bytes:
    """Return the NIP-01 serialization ``[0, pubkey, created_at, kind, tags, content]`` as UTF-8."""
    try:
        text = _dumps(
            [
                0,
                event["pubkey"],
                event["created_at"],
                event["kind"],
                event["tags"],
                event["content"],
            ]
        )
        return text.encode("utf-8")
    except KeyError as exc:
        raise EventEncodingError(f"event has no {exc.args[0]!r} field") from exc
    except UnicodeEncodeError as exc:
        raise EventEncodingError(
            f"event holds a lone surrogate (U+{ord(exc.object[exc.start]):04X}); it has no UTF-8 form"
        ) from exc
    except (TypeError, ValueError) as exc:
        raise EventEncodingError(f"event fields are not JSON-serializable: {exc}") from exc


def event_id(event: dict[str, Any]) -> str:
    """Return the NIP-01 id (lower-case hex sha256 of :func:`serialize_event`)."""
    return _sha256(serialize_event(event)).hexdigest()


def _plain_int(value: Any) -> Any:
    """An IntEnum member or int subclass becomes a plain int; bool and other types pass unchanged."""
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else value


def finish_event(template: dict[str, Any], key: Signer, aux: bytes | None = None) -> dict[str, Any]:
    """Sign ``template`` with a parsed key; see :func:`sign_event`."""
    if not isinstance(template, dict):
        raise LocalProtocolError("an event template must be a dict")
    extra = set(template) - _TEMPLATE_FIELDS - {"id", "sig"}
    if extra:
        raise LocalProtocolError(f"event template has unknown fields {sorted(map(str, extra))}")
    pubkey = key.public_key.hex()
    if template.get("pubkey", pubkey) != pubkey:
        raise LocalProtocolError("template pubkey does not belong to the signing key")
    tags = template.get("tags", [])
    if not isinstance(tags, list | tuple) or not all(isinstance(t, list | tuple) for t in tags):
        raise LocalProtocolError("tags must be a list of lists of strings")
    event: dict[str, Any] = {
        "id": "0" * 64,
        "pubkey": pubkey,
        "created_at": _plain_int(template["created_at"])
        if "created_at" in template
        else int(time.time()),
        "kind": _plain_int(template.get("kind")),
        "tags": [list(t) for t in tags],
        "content": template.get("content", ""),
        "sig": "0" * 128,
    }
    problem = _shape_error(event)
    if problem is not None:
        raise LocalProtocolError(f"cannot sign: {problem[0]} at {problem[1]}")
    digest = _sha256(serialize_event(event)).digest()
    event["id"] = digest.hex()
    event["sig"] = key.sign(digest, aux).hex()
    return event


def sign_event(
    template: dict[str, Any], sk: bytes | str | PrivateKey | Signer, *, aux: bytes | None = None
) -> dict[str, Any]:
    """Return a signed NIP-01 event from ``template`` (kind, tags, content, optional created_at).

    ``sk`` is 32 bytes, 64 hex characters, a :class:`Signer` or a :class:`coincurve.PrivateKey`;
    pass a :class:`Signer` to sign many events with one key (its keypair is computed once).
    ``created_at`` defaults to the current time; ``aux`` (32 bytes) to fresh randomness. Raises
    :class:`LocalProtocolError` for a template that would not make a valid event,
    :class:`EventEncodingError` for a lone surrogate.
    """
    if isinstance(sk, PrivateKey):
        sk = sk.secret
    signer = sk if isinstance(sk, Signer) else Signer(sk)
    if aux is not None and len(aux) != 32:
        raise KeyFormatError("aux_rand must be 32 bytes")
    return finish_event(template, signer, aux)


def check_event(event: Any) -> None:
    """Check shape, id and signature (NIP-01); raise :class:`EventError` naming the first failure."""
    problem = _shape_error(event)
    if problem is not None:
        raise EventError(*problem)
    try:
        digest = _sha256(serialize_event(event)).digest()
    except EventEncodingError as exc:
        raise EventError(str(exc), "$") from exc
    if digest.hex() != event["id"]:
        raise EventError("id is not sha256 of the event's serialization", "$.id")
    try:
        key = PublicKeyXOnly(bytes.fromhex(event["pubkey"]))
    except ValueError as exc:
        raise EventError("pubkey is not the x coordinate of a secp256k1 point", "$.pubkey") from exc
    if not key.verify(bytes.fromhex(event["sig"]), digest):
        raise EventError("signature does not verify under pubkey", "$.sig")


def verify_event(event: Any) -> bool:
    """Return True iff ``event`` is a well-formed NIP-01 event whose id and signature hold.

    Never raises: hostile input of any type gives ``False``. This is the hot path: the same
    rules as :func:`check_event` (property tests hold the verdicts equal), written flat. Each
    hex rule is implied by a cheaper test with the same verdict: ``id`` must equal
    ``sha256(...).hexdigest()`` (always 64 lower-case hex), ``sig`` and an uncached ``pubkey``
    must survive ``bytes.fromhex(x).hex() == x`` (only lower-case hex does), and a cached
    ``pubkey`` passed that test when it was stored.
    """
    try:
        if type(event) is not dict or len(event) != 7:
            return False
        # seven members and all seven names present: the member set is exactly _FIELDS
        eid, pk, sig = event["id"], event["pubkey"], event["sig"]
        created_at, kind, tags, content = (
            event["created_at"],
            event["kind"],
            event["tags"],
            event["content"],
        )
        if type(pk) is not str or len(pk) != 64 or type(sig) is not str or len(sig) != 128:
            return False
        if type(created_at) is not int or not 0 <= created_at <= MAX_CREATED_AT:
            return False
        if type(kind) is not int or not 0 <= kind <= MAX_KIND:
            return False
        if type(content) is not str or len(content) > MAX_CONTENT:
            return False
        if type(tags) is not list or len(tags) > MAX_TAGS:
            return False
        text = _serialize_tags_checked(tags)
        if text is None:
            return False
        text = _serialize_with_tags(pk, created_at, kind, text, content)  # = serialize_checked
        digest = _sha256(text.encode()).digest()
        if digest.hex() != eid:
            return False
        raw_sig = bytes.fromhex(sig)
        if raw_sig.hex() != sig:
            return False
        key = _KEY_CACHE.get(pk)
        if key is None:
            raw_pk = bytes.fromhex(pk)
            if raw_pk.hex() != pk:
                return False
            key = _xonly_new("secp256k1_xonly_pubkey *")
            if not _xonly_parse(_CTX, key, raw_pk):
                return False
            if len(_KEY_CACHE) >= KEY_CACHE_SIZE:
                _KEY_CACHE.clear()
            _KEY_CACHE[pk] = key
        return bool(_schnorr_verify(_CTX, raw_sig, digest, 32, key))
    except (KeyError, ValueError, TypeError, RecursionError):  # UnicodeEncodeError is a ValueError
        return False


def _serialize_tags_checked(tags: list[Any]) -> str | None:
    """JSON of ``tags`` if it holds 1-64-item lists of strings of at most 65536 characters, else None.

    Raises TypeError for a non-string item (the C string encoder refuses it). A tag's JSON is
    never shorter than its longest item, so the per-item length scan runs only for long tags.
    """
    parts = []
    for tag in tags:
        if type(tag) is not list or not 0 < len(tag) <= MAX_TAG_ITEMS:
            return None
        part = ",".join(map(_encode_str, tag))
        if len(part) > MAX_TAG_VALUE and max(map(len, tag)) > MAX_TAG_VALUE:
            return None
        parts.append(part)
    return "[[" + "],[".join(parts) + "]]" if parts else "[]"
