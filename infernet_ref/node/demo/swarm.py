"""Process supervision for the local demo swarm (issue 8 item 8).

Theory of operation: every node of the demo is a real ``infernet node run`` process with its own
configuration file, data directory (key created on first run, SQLite state, block store) and log
file, started in its own process group so that one signal reaches the node *and* the sandboxed
workers it started. A node is ready when it has written its ready file (endpoint and public key,
written atomically by the daemon once it listens). :class:`Swarm` remembers every process it
started and :meth:`Swarm.close` ends them all — SIGTERM to each group, a bounded grace period,
then SIGKILL — so a demo that fails half-way, or is interrupted with Ctrl-C, leaves nothing
running. :meth:`Swarm.kill` is the fault injection: SIGKILL to one node's whole group, no
goodbye.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infernet_ref.errors import InfernetError
from infernet_ref.node.sandbox.docker import GROUP_ENV


class SwarmError(InfernetError):
    """A demo node failed to start or misbehaved."""


@dataclass
class NodeProc:
    """One node process of the swarm."""

    name: str
    role: str
    config_path: Path
    data_dir: Path
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    endpoint: str = ""
    pubkey: str = ""
    killed_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ready_path(self) -> Path:
        return self.data_dir / "ready.json"

    @property
    def base_url(self) -> str:
        """``ws://host:port`` without the ``/job`` path."""
        return self.endpoint.rsplit("/", 1)[0]

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


class Swarm:
    """Starts, tracks and always cleans up the demo's node processes."""

    def __init__(self, root: Path, *, python: str = sys.executable) -> None:
        self.root = root
        self.python = python
        self.nodes: dict[str, NodeProc] = {}
        #: Label of every sandbox container this swarm's nodes start (reaped by the demo's cleanup).
        self.group = f"demo-{os.getpid()}-{secrets.token_hex(4)}"

    def add(self, name: str, role: str, config: dict[str, Any]) -> NodeProc:
        """Write a node's configuration (JSON) and register it; does not start it."""
        data_dir = self.root / name
        data_dir.mkdir(parents=True, exist_ok=True)
        data_dir.chmod(0o700)
        config = {**config, "data_dir": str(data_dir)}
        path = self.root / f"{name}.json"
        path.write_text(json.dumps(config, indent=2, sort_keys=True))
        node = NodeProc(name, role, path, data_dir, self.root / f"{name}.log")
        self.nodes[name] = node
        return node

    async def start(self, node: NodeProc) -> None:
        """Start ``infernet node run`` for ``node`` in a new process group."""
        node.ready_path.unlink(missing_ok=True)
        argv = [self.python, "-m", "infernet_ref", "node", "run", "--config", str(node.config_path)]
        argv += ["--ready-file", str(node.ready_path)]
        log = node.log_path.open("ab")
        try:
            node.proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1", GROUP_ENV: self.group},
            )
        finally:
            log.close()

    async def wait_ready(self, node: NodeProc, timeout: float) -> None:
        """Wait for the node's ready file; SwarmError with its log tail if it exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.ready_path.exists():
                with contextlib.suppress(ValueError, OSError):
                    info = json.loads(node.ready_path.read_text())
                    node.endpoint, node.pubkey = info["endpoint"], info["pubkey"]
                    return
            if not node.running:
                raise SwarmError(f"{node.name} exited during start-up:\n{self.log_tail(node)}")
            await asyncio.sleep(0.2)
        raise SwarmError(f"{node.name} not ready after {timeout:.0f} s:\n{self.log_tail(node)}")

    async def start_all(self, nodes: list[NodeProc], timeout: float) -> None:
        for node in nodes:
            await self.start(node)
        await asyncio.gather(*(self.wait_ready(n, timeout) for n in nodes))

    def log_tail(self, node: NodeProc, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(node.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def kill(self, node: NodeProc) -> None:
        """SIGKILL a node's whole process group (the node and its sandboxed workers)."""
        if node.proc is not None and node.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(node.proc.pid, signal.SIGKILL)
            node.killed_at = time.time()

    async def close(self, grace: float = 15.0) -> None:
        """Stop every node: SIGTERM (graceful shutdown), then SIGKILL after ``grace`` seconds."""
        live = [n for n in self.nodes.values() if n.proc is not None]
        for node in live:
            if node.running:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(node.proc.pid, signal.SIGTERM)  # type: ignore[union-attr]
        waits = [asyncio.wait_for(n.proc.wait(), grace) for n in live]  # type: ignore[union-attr]
        results = await asyncio.gather(*waits, return_exceptions=True)
        for node, res in zip(live, results, strict=True):
            if isinstance(res, BaseException):
                self.kill(node)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(node.proc.wait(), 10)  # type: ignore[union-attr]
        for node in live:  # a group may still hold workers whose leader already exited
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(node.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]

    def leftovers(self) -> list[int]:
        """Pids of processes still alive in any of the swarm's process groups (should be none)."""
        groups = {n.proc.pid for n in self.nodes.values() if n.proc is not None}
        alive = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry)) in groups:
                    alive.append(int(entry))
        return alive
