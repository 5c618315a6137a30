"""The GPU-facing tools work without a GPU: the AOT compile check and the benchmark script."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kernels_testlib import DEVICE

ROOT = Path(__file__).resolve().parents[2]

# Every kernel, both attention product modes, the split mode, the reduce kernel and the fp32
# tensor-core path ("ieee" input precision): compiled for sm_90 with the bundled ptxas.
AOT_SELECTION = (
    "bf16:rms_norm:",
    "bf16:rotary:half64",
    "bf16:silu_and_mul:",
    "bf16:paged_attention:mha-d128",
    "bf16:paged_attention:gqa4-d128-dot",
    "bf16:paged_attention:reduce",
    "fp32:paged_attention:gqa4-d128-dot-split",
)


@pytest.mark.slow
def test_every_kernel_compiles_for_sm90_without_spills() -> None:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    cmd = [sys.executable, "-m", "infernet_kernels.aot", "--arch", "90", "--fail-on-spill"]
    cmd += ["--dtype", "bf16", "--dtype", "fp32"]
    for pattern in AOT_SELECTION:
        cmd += ["--only", pattern]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()[1:] if line.strip()]
    compiled = {(r[1], r[2], r[3]) for r in rows}
    assert len(compiled) == 10, proc.stdout
    assert all(int(r[4]) > 0 for r in rows), proc.stdout  # ptxas reported registers


def _bench_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "bench_kernels", ROOT / "benchmarks" / "bench_kernels.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_kernels"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(
    DEVICE != "cpu",
    reason="the smoke run needs interpreted kernels; GPU mode runs the real benchmark",
)
def test_benchmark_smoke_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = _bench_module()
    out = tmp_path / "rows.json"
    assert bench.main(["--smoke", "--dtype", "fp16", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "SMOKE RUN" in text
    rows = [line for line in text.splitlines() if line.startswith(("rms", "rot", "silu", "paged"))]
    assert len(rows) == 4
    assert all(row.endswith(" ok") for row in rows), text
    assert '"op": "paged_attention_decode"' in out.read_text()


def test_benchmark_peak_table() -> None:
    bench = _bench_module()
    assert bench.peak_gbps("NVIDIA H100 80GB HBM3", None) == 3350.0
    assert bench.peak_gbps("NVIDIA H100 PCIe", None) == 2000.0
    assert bench.peak_gbps("NVIDIA H200", None) == 4800.0
    assert bench.peak_gbps("NVIDIA A100-SXM4-80GB", None) == 2039.0
    assert bench.peak_gbps("NVIDIA A100-SXM4-40GB", None) == 1555.0
    assert bench.peak_gbps("Some Future GPU", None) is None
    assert bench.peak_gbps("NVIDIA H100 80GB HBM3", 1234.0) == 1234.0
