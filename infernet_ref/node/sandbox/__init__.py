"""Sandboxed execution of model workers (spec/node-worker.md; CONTRACTS.md "sandbox executor").

A provider never runs model code in its own process: it asks an :class:`Executor` for a worker
described by a :class:`WorkerSpec` and talks to it through a :class:`WorkerHandle` (framed
requests over the worker's stdin/stdout). Backends: :class:`DockerExecutor` (locally built
image, no network, resource limits, read-only everything), :class:`BubblewrapExecutor`
(namespaces, read-only binds, cgroup/rlimit limits) and :class:`InProcessExecutor` (unconfined,
only with ``allow_in_process: true``). :func:`select_executor` picks one from the node config.
"""

from infernet_ref.node.sandbox.bubblewrap import BubblewrapExecutor
from infernet_ref.node.sandbox.docker import DockerExecutor
from infernet_ref.node.sandbox.framing import Frame, FrameDecoder, FramingError, encode_frame
from infernet_ref.node.sandbox.handle import ProcessWorkerHandle
from infernet_ref.node.sandbox.inprocess import InProcessExecutor, InProcessHandle
from infernet_ref.node.sandbox.select import select_executor
from infernet_ref.node.sandbox.spec import (
    SANDBOX_ERROR_CODE,
    Executor,
    SandboxError,
    SandboxUnavailable,
    WorkerCrashed,
    WorkerError,
    WorkerHandle,
    WorkerSpec,
)

__all__ = [
    "SANDBOX_ERROR_CODE",
    "BubblewrapExecutor",
    "DockerExecutor",
    "Executor",
    "Frame",
    "FrameDecoder",
    "FramingError",
    "InProcessExecutor",
    "InProcessHandle",
    "ProcessWorkerHandle",
    "SandboxError",
    "SandboxUnavailable",
    "WorkerCrashed",
    "WorkerError",
    "WorkerHandle",
    "WorkerSpec",
    "encode_frame",
    "select_executor",
]
