"""Per-worker control groups for the bubblewrap backend (spec/node-worker.md §Limits).

Theory of operation: bubblewrap confines what a worker *sees*; a control group confines what it
*uses*. When the host lets us (root, or a delegated subtree), each worker gets its own group
under the provider's own group with a hard memory limit (the kernel OOM-kills inside the group,
never the provider), a process-count limit (``pids.max``: a fork bomb stops at the limit) and a
CPU quota. Both layouts are handled: cgroup v1 (one hierarchy per controller, as on this
project's CI machines) and v2 (the unified tree). The worker joins its group before ``exec``
(``join`` runs in the forked child), so bwrap and every descendant are inside from the start.
Where no group can be made, :func:`create` returns ``None`` and the executor relies on rlimits.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from dataclasses import dataclass

ROOT = "/sys/fs/cgroup"
CPU_PERIOD_US = 100_000
PREFIX = "infernet-worker-"


@dataclass(frozen=True, slots=True)
class Cgroup:
    """One worker's group(s); ``dirs`` holds one folder per v1 controller or the single v2 one."""

    dirs: tuple[str, ...]
    version: int

    def procs_files(self) -> list[str]:
        return [os.path.join(d, "cgroup.procs") for d in self.dirs]

    def join(self) -> None:
        """Move the calling process into the group (called in the child before exec)."""
        pid = str(os.getpid()).encode()
        for path in self.procs_files():
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    def oom_killed(self) -> bool:
        """Whether the kernel OOM-killed something in the group."""
        for d in self.dirs:
            for name, key in (("memory.events", "oom_kill"), ("memory.oom_control", "oom_kill")):
                with contextlib.suppress(OSError, ValueError):
                    for line in _read(os.path.join(d, name)).splitlines():
                        parts = line.split()
                        if len(parts) == 2 and parts[0] == key and int(parts[1]) > 0:
                            return True
        return False

    def remove(self) -> None:
        """Kill anything left in the group and delete it."""
        for d in self.dirs:
            with contextlib.suppress(OSError, ValueError):
                for pid in _read(os.path.join(d, "cgroup.procs")).split():
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(int(pid), 9)
        for d in self.dirs:
            for _ in range(100):  # killed tasks leave the group once the kernel reaped them
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def _own_paths() -> dict[str, str]:
    """Map controller (or '' for v2) to this process's group path, from /proc/self/cgroup."""
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in _read("/proc/self/cgroup").splitlines():
            _, controllers, path = line.split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                out[c] = path
    return out


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _create_v1(name: str, memory: int, pids: int, cpus: float) -> Cgroup | None:
    own = _own_paths()
    dirs: list[str] = []
    try:
        for ctl in ("memory", "pids", "cpu"):
            base = os.path.join(ROOT, ctl)
            if not os.path.isdir(base) or ctl not in own:
                if ctl == "cpu":
                    continue
                raise OSError(f"no v1 {ctl} controller")
            d = os.path.join(base + own[ctl], name)
            os.mkdir(d)
            dirs.append(d)
            if ctl == "memory":
                _write(os.path.join(d, "memory.limit_in_bytes"), str(memory))
                with contextlib.suppress(OSError):
                    _write(os.path.join(d, "memory.memsw.limit_in_bytes"), str(memory))
            elif ctl == "pids":
                _write(os.path.join(d, "pids.max"), str(pids))
            else:
                _write(os.path.join(d, "cpu.cfs_period_us"), str(CPU_PERIOD_US))
                _write(
                    os.path.join(d, "cpu.cfs_quota_us"), str(max(1000, int(cpus * CPU_PERIOD_US)))
                )
    except OSError:
        Cgroup(tuple(dirs), 1).remove()
        return None
    return Cgroup(tuple(dirs), 1)


def _create_v2(name: str, memory: int, pids: int, cpus: float) -> Cgroup | None:
    parent = os.path.join(ROOT, "infernet-workers")
    d = os.path.join(parent, name)
    try:
        os.makedirs(parent, exist_ok=True)
        with contextlib.suppress(OSError):
            _write(os.path.join(ROOT, "cgroup.subtree_control"), "+memory +pids +cpu")
        _write(os.path.join(parent, "cgroup.subtree_control"), "+memory +pids +cpu")
        os.mkdir(d)
        _write(os.path.join(d, "memory.max"), str(memory))
        with contextlib.suppress(OSError):
            _write(os.path.join(d, "memory.swap.max"), "0")
        _write(os.path.join(d, "pids.max"), str(pids))
        with contextlib.suppress(OSError):
            _write(
                os.path.join(d, "cpu.max"),
                f"{max(1000, int(cpus * CPU_PERIOD_US))} {CPU_PERIOD_US}",
            )
    except OSError:
        Cgroup((d,) if os.path.isdir(d) else (), 2).remove()
        return None
    return Cgroup((d,), 2)


def sweep_stale(min_age_s: float = 120.0) -> int:
    """Remove empty worker groups left by providers that died without cleaning up.

    Only groups named by this module, with no task inside and older than ``min_age_s`` (so a
    group another executor just made, whose worker has not joined yet, is left alone).
    """
    removed = 0
    now = time.time()
    for base, _, _ in _walk_roots():
        with contextlib.suppress(OSError):
            for name in os.listdir(base):
                d = os.path.join(base, name)
                if not name.startswith(PREFIX) or now - os.stat(d).st_mtime < min_age_s:
                    continue
                with contextlib.suppress(OSError):
                    if not _read(os.path.join(d, "cgroup.procs")).split():
                        os.rmdir(d)
                        removed += 1
    return removed


def _walk_roots() -> list[tuple[str, str, str]]:
    """Folders where this module creates groups: (folder, controller, own path)."""
    if os.path.exists(os.path.join(ROOT, "cgroup.controllers")):
        return [(os.path.join(ROOT, "infernet-workers"), "", "")]
    own = _own_paths()
    return [
        (os.path.join(ROOT, ctl) + own[ctl], ctl, own[ctl])
        for ctl in ("memory", "pids", "cpu")
        if ctl in own and os.path.isdir(os.path.join(ROOT, ctl))
    ]


def create(memory: int, pids: int, cpus: float) -> Cgroup | None:
    """Make a group for one worker, or return None when this host does not allow it."""
    name = f"{PREFIX}{secrets.token_hex(6)}"
    if os.path.exists(os.path.join(ROOT, "cgroup.controllers")):
        return _create_v2(name, memory, pids, cpus)
    if os.path.isdir(os.path.join(ROOT, "memory")):
        return _create_v1(name, memory, pids, cpus)
    return None
