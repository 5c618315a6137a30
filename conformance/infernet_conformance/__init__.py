"""The Infernet conformance suite: black-box checks any implementation runs against its node.

Cases live in :mod:`infernet_conformance.cases` (one module per layer) and register themselves
with :func:`case`. A case gets a :class:`CaseContext` (the target's addresses, a timeout, a
scratch directory) and either returns (pass), raises :class:`CaseFailed` (fail) or
:class:`CaseSkipped` (skip, with a reason). The runner turns the verdicts into JSON, JUnit XML and
a Markdown table and exits 1 on any failure.
"""

from infernet_conformance.registry import (
    Case,
    CaseContext,
    CaseFailed,
    CaseSkipped,
    all_cases,
    case,
    check,
    load_cases,
)
from infernet_conformance.runner import CaseResult, RunReport, Verdict, run_cases
from infernet_conformance.target import Target

__all__ = [
    "Case",
    "CaseContext",
    "CaseFailed",
    "CaseResult",
    "CaseSkipped",
    "RunReport",
    "Target",
    "Verdict",
    "all_cases",
    "case",
    "check",
    "load_cases",
    "run_cases",
]
