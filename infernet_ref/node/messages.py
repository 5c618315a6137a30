"""Job-protocol messages at the boundary (spec/job.md §Messages).

``parse_message`` turns one text frame from a peer into a :class:`Message`: strict JSON decode
with size and depth limits, validation of the whole message against
``job-messages.schema.json`` (envelope plus the ``type`` -> body table), then the typed body
model generated from the body's ``$defs`` entry. Every failure is a :class:`JobProtocolError`
carrying the code to answer with (4000, 4004, 4005, 4006). ``build_message`` is the inverse for
what we send; it validates too, so a local bug never reaches the wire.

The ``type`` -> body table is read from the schema itself (its ``allOf`` of if/then pairs), so
the schema stays the single source of truth.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

import jsonschema.exceptions
from jsonschema import Draft202012Validator
from pydantic import BaseModel

from infernet_ref.encoding import canonical_json, json_decode
from infernet_ref.errors import EncodingError, LocalProtocolError, ValidationError
from infernet_ref.node.errors import ErrorCode, JobProtocolError
from infernet_ref.specs import validate_data
from infernet_ref.specs.compiled import compiled
from infernet_ref.specs.registry import SPEC_BASE_URI, default_registry
from infernet_ref.specs.validate import json_path

PROTOCOL_VERSION = 1
SCHEMA = "job-messages"
DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 * 1024
MAX_DEPTH = 32


@functools.cache
def body_table() -> dict[str, str]:
    """The ``type`` -> body ``$defs`` name table of job-messages.schema.json."""
    schema = default_registry().schema(SCHEMA)
    table: dict[str, str] = {}
    for part in schema["allOf"]:
        if "if" not in part:
            continue
        msg_type = part["if"]["properties"]["type"]["const"]
        table[msg_type] = part["then"]["properties"]["body"]["$ref"].rsplit("/", 1)[-1]
    return table


@functools.cache
def _body_model(def_name: str) -> type[BaseModel]:
    module = __import__("infernet_models.job_messages_schema", fromlist=[def_name])
    cls: type[BaseModel] = getattr(module, def_name)
    return cls


@dataclass(frozen=True, slots=True)
class Message:
    """One validated job-protocol message; ``raw`` is the decoded JSON, ``body`` the typed body."""

    type: str
    id: str
    raw: dict[str, Any]
    re: str | None = None
    def_name: str = ""

    @property
    def body_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = self.raw["body"]
        return body

    @property
    def body(self) -> Any:
        """The generated pydantic model of the body (built on access; the hot path uses body_dict)."""
        return _body_model(self.def_name or body_table()[self.type]).model_validate(
            self.raw["body"]
        )


def _classify(data: Any, exc: ValidationError) -> JobProtocolError:
    if isinstance(data, dict):
        if data.get("v") != PROTOCOL_VERSION and isinstance(data.get("v"), int):
            return JobProtocolError(
                f"unsupported protocol version {data.get('v')}", ErrorCode.UNSUPPORTED_VERSION
            )
        msg_type = data.get("type")
        if isinstance(msg_type, str) and msg_type not in body_table() and exc.path == "$.type":
            return JobProtocolError(
                f"unknown message type {msg_type[:64]!r}", ErrorCode.UNKNOWN_TYPE
            )
    return JobProtocolError(f"invalid message: {exc}", ErrorCode.BAD_REQUEST)


def parse_message(frame: str | bytes, *, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> Message:
    """Decode and validate one text frame from a peer (spec/job.md §Messages rules 1-2)."""
    size = len(frame.encode("utf-8", "surrogatepass")) if isinstance(frame, str) else len(frame)
    if size > max_size:
        raise JobProtocolError(
            f"message of {size} bytes exceeds the limit {max_size}", ErrorCode.TOO_LARGE
        )
    try:
        data = json_decode(frame, max_size=max_size, max_depth=MAX_DEPTH)
    except EncodingError as exc:
        raise JobProtocolError(f"message is not valid JSON: {exc}") from exc
    return message_from_dict(data)


def _inline(node: Any, base: str, registry: Any) -> Any:
    """A copy of a schema fragment with every ``$ref`` replaced by its target (no cycles here)."""
    if isinstance(node, list):
        return [_inline(x, base, registry) for x in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref = node["$ref"]
        doc_part, _, pointer = ref.partition("#")
        doc_id = base if not doc_part else SPEC_BASE_URI + doc_part
        target: Any = registry.schema(doc_id)
        for part in [p for p in pointer.split("/") if p]:
            target = target[part]
        rest = {k: v for k, v in node.items() if k != "$ref"}
        inlined = _inline(target, doc_id, registry)
        return {"allOf": [inlined, _inline(rest, base, registry)]} if rest else inlined
    return {
        k: _inline(v, base, registry)
        for k, v in node.items()
        if k not in ("$id", "$schema", "$defs", "examples")
    }


@functools.cache
def _validator(name: str, pointer: str) -> Draft202012Validator:
    """A jsonschema validator for a schema (fragment) with references inlined; it words the
    errors of rejected messages (valid ones pass the compiled predicate and never get here)."""
    registry = default_registry()
    sid = SPEC_BASE_URI + name + ".schema.json"
    target: Any = registry.schema(sid)
    for part in [p for p in pointer.split("/") if p]:
        target = target[part]
    return Draft202012Validator(
        _inline(target, sid, registry), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def _validate(data: Any, name: str, pointer: str = "", prefix: str = "$") -> None:
    """The compiled predicate (specs/compiled.py, equal to jsonschema's verdict) decides the
    common case; only a rejection goes through jsonschema again, for its message and path."""
    if compiled(name, pointer)(data):
        return
    err = jsonschema.exceptions.best_match(_validator(name, pointer).iter_errors(data))
    if err is None:  # jsonschema has the last word on every rejection
        return
    raise ValidationError(
        err.message,
        path=prefix + json_path(err.absolute_path)[1:],
        schema=SPEC_BASE_URI + name + ".schema.json",
    )


def _check(data: Any) -> str:
    """Validate ``data`` as job-messages.schema.json does; returns the body's ``$defs`` name.

    Equivalent to validating against the whole schema (its ``allOf`` is the envelope plus one
    if/then per type) but cheaper: the envelope schema first, then only the body schema that
    ``type`` selects, instead of evaluating every branch.
    """
    _validate(data, "job-envelope")
    def_name = body_table().get(data["type"])
    if def_name is None:
        validate_data(data, SCHEMA)  # raises with the schema's own message for the type enum
        raise ValidationError(
            "unknown type", path="$.type"
        )  # pragma: no cover - the line above raised
    _validate(data["body"], SCHEMA, f"/$defs/{def_name}", prefix="$.body")
    return def_name


_MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # common.schema.json MessageId


def _usable_id(data: Any) -> str | None:
    """The ``id`` of a refused message when it is a valid MessageId, else None."""
    mid = data.get("id") if isinstance(data, dict) else None
    return mid if isinstance(mid, str) and _MESSAGE_ID.fullmatch(mid) else None


def message_from_dict(data: Any) -> Message:
    """Validate an already-decoded message (spec/job.md §Messages)."""
    try:
        def_name = _check(data)
    except ValidationError as exc:
        refused = _classify(data, exc)
        refused.msg_id = _usable_id(data)  # so the error can name it in ``re``
        raise refused from exc
    if data["v"] != PROTOCOL_VERSION:
        refused = JobProtocolError(
            f"unsupported protocol version {data['v']}", ErrorCode.UNSUPPORTED_VERSION
        )
        refused.msg_id = _usable_id(data)
        raise refused
    return Message(type=data["type"], id=data["id"], raw=data, re=data.get("re"), def_name=def_name)


def build_message(
    msg_type: str,
    msg_id: str,
    body: dict[str, Any],
    *,
    re: str | None = None,
    ts: int | None = None,
) -> dict[str, Any]:
    """Make an envelope dict for ``msg_type``; raises LocalProtocolError if it would be invalid."""
    msg: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": msg_type, "id": msg_id, "body": body}
    if re is not None:
        msg["re"] = re
    if ts is not None:
        msg["ts"] = ts
    try:
        _check(msg)
    except ValidationError as exc:
        raise LocalProtocolError(f"refusing to send an invalid {msg_type}: {exc}") from exc
    return msg


def encode_message(msg: dict[str, Any]) -> str:
    """Canonical JSON text of an envelope (spec/encoding.md §JSON)."""
    return canonical_json(msg).decode("utf-8")


def error_body(code: ErrorCode | int, message: str, **extra: Any) -> dict[str, Any]:
    """The body of a ``sys.error``; ``message`` is truncated to the schema's 1024 characters."""
    body: dict[str, Any] = {"code": int(code), "message": message[:1024]}
    body.update({k: v for k, v in extra.items() if v is not None})
    return body
