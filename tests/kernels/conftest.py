"""Run the Triton kernels on CPU through Triton's interpreter.

``triton.jit`` decides between a compiled and an interpreted function when the decorator runs,
from ``TRITON_INTERPRET`` — for our kernels and for ``triton.language``'s own jit helpers
(``tl.sum``, ``tl.max``, ...), which are decorated when triton is first imported. The variable
is therefore set here, before any test module of this directory imports ``infernet_kernels``.
If triton was already imported in compiled mode (by a test module collected earlier that
imports, say, ``transformers``' modeling code at module level), the kernels could not run on
CPU, and the collection fails with an explanation instead of failing every test obscurely.
"""

from __future__ import annotations

import os
import sys

os.environ["TRITON_INTERPRET"] = "1"

if "triton" in sys.modules:
    from triton.language import standard

    if type(standard.sum).__name__ != "InterpretedFunction":
        raise RuntimeError(
            "tests/kernels: triton was imported before TRITON_INTERPRET=1 was set, so its jit "
            "functions are compiled-mode and cannot run on CPU tensors. Set TRITON_INTERPRET=1 "
            "in the environment (or at the top of tests/conftest.py), or run tests/kernels first."
        )
