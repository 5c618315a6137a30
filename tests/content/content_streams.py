"""Deterministic byte streams shared with tests/content/js/oracle.mjs (`gen` mode).

Segment s (1 MiB) is BASE with bytes 0..7 replaced by s (little-endian u64);
BASE[i] = ((i * 2654435761) mod 2**32 >> 13) & 0xff. Both sides generate the stream on the fly,
so 1 GiB files are hashed without ever being written to disk.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

MIB = 1 << 20
JS_DIR = Path(__file__).parent / "js"
_BASE = (
    ((np.arange(MIB, dtype=np.uint64) * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF))
    >> np.uint64(13)
).astype(np.uint8)
BASE = _BASE.tobytes()


def gen_stream(length: int) -> Iterator[bytes]:
    """The deterministic stream of ``length`` bytes, one ≤1 MiB piece at a time."""
    s = 0
    left = length
    while left > 0:
        seg = s.to_bytes(8, "little") + BASE[8:]
        n = min(MIB, left)
        yield seg if n == MIB else seg[:n]
        left -= n
        s += 1


def gen_bytes(length: int) -> bytes:
    return b"".join(gen_stream(length))


def oracle_available() -> bool:
    return (
        shutil.which("node") is not None
        and (JS_DIR / "node_modules" / "ipfs-unixfs-importer").is_dir()
    )


def oracle(*args: str, timeout: float = 300, stdin: str | None = None) -> list[dict[str, Any]]:
    """Run the IPFS JS oracle; skip (with the setup step named) when it is not installed."""
    if not oracle_available():
        if os.environ.get("CI"):
            pytest.fail("IPFS JS oracle missing: scripts/setup.d/30-ipfs-oracle.sh did not run")
        pytest.skip("IPFS JS oracle not installed: run scripts/setup.d/30-ipfs-oracle.sh")
    out = subprocess.run(
        ["node", str(JS_DIR / "oracle.mjs"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
        input=stdin,
    )
    return [json.loads(line) for line in out.stdout.split("\n") if line.strip()]
