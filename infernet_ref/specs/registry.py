"""Loading the protocol's JSON Schemas and resolving references between them.

Schemas are read from the copy that codegen places inside the generated package
(``infernet_models/schemas``), so validation and the models always come from the same spec
revision, in a source tree and in an installed wheel alike. Each schema is known by its ``$id``
(``https://infernet.tech/spec/v1/<name>.schema.json``) and, for convenience, by ``<name>``.
"""

from __future__ import annotations

import functools
import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from infernet_ref.errors import LocalProtocolError

SPEC_BASE_URI = "https://infernet.tech/spec/v1/"
SCHEMA_SUFFIX = ".schema.json"


def schema_id(name: str) -> str:
    """Return the ``$id`` of the schema called ``name`` (``nostr-event`` -> full URI)."""
    if name.startswith(("https://", "http://")):
        return name
    return SPEC_BASE_URI + name.removesuffix(SCHEMA_SUFFIX) + SCHEMA_SUFFIX


@dataclass
class SchemaRegistry:
    """All schemas of one spec revision plus the model class generated for each."""

    schemas: dict[str, dict[str, Any]]
    models: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_directory(
        cls, directory: Path, models: dict[str, str] | None = None
    ) -> SchemaRegistry:
        schemas: dict[str, dict[str, Any]] = {}
        for path in sorted(directory.glob("*" + SCHEMA_SUFFIX)):
            doc = json.loads(path.read_text(encoding="utf-8"))
            schemas[doc["$id"]] = doc
        return cls(schemas=schemas, models=dict(models or {}))

    @functools.cached_property
    def _registry(self) -> Registry[Any]:
        resources_ = [
            (sid, Resource.from_contents(doc, default_specification=DRAFT202012))
            for sid, doc in self.schemas.items()
        ]
        return Registry().with_resources(resources_)

    def names(self) -> list[str]:
        return sorted(
            sid.removeprefix(SPEC_BASE_URI).removesuffix(SCHEMA_SUFFIX) for sid in self.schemas
        )

    def schema(self, name: str) -> dict[str, Any]:
        sid = schema_id(name)
        try:
            return self.schemas[sid]
        except KeyError:
            raise LocalProtocolError(
                f"no schema {name!r}; known: {', '.join(self.names())}"
            ) from None

    @functools.lru_cache(maxsize=256)  # noqa: B019 - the registry lives as long as the process
    def validator(self, name: str, pointer: str = "") -> Draft202012Validator:
        """A validator for schema ``name`` or for the subschema at JSON pointer ``pointer``."""
        sid = schema_id(name)
        self.schema(sid)
        ref = sid + ("#" + pointer if pointer else "")
        return Draft202012Validator(
            {"$ref": ref},
            registry=self._registry,
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )

    def model(self, name: str) -> Any:
        """The generated pydantic class for schema ``name`` (``module:Class`` in the index)."""
        sid = schema_id(name)
        target = self.models.get(sid)
        if target is None:
            raise LocalProtocolError(
                f"schema {name!r} has no generated model; run `infernet spec generate`"
            )
        module_name, _, cls_name = target.partition(":")
        return getattr(importlib.import_module(module_name), cls_name)

    def __hash__(self) -> int:
        return id(self)


@functools.cache
def default_registry() -> SchemaRegistry:
    """The registry of the spec revision the generated package was built from."""
    index = importlib.import_module("infernet_models._index")
    package = importlib.import_module("infernet_models")
    directory = Path(package.__file__ or "").parent / "schemas"
    return SchemaRegistry.from_directory(directory, models=dict(index.MODELS))
