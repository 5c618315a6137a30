"""Bubblewrap backend (spec/node-worker.md §Bubblewrap).

Theory of operation: ``bwrap --unshare-all`` gives the worker fresh user, mount, PID, IPC, UTS,
cgroup and network namespaces — the network namespace holds only its own loopback, so no
connection can leave it — with ``--die-with-parent`` so it cannot outlive the provider. Its
filesystem is an empty tmpfs root on which exactly the read-only mounts of
:func:`mounts.mount_plan` are placed, the model at ``/model`` (read-only), a fresh ``/proc``,
a minimal ``/dev`` and a size-capped ``/tmp``. It runs as uid/gid 65534 with every capability
dropped and a new session (no terminal injection). Resource limits: a per-worker control group
(memory, pids, CPU quota) where the host allows one, and in every case rlimits set in the child
before ``exec`` (address space when no memory group exists, processes, open files, file size,
no core dumps). ``RLIMIT_NPROC`` is not enforced for root, so on a root host without cgroups the
process limit is best effort; :attr:`BubblewrapExecutor.limits` says which mechanism is active.
"""

from __future__ import annotations

import asyncio
import math
import os
import resource
import shutil
import subprocess
from collections.abc import Callable

from infernet_ref.node.sandbox import cgroups
from infernet_ref.node.sandbox.handle import ProcessWorkerHandle, wait_ready
from infernet_ref.node.sandbox.mounts import (
    USR_LINKS,
    model_source,
    mount_plan,
    python_argv,
    worker_env,
)
from infernet_ref.node.sandbox.spec import (
    SANDBOX_MODEL_DIR,
    SandboxUnavailable,
    WorkerSpec,
)

SANDBOX_UID = 65534
MAX_OPEN_FILES = 1024


def bwrap_path() -> str | None:
    """The bwrap binary, or None when bubblewrap is not installed."""
    return shutil.which("bwrap")


def bwrap_argv(spec: WorkerSpec, bwrap: str) -> list[str]:
    """The full command line for one worker (spec/node-worker.md §Bubblewrap)."""
    plan = mount_plan()
    args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session"]
    args += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--cap-drop", "ALL"]
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--size", str(spec.scratch_bytes), "--tmpfs", "/tmp"]
    for link, target in plan.links:
        args += ["--symlink", target, link]
    for path in plan.ro_paths:
        args += ["--ro-bind", path, path]
    model = model_source(spec.model_dir)
    if model is not None:
        args += ["--ro-bind", model, SANDBOX_MODEL_DIR]
    args += ["--remount-ro", "/", "--chdir", "/tmp", "--"]
    args += python_argv(plan, spec.module)
    args += spec.worker_argv(SANDBOX_MODEL_DIR if model is not None else None)
    return args


def _preexec(spec: WorkerSpec, group: cgroups.Cgroup | None) -> Callable[[], None]:
    def setup() -> None:
        if group is not None:
            group.join()
        else:
            as_limit = spec.memory_limit_bytes
            resource.setrlimit(resource.RLIMIT_AS, (as_limit, as_limit))
        resource.setrlimit(resource.RLIMIT_NPROC, (spec.pids_limit, spec.pids_limit))
        resource.setrlimit(resource.RLIMIT_NOFILE, (MAX_OPEN_FILES, MAX_OPEN_FILES))
        resource.setrlimit(resource.RLIMIT_FSIZE, (spec.scratch_bytes, spec.scratch_bytes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return setup


class BubblewrapExecutor:
    """Runs workers under bubblewrap (CONTRACTS.md: BubblewrapExecutor)."""

    name = "bubblewrap"

    def __init__(self, *, use_cgroups: bool = True) -> None:
        path = bwrap_path()
        if path is None:
            raise SandboxUnavailable("bubblewrap (bwrap) is not installed")
        self._bwrap = path
        self._use_cgroups = use_cgroups
        if use_cgroups:
            cgroups.sweep_stale()
        self.limits = "cgroup" if use_cgroups else "rlimit"

    async def start(self, spec: WorkerSpec) -> ProcessWorkerHandle:
        """Start one worker and wait until it answers ``ping`` (spec/node-worker.md §Worker)."""
        if spec.device != "cpu":  # no GPU passthrough into this sandbox in this version
            raise SandboxUnavailable(
                f"{self.name}: CUDA workers run only with the in-process backend in this version"
            )
        group = None
        if self._use_cgroups:
            group = cgroups.create(spec.memory_limit_bytes, spec.pids_limit, spec.cpus)
        self.limits = "cgroup" if group is not None else "rlimit"
        argv = bwrap_argv(spec, self._bwrap)
        env = worker_env(spec.env, max(1, math.ceil(spec.cpus)))
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            preexec_fn=_preexec(spec, group),
            close_fds=True,
        )

        async def cleanup() -> None:
            if group is not None:
                await asyncio.to_thread(group.remove)

        handle = ProcessWorkerHandle(
            proc, backend=self.name, max_payload=spec.max_payload, cleanup=cleanup
        )
        handle.oom_check = group.oom_killed if group is not None else None
        await wait_ready(handle, spec.start_timeout)
        return handle


def available() -> bool:
    """True when bwrap is installed and can create its namespaces here."""
    path = bwrap_path()
    if path is None:
        return False
    links = [a for link, target in USR_LINKS.items() for a in ("--symlink", target, link)]
    try:
        done = subprocess.run(
            [path, "--unshare-all", "--ro-bind", "/usr", "/usr", *links, "--", "/usr/bin/true"],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and os.path.exists(path)
