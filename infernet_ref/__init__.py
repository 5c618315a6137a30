"""infernet-ref: the Python reference implementation of the Infernet Protocol.

One sub-package per layer, each a sans-I/O core plus a thin asyncio adapter:

- :mod:`infernet_ref.encoding` — canonical JSON (NIP-01 escaping) and deterministic CBOR
- :mod:`infernet_ref.specs` — JSON Schema registry, boundary validation, model codegen
- :mod:`infernet_ref.cli` — the ``infernet`` command

The protocol itself lives in ``spec/``; the typed models generated from it in
``generated/infernet_models``.
"""

from infernet_ref.version import PROTOCOL_VERSION, SPEC_VERSION, __version__

__all__ = ["PROTOCOL_VERSION", "SPEC_VERSION", "__version__"]
