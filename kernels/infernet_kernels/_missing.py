"""Stand-ins for the kernels when Triton is not installed: same signatures, a clear error."""

from __future__ import annotations

from typing import NoReturn

import torch

from ._common import KernelUnavailableError


def _missing(op: str) -> NoReturn:
    raise KernelUnavailableError(
        f"{op} needs Triton (install the 'kernels' extra); use {op}_reference on this machine"
    )


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float, *, block_size: int | None = None
) -> torch.Tensor:
    """Unavailable without Triton; see :func:`infernet_kernels.reference.rms_norm_reference`."""
    _missing("rms_norm")


def rotary_embedding(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unavailable without Triton; see :func:`infernet_kernels.reference.rotary_embedding_reference`."""
    _missing("rotary_embedding")


def silu_and_mul(x: torch.Tensor, *, block_size: int | None = None) -> torch.Tensor:
    """Unavailable without Triton; see :func:`infernet_kernels.reference.silu_and_mul_reference`."""
    _missing("silu_and_mul")


def paged_attention_decode(  # noqa: PLR0917 (positional signature fixed by the contract)
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    scale: float,
    *,
    partition_size: int | None = None,
    use_dot: bool | None = None,
    check_bounds: bool = False,
) -> torch.Tensor:
    """Unavailable without Triton; see :func:`infernet_kernels.reference.paged_attention_decode_reference`."""
    _missing("paged_attention_decode")
