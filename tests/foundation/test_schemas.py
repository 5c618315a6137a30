"""Every schema is well-formed 2020-12, documented, and its examples validate and round-trip."""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from infernet_ref.errors import EncodingError, ValidationError
from infernet_ref.specs import default_registry, validate, validate_data

SPEC = Path(__file__).resolve().parents[2] / "spec" / "schemas"
SCHEMA_FILES = sorted(SPEC.glob("*.schema.json"))


def _examples(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    """(pointer, example) for the top level and every $defs entry."""
    out = [("", ex) for ex in doc.get("examples", [])]
    for name, sub in doc.get("$defs", {}).items():
        out.extend((f"/$defs/{name}", ex) for ex in sub.get("examples", []))
    return out


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_schema_is_valid_and_documented(path: Path) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(doc)
    assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert doc["$id"] == f"https://infernet.tech/spec/v1/{path.name}"
    assert doc["title"]
    assert doc["description"]
    assert _examples(doc), f"{path.name} has no examples"


def _undeclared_objects(node: Any, where: str) -> list[str]:
    """Object definitions listing properties without saying whether others are allowed.

    Subschemas under allOf/if/then/else/not only add constraints to an object defined
    elsewhere, so they are not definitions.
    """
    found: list[str] = []
    if isinstance(node, dict):
        if (
            "properties" in node
            and "additionalProperties" not in node
            and not {"allOf", "$ref", "unevaluatedProperties"} & node.keys()
        ):
            found.append(where or "/")
        for key, value in node.items():
            if key not in {"examples", "allOf", "if", "then", "else", "not"}:
                found += _undeclared_objects(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _undeclared_objects(value, f"{where}/{i}")
    return found


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_objects_declare_whether_they_are_open(path: Path) -> None:
    # JSON Schema leaves an object open by default, the generated model drops unknown fields by
    # default: each object must say which it is (false -> extra="forbid", true -> extra="allow").
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert _undeclared_objects(doc, "") == []


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_examples_validate(path: Path) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    for pointer, example in _examples(doc):
        validate_data(example, path.name, pointer=pointer)


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_generated_model_round_trips_examples(path: Path) -> None:
    doc = json.loads(path.read_text(encoding="utf-8"))
    model_cls = default_registry().model(path.name)
    module = importlib.import_module(model_cls.__module__)
    for name, sub in doc.get("$defs", {}).items():
        def_cls = getattr(module, sub.get("title", name), None)
        if def_cls is None:  # inlined by --collapse-root-models; checked through its users
            continue
        for example in sub.get("examples", []):
            dumped = def_cls.model_validate(example).model_dump(
                mode="json", by_alias=True, exclude_unset=True
            )
            assert dumped == example
    for example in doc.get("examples", []):
        model = validate(example, path.name)
        assert isinstance(model, model_cls)
        again = model.model_dump(mode="json", exclude_unset=True, by_alias=True)
        assert again == example


def test_registry_knows_every_schema_file() -> None:
    names = default_registry().names()
    assert names == sorted(p.name.removesuffix(".schema.json") for p in SCHEMA_FILES)


EVENT = {
    "id": "4376c65d2f232afbe9b882a35baa4f6fe8667c4e684749af565f981833ed6a65",
    "pubkey": "6e468422dfb74a5738702a8823b9b28168abab8655faacb6853cd0ee15deee93",
    "created_at": 1673347337,
    "kind": 1,
    "tags": [["e", "3da979448d9ba263864c4d6f14984c423a3838364ec255f03c7904b1ae77f206"]],
    "content": "Walled gardens became prisons.",
    "sig": "908a15e46fb4d8675bab026fc230a0e3542bfade63da02d542fb78b2a8513fcd0092619a2c8c1221e581946e0191f2af505dfdf8657a414dbca329186f009262",
}


def _mutated(**changes: Any) -> dict[str, Any]:
    ev = copy.deepcopy(EVENT)
    for key, value in changes.items():
        if value is None:
            del ev[key]
        else:
            ev[key] = value
    return ev


@pytest.mark.parametrize(
    ("event", "path", "fragment"),
    [
        (_mutated(pubkey="6e46"), "$.pubkey", "does not match"),
        (_mutated(pubkey=EVENT["pubkey"].upper()), "$.pubkey", "does not match"),
        (_mutated(sig=EVENT["sig"][:-2]), "$.sig", "does not match"),
        (_mutated(id="zz" * 32), "$.id", "does not match"),
        (_mutated(sig=None), "$", "'sig' is a required property"),
        (_mutated(relay="wss://x"), "$", "Additional properties are not allowed"),
        (_mutated(created_at="1673347337"), "$.created_at", "is not of type 'integer'"),
        (_mutated(kind=70000), "$.kind", "is greater than the maximum"),
        (_mutated(tags=[["e", 1]]), "$.tags[0][1]", "is not of type 'string'"),
        (_mutated(tags=[[]]), "$.tags[0]", "should be non-empty"),
    ],
)
def test_invalid_event_names_the_path(event: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate(event, "nostr-event")
    assert info.value.path == path
    assert fragment in info.value.reason
    assert info.value.schema is not None
    assert info.value.schema.endswith("nostr-event.schema.json")


def test_bytes_input_and_bad_bytes() -> None:
    raw = json.dumps(EVENT).encode()
    assert validate(raw, "nostr-event").content == EVENT["content"]  # type: ignore[attr-defined]
    with pytest.raises(EncodingError, match="UTF-8"):
        validate(b'{"id": "\xff"}', "nostr-event")
    with pytest.raises(EncodingError, match="malformed JSON"):
        validate(b'{"id": ', "nostr-event")
    with pytest.raises(EncodingError, match="exceeds"):
        validate(b" " * 2048, "nostr-event", max_size=1024)
    with pytest.raises(EncodingError, match="duplicate"):
        validate(b'{"id": "a", "id": "b"}', "nostr-event")


def test_envelopes() -> None:
    env = {"v": 1, "type": "job.offer", "id": "m-1", "body": {"x": 1}}
    assert validate(env, "job-envelope").type == "job.offer"  # type: ignore[attr-defined]
    with pytest.raises(ValidationError) as info:
        validate({**env, "type": "Job.Offer"}, "job-envelope")
    assert info.value.path == "$.type"
    with pytest.raises(ValidationError) as info:
        validate({**env, "ext": {"bad key": 1}}, "job-envelope")
    assert info.value.path == "$.ext"
    datagram = {"v": 1, "t": "00" * 8, "y": "q", "op": "PING", "body": {}}
    assert validate(datagram, "dht-datagram").op == "PING"  # type: ignore[attr-defined]
    with pytest.raises(ValidationError) as info:
        validate({**datagram, "t": "00" * 7}, "dht-datagram")
    assert info.value.path == "$.t"


def test_unknown_schema_is_a_local_error() -> None:
    from infernet_ref.errors import LocalProtocolError

    with pytest.raises(LocalProtocolError, match="no schema"):
        validate({}, "no-such-thing")
