"""The case registry: stable ids, the spec section each case checks, and how a case reports.

Ids are dotted and stable (``ws.frame.masking``); the first component is the layer. Renaming an
id is a breaking change for everyone who tracks results, so ids are only ever added or retired.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infernet_conformance.target import Endpoint, Target

_ID_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")


class CaseFailed(AssertionError):
    """The node under test broke the rule the case checks."""


class CaseSkipped(Exception):
    """The case cannot run against this target; the message is the reason."""


def check(condition: bool, message: str) -> None:
    """Fail the current case with ``message`` unless ``condition`` holds."""
    if not condition:
        raise CaseFailed(message)


@dataclass
class CaseContext:
    """What a case gets: the target, a per-case timeout in seconds and a scratch directory."""

    target: Target
    timeout: float
    workdir: Path
    options: dict[str, Any] = field(default_factory=dict)

    def require(self, name: str) -> Endpoint:
        """The endpoint called ``name`` (``ws``, ``dht``, ``http`` ...) or skip the case."""
        endpoint = self.target.get(name)
        if endpoint is None:
            raise CaseSkipped(f"no {name} endpoint in --target")
        return endpoint


CaseFunc = Callable[[CaseContext], Awaitable[None]]


@dataclass(frozen=True)
class Case:
    id: str
    layer: str
    section: str
    description: str
    func: CaseFunc


_REGISTRY: dict[str, Case] = {}


def case(case_id: str, *, section: str, description: str) -> Callable[[CaseFunc], CaseFunc]:
    """Register an ``async def f(ctx)`` as conformance case ``case_id`` checking ``section``."""
    if not _ID_RE.match(case_id):
        raise ValueError(f"case id {case_id!r} is not a dotted lower-case id like ws.frame.masking")

    def deco(func: CaseFunc) -> CaseFunc:
        if case_id in _REGISTRY and _REGISTRY[case_id].func is not func:
            raise ValueError(f"case id {case_id!r} registered twice")
        _REGISTRY[case_id] = Case(case_id, case_id.split(".", 1)[0], section, description, func)
        return func

    return deco


def load_cases() -> None:
    """Import every module of :mod:`infernet_conformance.cases` so their cases register."""
    from infernet_conformance import cases  # noqa: PLC0415

    for info in pkgutil.iter_modules(cases.__path__):
        importlib.import_module(f"{cases.__name__}.{info.name}")


def all_cases() -> list[Case]:
    """Every registered case, sorted by id."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def unregister(case_id: str) -> None:
    """Remove a case (tests register throw-away cases)."""
    _REGISTRY.pop(case_id, None)
