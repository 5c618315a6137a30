"""Start nodes as subprocesses from scripts and tests (the demo and the benchmarks use this).

:func:`start_node_process` writes a config file, runs ``python -m infernet_ref node run
--config ... --ready-file ...`` and waits until the node listens; :class:`NodeProcess` knows its
endpoint and key and stops it gracefully (SIGTERM, then SIGKILL after a grace period) or kills
it outright (a crash, for fault-injection).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from infernet_ref.errors import InfernetError


class NodeStartError(InfernetError):
    """The node process exited or did not become ready in time."""


@dataclass
class NodeProcess:
    name: str
    proc: subprocess.Popen[bytes]
    endpoint: str
    pubkey: str
    data_dir: Path
    log_path: Path

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the node gets no chance to clean up (fault injection)."""
        if self.alive:
            self.proc.kill()
        self.proc.wait(timeout=30)

    def stop(self, grace: float = 20.0) -> int:
        """SIGTERM and wait; SIGKILL after ``grace`` seconds. Returns the exit status."""
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        return int(self.proc.returncode)


def start_node_process(
    name: str,
    config: dict[str, Any],
    *,
    workdir: Path,
    timeout: float = 60.0,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
) -> NodeProcess:
    """Start a node from ``config`` (data_dir defaults to ``workdir/name``) and wait until ready."""
    workdir.mkdir(parents=True, exist_ok=True)
    cfg = {"data_dir": str(workdir / name), **config}
    cfg_path = workdir / f"{name}.json"
    cfg_path.write_text(json.dumps(cfg, indent=2))
    ready = workdir / f"{name}.ready"
    ready.unlink(missing_ok=True)
    log_path = workdir / f"{name}.log"
    log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - owned by the child
    proc = subprocess.Popen(
        [
            python,
            "-m",
            "infernet_ref",
            "node",
            "run",
            "--config",
            str(cfg_path),
            "--ready-file",
            str(ready),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready.exists():
            info = json.loads(ready.read_text())
            return NodeProcess(
                name, proc, info["endpoint"], info["pubkey"], Path(cfg["data_dir"]), log_path
            )
        if proc.poll() is not None:
            raise NodeStartError(
                f"node {name} exited with {proc.returncode}: {log_path.read_text()[-2000:]}"
            )
        time.sleep(0.05)
    proc.kill()
    raise NodeStartError(f"node {name} not ready after {timeout} s: {log_path.read_text()[-2000:]}")
