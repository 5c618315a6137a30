"""What a sandboxed worker must see of the host, and nothing more (spec/node-worker.md §Mounts).

Theory of operation: the worker runs this very interpreter and this very installation, so the
sandbox exposes, read-only and at their host paths (so the venv's symlinks and the editable
install's path hooks keep working): the system tree ``/usr`` (libc and the shared libraries the
interpreter links; the merged-/usr links ``/lib``, ``/lib64``, ``/bin``, ``/sbin`` are recreated
as symlinks), the dynamic linker cache, the interpreter's installation (``sys.base_prefix``),
the virtual environment (``sys.prefix``), and the source folder of each of our own packages
when it lives outside the environment (editable installs). The model folder is mounted at
``/model``; ``/tmp`` is a small private tmpfs. Everything else of the host — its ``/etc``,
``/root``, ``/home``, ``/work``, other jobs' data — does not exist inside.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from infernet_ref.errors import LocalProtocolError

#: Our packages a worker imports (their folders are mounted when outside the environment).
PACKAGES = ("infernet_ref", "infernet_models", "infernet_kernels")
#: Merged-/usr compatibility links recreated inside the sandbox.
USR_LINKS = {"/lib": "usr/lib", "/lib64": "usr/lib64", "/bin": "usr/bin", "/sbin": "usr/sbin"}
LD_CACHE = "/etc/ld.so.cache"


@dataclass(frozen=True, slots=True)
class MountPlan:
    """Read-only host paths (mounted at the same path) plus the interpreter to run."""

    ro_paths: tuple[str, ...]
    links: tuple[tuple[str, str], ...]
    python: str


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def package_dirs() -> list[str]:
    """Folders holding our packages' sources (resolved, existing, deduplicated)."""
    out: list[str] = []
    for name in PACKAGES:
        try:
            found = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if found is None:
            continue
        locations = list(found.submodule_search_locations or [])
        if not locations and found.origin:
            locations = [os.path.dirname(found.origin)]
        for loc in locations:
            real = os.path.realpath(loc)
            if os.path.isdir(real) and real not in out:
                out.append(real)
    return out


def mount_plan() -> MountPlan:
    """Compute the read-only mounts that let ``sys.executable -m infernet_ref...`` run inside."""
    roots: list[str] = ["/usr"]
    for prefix in (sys.base_prefix, sys.prefix):
        real = os.path.realpath(prefix)
        if not _under(real, roots):
            roots.append(real)
    for path in package_dirs():
        if not _under(path, roots):
            roots.append(path)
    if os.path.exists(LD_CACHE):
        roots.append(LD_CACHE)
    links = tuple((link, target) for link, target in USR_LINKS.items() if os.path.islink(link))
    python = sys.executable
    if not _under(os.path.realpath(python), roots):
        python = os.path.realpath(python)
    return MountPlan(ro_paths=tuple(roots), links=links, python=python)


def worker_env(extra: tuple[tuple[str, str], ...], threads: int) -> dict[str, str]:
    """The whole environment of a worker: nothing inherited from the provider."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }
    env.update(dict(extra))
    return env


def python_argv(plan: MountPlan, module: str) -> list[str]:
    """``python -I -B -m module``: isolated mode ignores PYTHON* variables and the user site."""
    return [plan.python, "-I", "-B", "-m", module]


def model_source(model_dir: Path | None) -> str | None:
    """The resolved host folder to mount at ``/model`` (must exist and be a directory)."""
    if model_dir is None:
        return None
    real = os.path.realpath(model_dir)
    if not os.path.isdir(real):
        raise LocalProtocolError(f"model folder {model_dir} does not exist")
    return real
