"""The conformance runner itself: verdicts, timeouts, crashes, reports and exit status."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from infernet_conformance import (
    CaseContext,
    CaseFailed,
    CaseSkipped,
    Target,
    Verdict,
    all_cases,
    case,
    check,
    run_cases,
)
from infernet_conformance.registry import unregister
from infernet_conformance.report import to_junit, to_markdown, write_reports
from infernet_conformance.runner import select
from infernet_conformance.target import TargetError

from infernet_ref.cli import main

IDS = [
    "selftest.pass",
    "selftest.fail",
    "selftest.skip",
    "selftest.crash",
    "selftest.slow",
    "selftest.needs_dht",
]


@pytest.fixture
def selftest_cases() -> Iterator[None]:
    @case("selftest.pass", section="§1", description="always passes")
    async def _pass(ctx: CaseContext) -> None:
        check(ctx.require("ws").port == 9, "wrong port")

    @case("selftest.fail", section="§2", description="always fails")
    async def _fail(ctx: CaseContext) -> None:
        raise CaseFailed("peer sent <garbage> & closed")

    @case("selftest.skip", section="§3", description="skips")
    async def _skip(ctx: CaseContext) -> None:
        raise CaseSkipped("not applicable")

    @case("selftest.crash", section="§4", description="the case itself crashes")
    async def _crash(ctx: CaseContext) -> None:
        raise RuntimeError("boom")

    @case("selftest.slow", section="§5", description="never finishes")
    async def _slow(ctx: CaseContext) -> None:
        await asyncio.sleep(3600)

    @case("selftest.needs_dht", section="§6", description="needs a DHT endpoint")
    async def _dht(ctx: CaseContext) -> None:
        ctx.require("dht")

    yield
    for case_id in IDS:
        unregister(case_id)


async def test_verdicts(selftest_cases: None) -> None:
    cases = select(all_cases(), ["selftest"])
    assert [c.id for c in cases] == sorted(IDS)
    report = await run_cases(cases, Target.parse(["ws://127.0.0.1:9"]), timeout=0.2)
    verdicts = {r.id: r.verdict for r in report.results}
    assert verdicts == {
        "selftest.pass": Verdict.PASS,
        "selftest.fail": Verdict.FAIL,
        "selftest.skip": Verdict.SKIP,
        "selftest.crash": Verdict.FAIL,
        "selftest.slow": Verdict.FAIL,
        "selftest.needs_dht": Verdict.SKIP,
    }
    messages = {r.id: r.message for r in report.results}
    assert "boom" in messages["selftest.crash"]
    assert "timed out" in messages["selftest.slow"]
    assert "no dht endpoint" in messages["selftest.needs_dht"]
    assert not report.ok
    assert report.counts() == {"pass": 1, "fail": 3, "skip": 2}


async def test_reports(selftest_cases: None, tmp_path: Path) -> None:
    cases = select(all_cases(), ["selftest.pass", "selftest.fail", "selftest.skip"])
    report = await run_cases(cases, Target.parse(["ws://127.0.0.1:9"]), timeout=1)
    paths = write_reports(report, tmp_path / "out")
    assert sorted(p.name for p in paths) == ["junit.xml", "report.json", "report.md"]
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    assert doc["ok"] is False
    assert doc["counts"] == {"pass": 1, "fail": 1, "skip": 1}
    root = ET.fromstring(to_junit(report))
    assert root.get("failures") == "1"
    failures = root.findall(".//testcase/failure")
    assert len(failures) == 1
    assert failures[0].get("message") == "peer sent <garbage> & closed"
    assert len(root.findall(".//testcase/skipped")) == 1
    md = to_markdown(report)
    assert "| `selftest.fail` | §2 | **FAIL** |" in md
    assert "1 passed, 1 failed, 1 skipped" in md


def test_cli_exit_status(selftest_cases: None, tmp_path: Path) -> None:
    args = ["conformance", "run", "--target", "ws://127.0.0.1:9", "--report-dir", str(tmp_path)]
    assert main([*args, "--only", "selftest.pass"]) == 0
    assert main([*args, "--only", "selftest.fail", "--only", "selftest.pass"]) == 1
    junit = ET.parse(tmp_path / "junit.xml").getroot()
    assert [f.get("message") for f in junit.iter("failure")] == ["peer sent <garbage> & closed"]
    assert main([*args, "--only", "nothing.matches"]) == 2


def test_case_ids_are_checked() -> None:
    with pytest.raises(ValueError, match="dotted"):
        case("NoDots", section="x", description="y")


def test_target_parsing() -> None:
    t = Target.parse(
        ["ws://127.0.0.1:8765", "udp://127.0.0.1:4000", "content=ws://127.0.0.1:9000/c"]
    )
    assert t.describe() == {
        "content": "ws://127.0.0.1:9000/c",
        "dht": "udp://127.0.0.1:4000",
        "ws": "ws://127.0.0.1:8765",
    }
    dht = t.get("dht")
    assert dht is not None
    assert (dht.host, dht.port) == ("127.0.0.1", 4000)
    for bad in ["ftp://x:1", "ws://127.0.0.1", "nonsense"]:
        with pytest.raises(TargetError):
            Target.parse([bad])
