"""Running cases and collecting verdicts.

Each case runs in the same event loop, one after another (cases open connections to a single
node; running them in parallel would make failures depend on the node's concurrency limits),
under its own timeout. Anything other than a pass, a :class:`CaseFailed` or a
:class:`CaseSkipped` — a timeout, a crash in the case — is a failure with the exception named, so
a broken node can never make the suite report success.
"""

from __future__ import annotations

import asyncio
import fnmatch
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from infernet_conformance.registry import Case, CaseContext, CaseFailed, CaseSkipped
from infernet_conformance.target import Target


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class CaseResult:
    id: str
    layer: str
    section: str
    description: str
    verdict: Verdict
    message: str
    duration_s: float


@dataclass
class RunReport:
    target: dict[str, str]
    started_at: float
    results: list[CaseResult] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {v.value: 0 for v in Verdict}
        for r in self.results:
            out[r.verdict.value] += 1
        return out

    @property
    def ok(self) -> bool:
        return all(r.verdict is not Verdict.FAIL for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "started_at": self.started_at,
            "counts": self.counts(),
            "ok": self.ok,
            "results": [{**asdict(r), "verdict": r.verdict.value} for r in self.results],
        }


def select(cases: list[Case], patterns: list[str] | None) -> list[Case]:
    """Cases whose id matches any glob in ``patterns`` (a bare prefix like ``ws.frame`` matches its subtree)."""
    if not patterns:
        return cases
    out = []
    for c in cases:
        for pat in patterns:
            if (
                fnmatch.fnmatchcase(c.id, pat)
                or c.id == pat
                or c.id.startswith(pat.rstrip(".") + ".")
            ):
                out.append(c)
                break
    return out


async def _run_one(c: Case, target: Target, timeout: float, options: dict[str, Any]) -> CaseResult:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="infernet-conformance-") as tmp:
        ctx = CaseContext(target=target, timeout=timeout, workdir=Path(tmp), options=options)
        try:
            await asyncio.wait_for(c.func(ctx), timeout)
        except CaseFailed as exc:
            verdict, message = Verdict.FAIL, str(exc) or "assertion failed"
        except CaseSkipped as exc:
            verdict, message = Verdict.SKIP, str(exc)
        except TimeoutError:
            verdict, message = Verdict.FAIL, f"timed out after {timeout:g} s"
        except Exception as exc:  # a crash is a failure, never a pass
            tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
            verdict, message = Verdict.FAIL, f"error: {tb}"
        else:
            verdict, message = Verdict.PASS, ""
    return CaseResult(
        c.id, c.layer, c.section, c.description, verdict, message, time.perf_counter() - start
    )


async def run_cases(
    cases: list[Case],
    target: Target,
    *,
    timeout: float = 10.0,
    options: dict[str, Any] | None = None,
) -> RunReport:
    """Run ``cases`` against ``target`` and return the report."""
    report = RunReport(target=target.describe(), started_at=time.time())
    for c in cases:
        report.results.append(await _run_one(c, target, timeout, dict(options or {})))
    return report
