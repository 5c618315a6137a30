"""Run the Triton kernels on CPU through Triton's interpreter (default), or compiled on a GPU.

``triton.jit`` decides between a compiled and an interpreted function when the decorator runs,
from ``TRITON_INTERPRET`` — for our kernels and for ``triton.language``'s own jit helpers
(``tl.sum``, ``tl.max``, ...), which are decorated when triton is first imported. The variable
is therefore set here, before any test module of this directory imports ``infernet_kernels``.
If triton was already imported in compiled mode (by a test module collected earlier that
imports, say, ``transformers``' modeling code at module level), the kernels could not run on
CPU, and the collection fails with an explanation instead of failing every test obscurely.

Opt-in GPU mode: ``INFERNET_TEST_DEVICE=cuda`` (scripts/gpu_check.sh sets it) leaves the
kernels compiled and runs every kernel call of these tests on CUDA tensors (see
``kernels_testlib.run_on_device``). Without a CUDA device that mode skips every test, saying why.
"""

from __future__ import annotations

import os
import sys

import pytest

CUDA_MODE = os.environ.get("INFERNET_TEST_DEVICE", "").strip().lower() == "cuda"
CUDA_OK = False

if CUDA_MODE:
    # tests/conftest.py sets TRITON_INTERPRET=1 on machines without /dev/nvidiactl; the GPU
    # mode needs compiled kernels, so the variable goes before triton is imported.
    os.environ.pop("TRITON_INTERPRET", None)
    import torch

    CUDA_OK = torch.cuda.is_available()
    if CUDA_OK:
        if "triton" in sys.modules:
            from triton.language import standard

            if type(standard.sum).__name__ == "InterpretedFunction":
                raise RuntimeError(
                    "tests/kernels: INFERNET_TEST_DEVICE=cuda, but triton was imported under "
                    "TRITON_INTERPRET=1; unset it and run tests/kernels in their own pytest run."
                )
        import infernet_kernels
        from kernels_testlib import run_on_device

        for _name in ("rms_norm", "rotary_embedding", "silu_and_mul", "paged_attention_decode"):
            setattr(infernet_kernels, _name, run_on_device(getattr(infernet_kernels, _name)))
else:
    os.environ["TRITON_INTERPRET"] = "1"

    if "triton" in sys.modules:
        from triton.language import standard

        if type(standard.sum).__name__ != "InterpretedFunction":
            raise RuntimeError(
                "tests/kernels: triton was imported before TRITON_INTERPRET=1 was set, so its jit "
                "functions are compiled-mode and cannot run on CPU tensors. Set TRITON_INTERPRET=1 "
                "in the environment (or at the top of tests/conftest.py), or run tests/kernels first."
            )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if CUDA_MODE and not CUDA_OK:
        skip = pytest.mark.skip(
            reason="INFERNET_TEST_DEVICE=cuda but torch.cuda.is_available() is False: no GPU here"
        )
        for item in items:
            if item.path.is_relative_to(os.path.dirname(__file__)):
                item.add_marker(skip)
