"""Tolerance table: how far a Triton kernel may be from its reference (spec/kernels.md §tolerances).

``TOLERANCES[(op, dtype)] = (atol, rtol)`` for ``torch.testing.assert_close(kernel, reference)``
after both are cast to float32. The kernels replicate the references' rounding order, so the
residual comes from the order of float32 reductions (RMSNorm's sum of squares, attention's online
softmax), the hardware's ``exp``/``rsqrt``/``sigmoid`` versus PyTorch's, and one rounding of the
output: about one unit in the last place of the dtype. The bf16 and fp16 rows allow two ulps
relative (bf16 ulp = 2^-8, fp16 ulp = 2^-11 near 1) plus a small absolute floor for values near
zero; attention in bf16/fp16 also rounds the probabilities to the cache dtype before ``p @ v`` on
the tensor-core path, hence its looser row.
"""

from __future__ import annotations

import torch

OPS = ("rms_norm", "rotary_embedding", "silu_and_mul", "paged_attention_decode")

_ELEMENTWISE = {
    torch.float32: (1e-5, 1.3e-6),
    torch.float16: (1e-3, 1e-3),
    torch.bfloat16: (8e-3, 8e-3),
}
_ATTENTION = {
    torch.float32: (2e-5, 1e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (1.6e-2, 1.6e-2),
}

TOLERANCES: dict[tuple[str, torch.dtype], tuple[float, float]] = {
    **{("rms_norm", dt): tol for dt, tol in _ELEMENTWISE.items()},
    **{("rotary_embedding", dt): tol for dt, tol in _ELEMENTWISE.items()},
    **{("silu_and_mul", dt): tol for dt, tol in _ELEMENTWISE.items()},
    **{("paged_attention_decode", dt): tol for dt, tol in _ATTENTION.items()},
}


def tolerance(op: str, dtype: torch.dtype) -> tuple[float, float]:
    """(atol, rtol) for ``op`` at ``dtype``; KeyError names the op and dtype when not tabled."""
    try:
        return TOLERANCES[(op, dtype)]
    except KeyError:
        raise KeyError(f"no tolerance for {op} at {dtype}") from None
