"""Fixtures for the sandbox tests: one executor per backend, skipped with a visible reason.

(A plain module, not ``conftest.py``: tests/node/conftest.py is imported by name elsewhere.)

Docker cases need a reachable daemon (``scripts/setup.d/50-docker.sh`` starts one); bubblewrap
cases need ``bwrap`` able to create namespaces. Each fixture builds its executor once per test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from infernet_ref.node.sandbox import bubblewrap, docker
from infernet_ref.node.sandbox.spec import Executor


def make_executor(name: str) -> Executor:
    if name == "docker":
        if not docker.daemon_reachable():
            pytest.skip("docker: no Docker daemon reachable (run scripts/setup.d/50-docker.sh)")
        return docker.DockerExecutor()
    if not bubblewrap.available():
        pytest.skip("bubblewrap: bwrap missing or cannot create namespaces on this host")
    return bubblewrap.BubblewrapExecutor()


@pytest.fixture(
    params=[pytest.param("bubblewrap"), pytest.param("docker", marks=pytest.mark.docker)]
)
def executor(request: pytest.FixtureRequest) -> Executor:
    return make_executor(request.param)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A fake model folder next to a host secret the sandbox must not see."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "secret.txt").write_text("host secret")
    folder.chmod(0o755)
    tmp_path.chmod(0o755)
    return folder
