"""Triton device helpers shared by the kernels.

``INTERPRETED`` is a mode flag every kernel takes: the launcher sets it when the kernel runs
under ``TRITON_INTERPRET=1``. Triton 3.9's interpreter converts float32 to bfloat16 by
truncating the mantissa (``interpreter.py``, ``cast_impl`` with no rounding mode), whereas
compiled kernels round to nearest even, and its ``tl.dot`` multiplies bfloat16 operands as their
raw 16-bit patterns. Under the interpreter the kernels therefore round explicitly and feed
``tl.dot`` float32 copies, so the CPU tests check the arithmetic a GPU performs; compiled kernels
use the native conversions and never contain these branches.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit  # type: ignore[untyped-decorator]
def round_to(x, dtype: tl.constexpr, INTERPRETED: tl.constexpr):  # type: ignore[no-untyped-def]
    """Round float32 ``x`` to ``dtype`` to nearest, ties to even (the compiled default)."""
    if INTERPRETED:
        if dtype == tl.bfloat16:
            bits = x.to(tl.uint32, bitcast=True)
            bits = bits + (((bits >> 16) & 1) + 0x7FFF)
            y = (bits >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
        else:
            y = x.to(dtype)
    else:
        y = x.to(dtype)
    return y
