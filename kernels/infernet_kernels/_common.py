"""Shared launcher plumbing: typed errors, device checks and block-size helpers.

A kernel launch needs two things the caller may not have: Triton itself and a device that can run
it. CUDA tensors run compiled kernels; CPU tensors run only when the kernel was defined under
``TRITON_INTERPRET=1`` (Triton's NumPy interpreter, used by the CPU tests). Anything else raises
:class:`KernelUnavailableError` instead of silently falling back to the reference, so a test of a
kernel can never pass by testing the reference.
"""

from __future__ import annotations

import functools
import importlib.util
import os
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import torch

from infernet_ref.errors import LocalProtocolError

_P = ParamSpec("_P")
_R = TypeVar("_R")

#: Floating-point dtypes every kernel accepts (the tolerance table covers exactly these).
SUPPORTED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class KernelInputError(LocalProtocolError, ValueError):
    """The caller passed tensors that break a kernel's contract (shape, dtype, device, layout)."""


class KernelUnavailableError(LocalProtocolError, RuntimeError):
    """Triton or a device able to run the kernel is missing; use the ``*_reference`` twin."""


@functools.cache
def triton_importable() -> bool:
    """True when the ``triton`` package is installed (it is the ``kernels`` extra)."""
    return importlib.util.find_spec("triton") is not None


def interpreter_requested() -> bool:
    """True when ``TRITON_INTERPRET`` is set to a true value (Triton's own parsing rule)."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in {
        "1",
        "true",
        "on",
        "yes",
        "y",
    }


def available() -> bool:
    """True when the Triton kernels can run on a real accelerator: Triton importable, CUDA present.

    The runtime calls the kernels when this is true and its tensors live on CUDA, and the
    ``*_reference`` functions otherwise (DESIGN.md, inference runtime).
    """
    return triton_importable() and torch.cuda.is_available()


def is_interpreted(kernel: object) -> bool:
    """True when ``kernel`` was created by ``triton.jit`` under ``TRITON_INTERPRET=1``."""
    return type(kernel).__name__ == "InterpretedFunction"


def check_launchable(kernel: object, *tensors: torch.Tensor) -> None:
    """Raise unless ``kernel`` can run on the device holding ``tensors`` (all on one device)."""
    devices = {t.device for t in tensors}
    if len(devices) != 1:
        raise KernelInputError(
            f"all tensors must be on one device, got {sorted(map(str, devices))}"
        )
    device = devices.pop()
    if device.type == "cuda":
        return
    if device.type == "cpu" and is_interpreted(kernel):
        return
    raise KernelUnavailableError(
        f"Triton kernels need CUDA tensors (got {device}); CPU tensors run only under "
        "TRITON_INTERPRET=1 set before infernet_kernels is imported. Use the *_reference twin."
    )


def check_dtype(name: str, t: torch.Tensor) -> None:
    """Raise unless ``t`` has one of the floating dtypes the kernels support."""
    if t.dtype not in SUPPORTED_DTYPES:
        raise KernelInputError(f"{name} must be float32, float16 or bfloat16, got {t.dtype}")


def check_last_dim_contiguous(name: str, t: torch.Tensor) -> None:
    """Raise unless the innermost dimension of ``t`` is unit-strided (rows may be strided)."""
    if t.dim() > 0 and t.shape[-1] > 1 and t.stride(-1) != 1:
        raise KernelInputError(f"{name} must have a unit stride in its last dimension")


def next_power_of_2(n: int) -> int:
    """Smallest power of two >= ``n`` (>= 1); Triton block shapes must be powers of two."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def cdiv(a: int, b: int) -> int:
    """Ceiling of ``a / b`` for positive ``b``."""
    return -(-a // b)


def on_input_device(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run a launcher with its first tensor's CUDA device current: Triton launches on the
    current device, which need not be the tensors' (a rank that never called set_device)."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        first = args[0] if args else None
        if isinstance(first, torch.Tensor) and first.is_cuda:
            with torch.cuda.device(first.device):
                return fn(*args, **kwargs)
        return fn(*args, **kwargs)

    return wrapper
