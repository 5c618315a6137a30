"""The specification as code: schema registry, boundary validation and model generation.

- :func:`validate` — check a message (dict, str or bytes) against its JSON Schema and return the
  generated pydantic model; the one function every layer calls at its boundary.
- :func:`generate` / :func:`check` — regenerate ``generated/infernet_models`` from ``spec/schemas``
  and detect drift (``infernet spec generate|check``).
"""

from infernet_ref.specs.registry import SchemaRegistry, default_registry, schema_id
from infernet_ref.specs.validate import validate, validate_data

__all__ = ["SchemaRegistry", "default_registry", "schema_id", "validate", "validate_data"]
