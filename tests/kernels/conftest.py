"""Run the Triton kernels on CPU through Triton's interpreter.

``triton.jit`` decides between a compiled and an interpreted kernel when the decorator runs, from
``TRITON_INTERPRET``, so the variable is set here, before any test module imports
``infernet_kernels``. If another test directory imported the kernels earlier in the same pytest
session, their modules are reloaded so the kernels are interpreted too.
"""

from __future__ import annotations

import importlib
import os
import sys

os.environ["TRITON_INTERPRET"] = "1"

KERNEL_MODULES = (
    "infernet_kernels._tl",
    "infernet_kernels.rms_norm",
    "infernet_kernels.rotary",
    "infernet_kernels.silu_mul",
    "infernet_kernels.paged_attention",
)

if any(name in sys.modules for name in KERNEL_MODULES):
    for name in KERNEL_MODULES:
        if name in sys.modules:
            importlib.reload(sys.modules[name])
    importlib.reload(sys.modules["infernet_kernels"])
