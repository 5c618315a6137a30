"""Shared fixtures for the identity-layer tests: vector locations and the vector writer switch."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VECTORS = ROOT / "spec" / "vectors" / "nostr"
SHARED = ROOT.parent / "shared" / "vectors"
WRITE_VECTORS = os.environ.get("INFERNET_WRITE_VECTORS") == "1"


def emit_vectors(name: str, data: Any) -> None:
    """Write ``spec/vectors/nostr/<name>`` when INFERNET_WRITE_VECTORS=1, else check it is unchanged."""
    path = VECTORS / name
    text = json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False) + "\n"
    if WRITE_VECTORS:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"{path} missing: run the tests with INFERNET_WRITE_VECTORS=1"
    assert path.read_text(encoding="utf-8") == text, (
        f"{path} is stale: regenerate with INFERNET_WRITE_VECTORS=1"
    )
