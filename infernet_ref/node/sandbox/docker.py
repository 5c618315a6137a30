"""Docker backend (spec/node-worker.md §Docker).

Theory of operation: no registry is reachable, so the worker image is built locally from a
tiny, deterministic root filesystem (``/etc/passwd`` and ``/etc/group`` naming the sandbox user,
empty mount points, the merged-/usr symlinks) with ``docker import``; its tag carries a hash of
that tarball, so a changed layout builds a new image and an existing one is reused. The image
holds no programs: the host's ``/usr``, interpreter, environment and our package sources are
bind-mounted read-only at their host paths (:func:`mounts.mount_plan`), the model read-only at
``/model``. Each worker is ``docker run -i`` with ``--network none`` (the control channel is the
attached stdin/stdout), ``--memory`` = ``--memory-swap`` (no swap), ``--cpus``, ``--pids-limit``,
a read-only root, a size-capped ``/tmp`` tmpfs, ``--cap-drop ALL``,
``--security-opt no-new-privileges``, uid/gid 65534, and ``--log-driver none`` (activations
must not be copied into container logs). Closing the handle removes the container.

A container outlives a worker process that is SIGKILLed together with its ``docker run`` client
(the daemon, not the client, owns it). When the environment names a group
(``INFERNET_SANDBOX_GROUP``), every container also carries ``infernet.group=<group>``, so whoever
started the group (the demo, a test) can reap what is left with :func:`remove_group`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import math
import os
import re
import secrets
import shutil
import subprocess
import tarfile

from infernet_ref.node.sandbox.handle import ProcessWorkerHandle, wait_ready
from infernet_ref.node.sandbox.mounts import model_source, mount_plan, python_argv, worker_env
from infernet_ref.node.sandbox.spec import SANDBOX_MODEL_DIR, SandboxUnavailable, WorkerSpec

IMAGE_REPO = "infernet-worker"
SANDBOX_USER = "65534:65534"
LABEL = "infernet.worker=1"
GROUP_ENV = "INFERNET_SANDBOX_GROUP"
_GROUP_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
PASSWD = b"root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:65534:65534:infernet:/tmp:/usr/sbin/nologin\n"
GROUP = b"root:x:0:\nsandbox:x:65534:\n"
DIRS = ("etc", "tmp", "proc", "dev", "sys", "model", "usr", "root", "work", "home")
LINKS = (("lib", "usr/lib"), ("lib64", "usr/lib64"), ("bin", "usr/bin"), ("sbin", "usr/sbin"))


def rootfs_tarball() -> bytes:
    """The worker image's root filesystem as a deterministic tar (mtime 0, root-owned)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in DIRS:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        for name, target in LINKS:
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            info.mode = 0o777
            tar.addfile(info)
        for name, data in (("etc/passwd", PASSWD), ("etc/group", GROUP)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def image_tag() -> str:
    """``infernet-worker:<first 12 hex of sha256(rootfs)>``."""
    return f"{IMAGE_REPO}:{hashlib.sha256(rootfs_tarball()).hexdigest()[:12]}"


def docker_path() -> str | None:
    return shutil.which("docker")


def daemon_reachable(timeout: float = 10.0) -> bool:
    """True when a Docker daemon answers (``docker version`` reaches the server)."""
    path = docker_path()
    if path is None:
        return False
    try:
        done = subprocess.run(
            [path, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


def ensure_image(timeout: float = 120.0) -> str:
    """Build the worker image if it is missing; return its tag."""
    path = docker_path()
    if path is None:
        raise SandboxUnavailable("the docker client is not installed")
    tag = image_tag()
    probe = subprocess.run(
        [path, "image", "inspect", tag], capture_output=True, timeout=timeout, check=False
    )
    if probe.returncode == 0:
        return tag
    done = subprocess.run(
        [path, "import", "--change", f"LABEL {LABEL}", "-", tag],
        input=rootfs_tarball(),
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise SandboxUnavailable(f"docker import failed: {done.stderr.decode(errors='replace')}")
    return tag


def docker_argv(spec: WorkerSpec, docker: str, image: str, name: str) -> list[str]:
    """The full ``docker run`` command line for one worker (spec/node-worker.md §Docker)."""
    plan = mount_plan()
    mem = str(spec.memory_limit_bytes)
    args = [docker, "run", "--rm", "-i", "--name", name, "--label", LABEL]
    group = os.environ.get(GROUP_ENV, "")
    if _GROUP_RE.match(group):
        args += ["--label", f"infernet.group={group}"]
    args += ["--network", "none", "--memory", mem, "--memory-swap", mem]
    args += ["--cpus", f"{spec.cpus:g}", "--pids-limit", str(spec.pids_limit)]
    args += ["--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    args += ["--user", SANDBOX_USER, "--workdir", "/tmp", "--log-driver", "none"]
    args += ["--ulimit", "core=0", "--ulimit", "nofile=1024:1024"]
    args += ["--tmpfs", f"/tmp:rw,nosuid,nodev,size={spec.scratch_bytes}"]
    for path in plan.ro_paths:
        args += ["--mount", f"type=bind,source={path},target={path},readonly"]
    model = model_source(spec.model_dir)
    if model is not None:
        args += ["--mount", f"type=bind,source={model},target={SANDBOX_MODEL_DIR},readonly"]
    for key, value in worker_env(spec.env, max(1, math.ceil(spec.cpus))).items():
        args += ["--env", f"{key}={value}"]
    args += [image, *python_argv(plan, spec.module)]
    return args + spec.worker_argv(SANDBOX_MODEL_DIR if model is not None else None)


class DockerExecutor:
    """Runs workers in locally built containers (CONTRACTS.md: DockerExecutor)."""

    name = "docker"

    def __init__(self) -> None:
        path = docker_path()
        if path is None or not daemon_reachable():
            raise SandboxUnavailable("no Docker daemon is reachable")
        self._docker = path
        self._image = ensure_image()

    async def start(self, spec: WorkerSpec) -> ProcessWorkerHandle:
        """Start one container and wait until the worker answers ``ping``."""
        if spec.device != "cpu":  # no GPU passthrough into this sandbox in this version
            raise SandboxUnavailable(
                f"{self.name}: CUDA workers run only with the in-process backend in this version"
            )
        name = f"infernet-worker-{secrets.token_hex(6)}"
        argv = docker_argv(spec, self._docker, self._image, name)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        docker = self._docker

        async def cleanup() -> None:
            rm = await asyncio.create_subprocess_exec(
                docker,
                "rm",
                "-f",
                name,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(rm.wait(), 30)

        handle = ProcessWorkerHandle(
            proc, backend=self.name, max_payload=spec.max_payload, cleanup=cleanup
        )
        await wait_ready(handle, spec.start_timeout)
        return handle


def remove_group(group: str, timeout: float = 60.0) -> int | None:
    """Force-remove every worker container labelled ``infernet.group=<group>``.

    Returns how many containers of the group are still listed afterwards (0 when all are gone),
    or None when no Docker client or daemon answers.
    """
    docker = docker_path()
    if docker is None or not _GROUP_RE.match(group):
        return None
    listing = [docker, "ps", "-aq", "--filter", f"label=infernet.group={group}"]
    try:
        found = subprocess.run(listing, capture_output=True, timeout=timeout, check=False)
        if found.returncode != 0:
            return None
        ids = found.stdout.decode().split()
        if ids:
            subprocess.run(
                [docker, "rm", "-f", *ids], capture_output=True, timeout=timeout, check=False
            )
        again = subprocess.run(listing, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return len(again.stdout.split()) if again.returncode == 0 else None
