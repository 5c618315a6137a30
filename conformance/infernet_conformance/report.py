"""Reports: JSON (the full record), JUnit XML (for CI dashboards) and a Markdown table (for people)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

from infernet_conformance.runner import RunReport, Verdict


def to_json(report: RunReport) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n"


def to_junit(report: RunReport) -> str:
    counts = report.counts()
    suites = ET.Element("testsuites", name="infernet-conformance")
    by_layer: dict[str, ET.Element] = {}
    for r in report.results:
        suite = by_layer.get(r.layer)
        if suite is None:
            suite = ET.SubElement(suites, "testsuite", name=r.layer)
            by_layer[r.layer] = suite
        tc = ET.SubElement(
            suite, "testcase", classname=r.layer, name=r.id, time=f"{r.duration_s:.3f}"
        )
        ET.SubElement(tc, "properties").append(
            ET.Element("property", name="section", value=r.section)
        )
        if r.verdict is Verdict.FAIL:
            ET.SubElement(
                tc, "failure", message=r.message
            ).text = f"{r.section}: {r.description}\n{r.message}"
        elif r.verdict is Verdict.SKIP:
            ET.SubElement(tc, "skipped", message=r.message)
    for layer, suite in by_layer.items():
        rs = [r for r in report.results if r.layer == layer]
        suite.set("tests", str(len(rs)))
        suite.set("failures", str(sum(r.verdict is Verdict.FAIL for r in rs)))
        suite.set("skipped", str(sum(r.verdict is Verdict.SKIP for r in rs)))
        suite.set("errors", "0")
    suites.set("tests", str(len(report.results)))
    suites.set("failures", str(counts["fail"]))
    suites.set("skipped", str(counts["skip"]))
    ET.indent(suites)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(report: RunReport) -> str:
    c = report.counts()
    lines = [
        "# Infernet conformance report",
        "",
        "Target: " + ", ".join(f"{k} = `{v}`" for k, v in report.target.items()),
        "",
        f"**{c['pass']} passed, {c['fail']} failed, {c['skip']} skipped**",
        "",
        "| case | section | verdict | detail |",
        "| --- | --- | --- | --- |",
    ]
    mark = {Verdict.PASS: "pass", Verdict.FAIL: "**FAIL**", Verdict.SKIP: "skip"}
    for r in report.results:
        lines.append(f"| `{r.id}` | {_cell(r.section)} | {mark[r.verdict]} | {_cell(r.message)} |")
    return "\n".join(lines) + "\n"


def write_reports(report: RunReport, directory: Path) -> list[Path]:
    """Write report.json, junit.xml and report.md into ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for name, text in (
        ("report.json", to_json(report)),
        ("junit.xml", to_junit(report)),
        ("report.md", to_markdown(report)),
    ):
        path = directory / name
        path.write_text(text, encoding="utf-8")
        out.append(path)
    return out
