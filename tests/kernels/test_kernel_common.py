"""Launcher plumbing: the kernels really are interpreted here (compiled in the opt-in GPU mode),
and misuse raises typed errors."""

from __future__ import annotations

import importlib

import infernet_kernels
import pytest
import torch
from infernet_kernels import KernelUnavailableError, tolerance
from infernet_kernels._common import check_launchable, is_interpreted, next_power_of_2
from infernet_kernels.tolerances import OPS
from kernels_testlib import DEVICE

from infernet_ref.errors import InfernetError, LocalProtocolError

KERNELS = {
    "infernet_kernels.rms_norm": ["_rms_norm_kernel"],
    "infernet_kernels.rotary": ["_rotary_kernel", "_rotate_heads"],
    "infernet_kernels.silu_mul": ["_silu_and_mul_kernel"],
    "infernet_kernels.paged_attention": ["_attention_kernel", "_reduce_kernel"],
}


@pytest.mark.skipif(DEVICE != "cpu", reason="the opt-in GPU mode compiles the kernels")
@pytest.mark.parametrize("module", list(KERNELS))
def test_kernels_run_under_the_interpreter(module: str) -> None:
    mod = importlib.import_module(module)
    for name in KERNELS[module]:
        assert is_interpreted(getattr(mod, name)), f"{module}.{name} is compiled, not interpreted"


@pytest.mark.skipif(DEVICE != "cuda", reason="opt-in GPU mode only (INFERNET_TEST_DEVICE=cuda)")
@pytest.mark.parametrize("module", list(KERNELS))
def test_kernels_are_compiled_in_gpu_mode(module: str) -> None:
    mod = importlib.import_module(module)
    for name in KERNELS[module]:
        assert not is_interpreted(getattr(mod, name)), f"{module}.{name} is interpreted"
    assert infernet_kernels.available()


def test_cpu_tensors_need_the_interpreter() -> None:
    with pytest.raises(KernelUnavailableError, match="TRITON_INTERPRET"):
        check_launchable(object(), torch.zeros(1))


def test_errors_are_local_protocol_errors() -> None:
    assert issubclass(infernet_kernels.KernelInputError, LocalProtocolError)
    assert issubclass(KernelUnavailableError, InfernetError)


def test_available_requires_cuda() -> None:
    assert infernet_kernels.available() == torch.cuda.is_available()


def test_tolerance_table_covers_every_op_and_dtype() -> None:
    for op in OPS:
        for dtype in infernet_kernels.SUPPORTED_DTYPES:
            atol, rtol = tolerance(op, dtype)
            assert 0 < atol < 0.05
            assert 0 < rtol < 0.05
    with pytest.raises(KeyError, match="float64"):
        tolerance("rms_norm", torch.float64)


def test_next_power_of_2() -> None:
    assert [next_power_of_2(n) for n in (0, 1, 2, 3, 80, 128, 129)] == [1, 1, 2, 4, 128, 128, 256]


def test_conftest_explains_a_triton_imported_too_early() -> None:
    """If an earlier test module imported triton in compiled mode, the collection of this
    directory fails with an explanation (the kernels could not run on CPU)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    conftest = Path(__file__).with_name("conftest.py")
    script = f"import runpy, triton.language; runpy.run_path({str(conftest)!r})"
    env = {
        k: v for k, v in os.environ.items() if k not in {"TRITON_INTERPRET", "INFERNET_TEST_DEVICE"}
    }
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode != 0
    assert "triton was imported before TRITON_INTERPRET=1 was set" in proc.stderr
