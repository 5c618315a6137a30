"""The `infernet` command's foundation subcommands."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from infernet_ref.cli import main


def test_version_and_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "infernet_ref", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("infernet-ref ")
    assert "wire v1" in out.stdout


def test_spec_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["spec", "list"]) == 0
    out = capsys.readouterr().out
    assert "nostr-event" in out
    assert "job-envelope" in out


def test_spec_validate(
    tmp_path: object, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    doc = {"v": 1, "type": "job.offer", "id": "m-1", "body": {}}
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(json.dumps(doc).encode())))
    assert main(["spec", "validate", "job-envelope"]) == 0
    assert json.loads(capsys.readouterr().out) == {"valid": True, "model": "JobEnvelope"}
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'{"v": 0}')))
    assert main(["spec", "validate", "job-envelope"]) == 1
    err = capsys.readouterr().err
    assert "infernet: error:" in err
