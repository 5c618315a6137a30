"""Codegen is deterministic, matches what is committed, and the drift check catches hand edits."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from infernet_ref.cli import main
from infernet_ref.specs import codegen

pytestmark = pytest.mark.slow  # each generation runs datamodel-codegen (~2 s)


def test_committed_models_match_spec() -> None:
    assert codegen.check() == "", "generated/ is stale: run `infernet spec generate`"


def test_generation_is_deterministic(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    codegen.render(codegen.SPEC_SCHEMAS, a)
    codegen.render(codegen.SPEC_SCHEMAS, b)
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files_a == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
        assert b"20" + b"26-" not in (a / rel).read_bytes()  # no timestamps


def test_header_names_source_and_digest() -> None:
    module = codegen.GENERATED_PACKAGE / "nostr_event_schema.py"
    lines = module.read_text(encoding="utf-8").splitlines()
    source = codegen.SPEC_SCHEMAS / "nostr-event.schema.json"
    assert lines[1] == "# source: spec/schemas/nostr-event.schema.json"
    assert lines[2] == f"# sha256: {hashlib.sha256(source.read_bytes()).hexdigest()}"


def _copy_spec(tmp_path: Path) -> tuple[Path, Path]:
    spec = tmp_path / "schemas"
    shutil.copytree(codegen.SPEC_SCHEMAS, spec)
    out = tmp_path / "infernet_models"
    shutil.copytree(codegen.GENERATED_PACKAGE, out, ignore=shutil.ignore_patterns("__pycache__"))
    return spec, out


def test_drift_check_catches_a_hand_edit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, out = _copy_spec(tmp_path)
    target = out / "job_envelope_schema.py"
    target.write_text(target.read_text(encoding="utf-8").replace('extra="forbid"', 'extra="allow"'))
    assert main(["spec", "check", "--spec-dir", str(spec), "--out", str(out)]) == 1
    report = capsys.readouterr().out
    assert re.search(r'^-\s+extra="allow",$', report, re.MULTILINE)
    assert re.search(r'^\+\s+extra="forbid",$', report, re.MULTILINE)


def test_schema_edit_then_generate_is_all_a_spec_author_needs(tmp_path: Path) -> None:
    spec, out = _copy_spec(tmp_path)
    path = spec / "job-envelope.schema.json"
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["properties"]["priority"] = {
        "description": "Scheduling priority.",
        "type": "integer",
        "minimum": 0,
    }
    path.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    assert main(["spec", "check", "--spec-dir", str(spec), "--out", str(out)]) == 1
    assert main(["spec", "generate", "--spec-dir", str(spec), "--out", str(out)]) == 0
    assert main(["spec", "check", "--spec-dir", str(spec), "--out", str(out)]) == 0
    assert "priority:" in (out / "job_envelope_schema.py").read_text(encoding="utf-8")
    assert (out / "schemas" / "job-envelope.schema.json").read_bytes() == path.read_bytes()
