"""Triton kernels for the inference runtime, each with a pure-PyTorch reference (spec/kernels.md).

Public ops (contracts fixed in the project's cross-layer contracts, detailed in spec/kernels.md):
:func:`rms_norm`, :func:`rotary_embedding`, :func:`silu_and_mul` and
:func:`paged_attention_decode`, each with a ``*_reference`` twin of the same signature. On CUDA
the runtime calls the kernels (when :func:`available` is true); on CPU it calls the references.
The tests run the kernels on CPU under ``TRITON_INTERPRET=1``. When Triton is not installed the
kernel names still exist and raise :class:`KernelUnavailableError`; the references always work.
"""

from __future__ import annotations

from ._common import (
    SUPPORTED_DTYPES,
    KernelInputError,
    KernelUnavailableError,
    available,
    triton_importable,
)
from .reference import (
    paged_attention_decode_reference,
    rms_norm_reference,
    rotary_embedding_reference,
    silu_and_mul_reference,
)
from .tolerances import TOLERANCES, tolerance

if triton_importable():
    from .paged_attention import paged_attention_decode
    from .rms_norm import rms_norm
    from .rotary import rotary_embedding
    from .silu_mul import silu_and_mul
else:  # pragma: no cover - exercised only on installs without the kernels extra
    from ._missing import paged_attention_decode, rms_norm, rotary_embedding, silu_and_mul

__all__ = [
    "SUPPORTED_DTYPES",
    "TOLERANCES",
    "KernelInputError",
    "KernelUnavailableError",
    "available",
    "paged_attention_decode",
    "paged_attention_decode_reference",
    "rms_norm",
    "rms_norm_reference",
    "rotary_embedding",
    "rotary_embedding_reference",
    "silu_and_mul",
    "silu_and_mul_reference",
    "tolerance",
]
