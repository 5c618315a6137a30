"""Drive tests/nostr/js/oracle.mjs (nostr-tools) with one batch of JSON requests."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

JS = Path(__file__).resolve().parent / "js"


def available() -> str | None:
    """None when the oracle can run, else the reason it cannot."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (JS / "node_modules" / "nostr-tools").is_dir():
        return "nostr-tools is not installed: run scripts/setup.d/20-nostr-tools.sh"
    return None


def oracle(requests: list[dict[str, Any]], timeout: float = 120) -> list[Any]:
    """Run the batch in one node process and return its results in order."""
    reason = available()
    if reason:
        pytest.skip(reason)
    proc = subprocess.run(
        ["node", str(JS / "oracle.mjs")],
        input=json.dumps(requests, ensure_ascii=False).encode(),
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    results: list[Any] = json.loads(proc.stdout)
    return results
