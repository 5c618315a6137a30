"""Conformance cases, one module per layer (``ws``, ``dht``, ``nostr``, ``content``, ``job``, ``node``).

Each module registers its cases with :func:`infernet_conformance.case` at import time.
"""
