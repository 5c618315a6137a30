"""The compiled validator answers exactly what jsonschema answers (the outside oracle).

For every schema in spec/schemas and every ``$defs`` entry: each ``examples`` entry, then
hypothesis-driven mutations of the examples (keys dropped and added, values swapped for values of
other JSON types, bool/int/float edge cases, huge ints, boundary numbers and lengths taken from the
schema itself, unicode and lone surrogates, lists shrunk and grown, at random nested paths) must get
the verdict of ``Draft202012Validator(..., format_checker=FORMAT_CHECKER).is_valid``. Synthetic
schemas cover the keywords the spec does not use yet, over arbitrary JSON values.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from jsonschema._utils import equal as js_equal
from jsonschema._utils import uniq as js_uniq
from jsonschema.exceptions import best_match

from infernet_ref.errors import ValidationError
from infernet_ref.specs.compiled import (
    SchemaCompileError,
    _equal,
    _unique,
    compile_schema,
    compiled,
)
from infernet_ref.specs.registry import SchemaRegistry, default_registry, schema_id
from infernet_ref.specs.validate import json_path

SPEC = Path(__file__).resolve().parents[2] / "spec" / "schemas"
REGISTRY = SchemaRegistry.from_directory(SPEC)
FC = Draft202012Validator.FORMAT_CHECKER
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


_PAYLOAD = {"size": 8392, "sha256": "e3" * 32, "format": "safetensors"}
EXTRA_EXAMPLES: dict[str, list[tuple[str, Any]]] = {  # hot-path bodies whose $defs lack examples
    "StageForward": [("stage.forward", {"session": "s-0-1", "step": 17, "position": 41,
                                        "payload": _PAYLOAD, "compute_ms": 0.5})],
    "StageOutput": [("stage.output", {"session": "s-0-1", "step": 17, "compute_ms": 3.25,
                                      "payload": _PAYLOAD})],
    "JobSubmit": [("job.submit", {
        "job": "j-01HZX3R8Q9ABCD",
        "model": "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e",
        "prompt_tokens": 12,
        "params": {"max_new_tokens": 64, "sampling": {"temperature": 0, "seed": 0},
                   "stop_ids": [2, 7]},
        "redundancy": 1,
        "stream": True,
        "deadline": 1764120000,
    })],
}  # fmt: skip


def _examples(node: Any, pointer: str) -> list[Any]:
    found = list(node.get("examples", [])) if isinstance(node, dict) else []
    extra = EXTRA_EXAMPLES.get(pointer.removeprefix("/$defs/"), []) if pointer else []
    return found + [body for _, body in extra]


def _targets(sid: str) -> list[tuple[str, Any]]:
    """(pointer, subschema) for the schema and each of its ``$defs`` entries."""
    doc = REGISTRY.schemas[sid]
    return [("", doc)] + [(f"/$defs/{k}", v) for k, v in doc.get("$defs", {}).items()]


def _walk_constants(node: Any, out: set[Any]) -> None:
    """Numbers, strings and names the schema mentions: the values most likely to sit on a
    boundary (maximum and maximum + 1, every const and enum value, every property name)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
                out.update({value, value - 1, value + 1, float(value)})
            elif key in ("minLength", "maxLength") and value <= 4096:
                out.update({"a" * value, "a" * (value + 1), "\u00e9" * max(value - 1, 0)})
            elif key == "const":
                out.add(json.dumps(value) if isinstance(value, list | dict) else value)
            elif key == "enum":
                out.update(v for v in value if not isinstance(v, list | dict))
            elif key == "properties":
                out.update(value)
            _walk_constants(value, out)
    elif isinstance(node, list):
        for item in node:
            _walk_constants(item, out)


ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    1,
    -1,
    1.0,
    -0.0,
    0.5,
    2**31,
    2**53 - 1,
    2**53,
    2**64,
    -(2**63),
    10**40,
    1e308,
    -1e-9,
    "",
    " ",
    "a",
    "0",
    "\ud800",
    "\udcff\ud800",
    "日本語",
    "\U0001f600",
    "a\n",
    "\x00",
    "0" * 64,
    "f" * 64,
    "F" * 64,
    "ab" * 33,
    "x-trace",
    "m-1",
    "job.offer",
    [],
    [1],
    [None],
    [[]],
    {},
    {"a": 1},
    {"": None},
]
CONSTANTS = {sid: set() for sid in REGISTRY.schemas}
for _sid, _doc in REGISTRY.schemas.items():
    _walk_constants(_doc, CONSTANTS[_sid])
    for _other in ("https://infernet.tech/spec/v1/common.schema.json",):
        _walk_constants(REGISTRY.schemas.get(_other, {}), CONSTANTS[_sid])


def _paths(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [at]
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_paths(v, (*at, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_paths(v, (*at, i)))
    return out


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


def _mutated(node: Any, draw: Any, values: list[Any]) -> Any:
    """One mutation of ``node`` (a deep copy is changed)."""
    kind = draw(st.sampled_from(["replace", "drop", "add", "number", "string", "list", "float"]))
    if kind == "replace":
        return copy.deepcopy(draw(st.sampled_from(values)))
    if kind == "drop" and isinstance(node, dict) and node:
        node.pop(draw(st.sampled_from(sorted(node))))
    elif kind == "add" and isinstance(node, dict):
        key = draw(st.sampled_from([v for v in values if isinstance(v, str)] + ["zz", "ext"]))
        node[key] = copy.deepcopy(draw(st.sampled_from(values)))
    elif kind == "number" and isinstance(node, int | float) and not isinstance(node, bool):
        return draw(st.sampled_from([node + 1, node - 1, -node, node * 2**32, float(node), True]))
    elif kind == "float" and isinstance(node, int | float):
        return draw(st.sampled_from([float(node), node + 0.5, math.inf, -math.inf, bool(node)]))
    elif kind == "string" and isinstance(node, str):
        extra = draw(st.text(max_size=3))
        return draw(
            st.sampled_from(
                [node[:-1], node + node[-1:], node.upper(), node + "\n", extra + node, node + extra]
            )
        )
    elif kind == "list" and isinstance(node, list):
        if node and draw(st.booleans()):
            return node[:-1]
        return (
            [*node, copy.deepcopy(node[0])]
            if node
            else [copy.deepcopy(draw(st.sampled_from(values)))]
        )
    return node


@st.composite
def _instances(draw: Any, sid: str) -> tuple[str, Any]:
    targets = [(p, _examples(n, p)) for p, n in _targets(sid) if _examples(n, p)]
    pointer, examples = draw(st.sampled_from(targets))
    value = copy.deepcopy(draw(st.sampled_from(examples)))
    values = VALUES[sid]
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(value)))
        if not path:
            value = _mutated(value, draw, values)
            continue
        parent = _get(value, path[:-1])
        parent[path[-1]] = _mutated(parent[path[-1]], draw, values)
    return pointer, value


VALUES = {sid: sorted(found, key=repr) + ODD_VALUES for sid, found in CONSTANTS.items()}
SIDS = sorted(REGISTRY.schemas)


@pytest.mark.parametrize("sid", SIDS, ids=lambda s: s.rsplit("/", 1)[-1])
def test_every_example_and_def_compiles_and_agrees(sid: str) -> None:
    for pointer, node in _targets(sid):
        check = compiled(sid, pointer, REGISTRY)
        oracle = REGISTRY.validator(sid, pointer)
        for example in _examples(node, pointer):
            assert check(example) is oracle.is_valid(example) is True, (pointer, example)


@pytest.mark.parametrize("sid", SIDS, ids=lambda s: s.rsplit("/", 1)[-1])
@SETTINGS
@given(data=st.data())
def test_mutated_examples_agree_with_jsonschema(sid: str, data: st.DataObject) -> None:
    pointer, value = data.draw(_instances(sid))
    expected = REGISTRY.validator(sid, pointer).is_valid(value)
    assert compiled(sid, pointer, REGISTRY)(value) is expected, (pointer, value)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.sampled_from([0, 1, 1.0, -0.0, 2, 2.0, 3, "a", "ab", "x-1", "\ud800"])
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(
            st.sampled_from(["a", "b", "c", "x-1", "n"]) | st.text(max_size=3), inner, max_size=5
        )
    ),
    max_leaves=12,
)
BASE = "https://example.test/synthetic.schema.json"
SYNTHETIC: dict[str, Any] = {
    "$id": BASE,
    "$defs": {
        "tree": {"type": "object", "properties": {"kids": {"items": {"$ref": "#/$defs/tree"}}}},
        "num": {"type": ["number", "null"], "exclusiveMinimum": 0, "exclusiveMaximum": 3},
        "int": {"type": "integer", "multipleOf": 2, "minimum": -4},
        "float_mult": {"multipleOf": 0.5},
        "strs": {
            "type": ["string", "array"],
            "minLength": 1,
            "maxLength": 2,
            "minItems": 2,
            "pattern": "^[a-z]",
        },
        "enum": {"enum": [1, "a", None, [1, "a"], {"a": 1}, False]},
        "const_list": {"const": [1, True]},
        "const_num": {"const": 1},
        "const_false": {"const": False},
        "const_obj": {"const": {"a": [1.0]}},
        "uniq": {"uniqueItems": True, "maxItems": 4},
        "logic": {
            "anyOf": [{"type": "string"}, {"type": "integer"}],
            "oneOf": [{"minimum": 0}, {"maximum": 10}, {"type": "string"}],
            "not": {"const": 5},
        },
        "cond": {
            "if": {"properties": {"a": {"const": 1}}, "required": ["a"]},
            "then": {"required": ["b"]},
            "else": {"maxProperties": 1},
        },
        "objects": {
            "properties": {"a": {"type": "integer"}, "b": False},
            "patternProperties": {"^x-": {"type": "string"}, "^n": {"type": "null"}},
            "additionalProperties": {"type": "array"},
            "propertyNames": {"maxLength": 3},
            "minProperties": 1,
            "dependentRequired": {"a": ["c"]},
            "dependentSchemas": {"c": {"properties": {"a": {"maximum": 5}}}},
        },
        "closed": {
            "properties": {"a": True},
            "patternProperties": {"b$": True},
            "additionalProperties": False,
        },
        "arrays": {
            "prefixItems": [{"type": "integer"}, {"type": "string"}],
            "items": {"type": "null"},
            "contains": {"type": "string"},
            "minContains": 1,
            "maxContains": 2,
        },
        "tuple_only": {"prefixItems": [True, {"const": 1}], "items": False},
        "contains_zero": {"contains": {"type": "integer"}, "minContains": 0, "maxContains": 1},
        "fmt": {"format": "ipv4"},
        "never": False,
        "anything": True,
    },
}
SYN_REGISTRY = SchemaRegistry(schemas={BASE: SYNTHETIC})


@pytest.mark.parametrize("name", sorted(SYNTHETIC["$defs"]))
@settings(max_examples=150, deadline=None)
@given(value=JSON)
def test_synthetic_keywords_agree_with_jsonschema(name: str, value: Any) -> None:
    check = compiled(BASE, f"/$defs/{name}", SYN_REGISTRY)
    assert check(value) is SYN_REGISTRY.validator(BASE, f"/$defs/{name}").is_valid(value), value


@settings(max_examples=300, deadline=None)
@given(one=JSON, two=JSON)
def test_equality_and_uniqueness_helpers_match_jsonschema(one: Any, two: Any) -> None:
    assert _equal(one, two) is js_equal(one, two)
    assert _equal(one, copy.deepcopy(one)) is js_equal(one, copy.deepcopy(one))
    for items in ([one, two], [one, two, one], [one, copy.deepcopy(two)]):
        assert _unique(items) is bool(js_uniq(items))


@pytest.mark.parametrize(
    "schema",
    [
        {"unevaluatedProperties": False},
        {"$dynamicRef": "#meta"},
        {"maxLenght": 3},
        {"properties": {"a": {"type": "string", "patern": "^a"}}},
        {"format": "no-such-format"},
        {"type": "integr"},
        {"$ref": "#anchor"},
        {"$ref": "other.schema.json#/$defs/x"},
        {"items": [{"type": "string"}]},
        {"anyOf": [{"$id": "https://elsewhere.test/x.json"}]},
    ],
)
def test_unsupported_keywords_fail_at_compile_time(schema: dict[str, Any]) -> None:
    with pytest.raises(SchemaCompileError):
        compile_schema(schema, base_uri=BASE, registry=SYN_REGISTRY)


def test_generated_source_is_readable_python() -> None:
    check = compiled("job-envelope", "", REGISTRY)
    assert "def _v0(x0):" in check.source
    assert check({"v": 1, "type": "job.offer", "id": "m-1", "body": {}})
    assert not check({"v": True, "type": "job.offer", "id": "m-1", "body": {}})
    assert check({"v": 1.0, "type": "job.offer", "id": "m-1", "body": {}})  # 2020-12 integer


def _old_check(data: Any) -> str | None:
    """messages._check as it was before the compiled path: the error text it raised, or None."""
    from infernet_ref.node.messages import SCHEMA, _validator, body_table

    envelope = _validator("job-envelope", "")
    if not envelope.is_valid(data):
        err = best_match(envelope.iter_errors(data))
        assert err is not None
        where = json_path(err.absolute_path)
        return str(ValidationError(err.message, path=where, schema=schema_id("job-envelope")))
    def_name = body_table().get(data["type"])
    if def_name is None:  # validate_data(data, SCHEMA) as it was: every error, best match
        errors = list(default_registry().validator(SCHEMA).iter_errors(data))
        err = best_match(errors)
        assert err is not None
        return str(
            ValidationError(
                err.message, path=json_path(err.absolute_path), schema=schema_id(SCHEMA)
            )
        )
    body = _validator(SCHEMA, f"/$defs/{def_name}")
    if not body.is_valid(data["body"]):
        err = best_match(body.iter_errors(data["body"]))
        assert err is not None
        where = "$.body" + json_path(err.absolute_path)[1:]
        return str(ValidationError(err.message, path=where, schema=schema_id(SCHEMA)))
    return None


def _job_seeds() -> list[dict[str, Any]]:
    from infernet_ref.node.messages import body_table

    doc = default_registry().schema("job-messages")
    seeds = list(doc.get("examples", []))
    for msg_type, def_name in sorted(body_table().items()):
        for body in _examples(doc["$defs"][def_name], f"/$defs/{def_name}"):
            seeds.append({"v": 1, "type": msg_type, "id": "m-1", "re": "m-0", "body": body})
    return seeds


@SETTINGS
@given(data=st.data())
def test_message_check_rejects_exactly_as_before(data: st.DataObject) -> None:
    """messages._check (compiled fast path) raises exactly when, and exactly what, the previous
    jsonschema-only path raised; and its verdict is the whole job-messages schema's."""
    from infernet_ref.node.messages import _check

    value = copy.deepcopy(data.draw(st.sampled_from(_job_seeds())))
    values = VALUES[schema_id("job-messages")]
    for _ in range(data.draw(st.integers(0, 3))):
        path = data.draw(st.sampled_from(_paths(value)))
        if not path:
            value = _mutated(value, data.draw, values)
            continue
        parent = _get(value, path[:-1])
        parent[path[-1]] = _mutated(parent[path[-1]], data.draw, values)
    expected = _old_check(value)
    try:
        _check(value)
        got = None
    except ValidationError as exc:
        got = str(exc)
    assert got == expected, value
    assert (got is None) is default_registry().validator("job-messages").is_valid(value)
