"""Executor contract types (spec/node-worker.md §Executor; CONTRACTS.md "sandbox executor").

Theory of operation: a provider describes the worker it wants as a frozen :class:`WorkerSpec`
(model folder, layer range, tensor-parallel size, dtype, KV-block budget, resource limits) and
hands it to an :class:`Executor`; the executor starts the worker inside its sandbox and returns a
:class:`WorkerHandle` whose ``request`` sends one framed control message and returns the reply.
Every backend speaks the same control channel (``framing.py``) to the same worker program, so
the backends differ only in how the process is confined.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from infernet_ref.errors import InfernetError, LocalProtocolError, RemoteProtocolError

#: Job-protocol error code for "the sandbox refused or crashed" (spec/job.md §Errors).
SANDBOX_ERROR_CODE = 5004

#: Worker programs an executor may start (``python -m <module>``). The probe is the hostile
#: workload used by ``infernet sandbox check`` and the tests to prove the confinement.
WORKER_MODULES = frozenset({"infernet_ref.node.worker", "infernet_ref.node.sandbox.probe"})

#: Where the model folder appears inside every sandbox.
SANDBOX_MODEL_DIR = "/model"


class SandboxError(InfernetError):
    """Base class of the sandbox layer's errors."""


class SandboxUnavailable(SandboxError, LocalProtocolError):
    """The requested backend cannot run on this host (no daemon, no bwrap, not allowed)."""


class WorkerCrashed(SandboxError, RemoteProtocolError):
    """The worker process died or closed its channel (killed for memory, pids, or a bug)."""

    def __init__(self, message: str, *, exit_code: int | None = None, stderr: str = "") -> None:
        super().__init__(message, code=SANDBOX_ERROR_CODE)
        self.exit_code = exit_code
        self.stderr = stderr


class WorkerError(SandboxError, RemoteProtocolError):
    """The worker answered a request with a typed error reply (spec/node-worker.md §Errors)."""

    def __init__(self, error_code: str, message: str) -> None:
        super().__init__(f"worker error {error_code}: {message}", code=SANDBOX_ERROR_CODE)
        self.error_code = error_code
        self.detail = message


#: A worker device name (spec/node-worker.md §Worker ``--device``).
DEVICE = re.compile(r"cpu|cuda(:\d{1,2})?")


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    """What to run and how tightly to confine it (spec/node-worker.md §Executor).

    ``layer_end`` ``None`` means "to the last layer"; ``kv_blocks`` ``None`` lets the runtime size
    the KV cache from the memory limit. ``env`` is extra environment for the worker (names must be
    ``INFERNET_*``; the sandbox starts from an empty environment).
    """

    model_dir: Path | None = None
    layer_start: int = 0
    layer_end: int | None = None
    tp_size: int = 1
    dtype: str = "float32"
    kv_blocks: int | None = None
    memory_limit_bytes: int = 4 << 30
    cpus: float = 1.0
    pids_limit: int = 256
    scratch_bytes: int = 64 << 20
    env: tuple[tuple[str, str], ...] = ()
    module: str = "infernet_ref.node.worker"
    max_payload: int = 1 << 30
    start_timeout: float = 120.0
    extra_args: tuple[str, ...] = field(default=())
    device: str = "cpu"  # cpu, cuda or cuda:N: where the stage's weights and KV cache live

    def __post_init__(self) -> None:
        if self.module not in WORKER_MODULES:
            raise LocalProtocolError(f"module {self.module!r} is not a worker program")
        if self.layer_start < 0 or (
            self.layer_end is not None and self.layer_end <= self.layer_start
        ):
            raise LocalProtocolError(f"bad layer range [{self.layer_start}, {self.layer_end})")
        if self.tp_size < 1 or self.cpus <= 0 or self.pids_limit < 8:
            raise LocalProtocolError("tp_size >= 1, cpus > 0 and pids_limit >= 8 are required")
        if self.memory_limit_bytes < 16 << 20:
            raise LocalProtocolError("memory_limit_bytes must be at least 16 MiB")
        if not DEVICE.fullmatch(self.device):
            raise LocalProtocolError(f"device {self.device!r} is not cpu, cuda or cuda:N")
        for name, _ in self.env:
            if not name.startswith("INFERNET_"):
                raise LocalProtocolError(f"worker env {name!r} must start with INFERNET_")

    def worker_argv(self, model_dir: str | None) -> list[str]:
        """Arguments after ``python -m <module>`` (spec/node-worker.md §Worker)."""
        args: list[str] = []
        if model_dir is not None:
            args += ["--model-dir", model_dir]
        end = "" if self.layer_end is None else str(self.layer_end)
        args += ["--layers", f"{self.layer_start}:{end}", "--tp", str(self.tp_size)]
        args += ["--dtype", self.dtype, "--max-payload", str(self.max_payload)]
        if self.kv_blocks is not None:
            args += ["--kv-blocks", str(self.kv_blocks)]
        if self.device != "cpu":
            args += ["--device", self.device]
        return args + list(self.extra_args)


@runtime_checkable
class WorkerHandle(Protocol):
    """A running worker: one request at a time over its control channel."""

    @property
    def alive(self) -> bool: ...

    async def request(
        self, msg: dict[str, Any], payload: bytes = b""
    ) -> tuple[dict[str, Any], bytes]: ...

    async def close(self) -> None: ...


@runtime_checkable
class Executor(Protocol):
    """Starts workers inside one kind of sandbox."""

    name: str

    async def start(self, spec: WorkerSpec) -> WorkerHandle: ...
