"""Validation at the boundary (spec/README.md §Validation).

``validate(message, schema)`` is the single entry point through which bytes from a peer become a
typed object: decode (JSON or, for the DHT, deterministic CBOR seen through its JSON view), check
against the JSON Schema with format checks on, then build the generated model. Every failure is a
:class:`~infernet_ref.errors.ValidationError` (schema) or
:class:`~infernet_ref.errors.EncodingError` (bytes), naming the JSON path of the first offending
field in the schema's own error order (deepest, most specific error first).
"""

from __future__ import annotations

from typing import Any

import jsonschema.exceptions
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from infernet_ref.encoding import MAX_JSON_SIZE, json_decode
from infernet_ref.errors import ValidationError
from infernet_ref.specs.compiled import compiled
from infernet_ref.specs.registry import SchemaRegistry, default_registry, schema_id


def json_path(parts: Any) -> str:
    """Render a jsonschema ``absolute_path`` deque as ``$.a.b[0]``."""
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _best(
    errors: list[jsonschema.exceptions.ValidationError],
) -> jsonschema.exceptions.ValidationError:
    best = jsonschema.exceptions.best_match(errors)
    assert best is not None
    return best


def validate_data(
    data: Any,
    schema: str,
    *,
    pointer: str = "",
    registry: SchemaRegistry | None = None,
) -> None:
    """Check already-decoded ``data`` against ``schema`` (or its subschema at ``pointer``).

    The compiled predicate of :mod:`infernet_ref.specs.compiled` accepts valid data; jsonschema
    itself is consulted only to reject, so messages and paths are jsonschema's.
    """
    reg = registry or default_registry()
    if compiled(schema_id(schema), pointer, reg)(data):  # equal to jsonschema's verdict, faster
        return
    validator = reg.validator(schema_id(schema), pointer)
    errors = list(validator.iter_errors(data))
    if errors:
        err = _best(errors)
        raise ValidationError(
            err.message, path=json_path(err.absolute_path), schema=schema_id(schema)
        )


def validate(
    message: dict[str, Any] | list[Any] | str | bytes | bytearray | memoryview,
    schema: str,
    *,
    max_size: int = MAX_JSON_SIZE,
    registry: SchemaRegistry | None = None,
) -> BaseModel:
    """Validate ``message`` against ``schema`` and return the generated model instance.

    ``message`` may be a decoded dict (as from a CBOR datagram's JSON view) or the JSON text or
    bytes as received; ``schema`` is a name (``"nostr-event"``) or a full ``$id``.
    """
    reg = registry or default_registry()
    data = message if isinstance(message, dict | list) else json_decode(message, max_size=max_size)
    validate_data(data, schema, registry=reg)
    model_cls = reg.model(schema)
    try:
        model: BaseModel = model_cls.model_validate(data)
    except (
        PydanticValidationError
    ) as exc:  # the schema passed but the model disagrees: a codegen gap
        first = exc.errors()[0]
        raise ValidationError(
            first["msg"], path=json_path(first["loc"]), schema=schema_id(schema)
        ) from exc
    return model
