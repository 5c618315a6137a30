"""Choosing a backend (spec/node.md §Sandbox, spec/node-worker.md §Executor).

Theory of operation: ``backend: auto`` takes Docker when a daemon answers, else bubblewrap when
it can create its namespaces here, else refuses — unless the configuration says
``allow_in_process: true``, and only then, does it fall back to running workers unconfined. A
named backend is used or refused, never silently replaced by a weaker one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infernet_ref.errors import LocalProtocolError
from infernet_ref.node.sandbox import bubblewrap, docker
from infernet_ref.node.sandbox.inprocess import InProcessExecutor
from infernet_ref.node.sandbox.spec import Executor, SandboxUnavailable

BACKENDS = ("auto", "docker", "bubblewrap", "in-process")


def sandbox_settings(config: object) -> dict[str, Any]:
    """Extract the ``sandbox`` section from a node config (dict, pydantic model, or the section)."""
    if config is None:
        return {}
    if hasattr(config, "model_dump"):
        config = config.model_dump(mode="json")
    if not isinstance(config, Mapping):
        raise LocalProtocolError(f"sandbox config must be a mapping, not {type(config).__name__}")
    section = config.get("sandbox", config)
    if hasattr(section, "model_dump"):
        section = section.model_dump(mode="json")
    if not isinstance(section, Mapping):
        raise LocalProtocolError("the 'sandbox' config section must be a mapping")
    return dict(section)


def select_executor(config: object = None) -> Executor:
    """Return the executor the configuration asks for (CONTRACTS.md: select_executor)."""
    settings = sandbox_settings(config)
    backend = settings.get("backend", "auto") or "auto"
    allow = settings.get("allow_in_process", False) is True
    if backend not in BACKENDS:
        raise LocalProtocolError(f"unknown sandbox backend {backend!r}; one of {BACKENDS}")
    if backend == "docker":
        return docker.DockerExecutor()
    if backend == "bubblewrap":
        return bubblewrap.BubblewrapExecutor()
    if backend == "in-process":
        return InProcessExecutor(allow_in_process=allow)
    if docker.daemon_reachable():
        return docker.DockerExecutor()
    if bubblewrap.available():
        return bubblewrap.BubblewrapExecutor()
    if allow:
        return InProcessExecutor(allow_in_process=True)
    raise SandboxUnavailable(
        "no sandbox available: no Docker daemon reachable and bubblewrap cannot run here; "
        "set sandbox.allow_in_process: true to run workers unconfined (tests only)"
    )
