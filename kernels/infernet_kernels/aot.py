"""Ahead-of-time compile check: every kernel variant compiled for a CUDA target, no GPU needed.

The CPU tests run the kernels through Triton's interpreter, which never sees the compiler's type
checks, layouts or register allocation. This module compiles each variant the launchers can
select (mode flags, block shapes, dtypes) to PTX and a cubin for a chosen architecture, with the
``ptxas`` Triton bundles, and reports registers, spills and shared memory, so a kernel that
would fail to compile or spill on a GPU is caught on any machine::

    python -m infernet_kernels.aot --arch 90 --arch 80 --dtype bf16 --only paged_attention

Exit status 1 when a variant fails to compile.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import triton
from triton import knobs
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from .paged_attention import _attention_kernel, _reduce_kernel, tile_plan
from .rms_norm import _rms_norm_kernel
from .rotary import _rotary_kernel
from .silu_mul import _silu_and_mul_kernel

_DTYPES = ("bf16", "fp16", "fp32")


@dataclass(frozen=True, slots=True)
class Variant:
    """One compilable configuration of a kernel: argument types, constexprs and launch options."""

    kernel: str
    label: str
    fn: Any
    signature: dict[str, str]
    constexprs: Mapping[str, object]
    num_warps: int
    fp_fusion: bool


@dataclass(frozen=True, slots=True)
class Report:
    """ptxas's resource summary for one compiled variant."""

    variant: Variant
    dtype: str
    registers: int
    spill_bytes: int
    shared_bytes: int


def _sig(names: str, dtype: str, ptr: str = "*T", **overrides: str) -> dict[str, str]:
    """Signature: names ending in _ptr get ``ptr`` with T substituted, others i32."""
    out = {}
    for name in names.split():
        out[name] = (ptr.replace("T", dtype)) if name.endswith("_ptr") else "i32"
    out.update({k: v.replace("T", dtype) for k, v in overrides.items()})
    return out


def variants(dtype: str) -> list[Variant]:
    """The configurations the launchers select for a Llama-sized model at ``dtype``."""

    out: list[Variant] = []
    rms = _sig("x_ptr w_ptr out_ptr x_row_stride out_row_stride n_cols", dtype, eps="fp32")
    for label, block, single, warps in (("4096", 4096, True, 8), ("8192x2pass", 8192, False, 8)):
        consts = {"BLOCK": block, "SINGLE_PASS": single, "INTERPRETED": False}
        out.append(Variant("rms_norm", label, _rms_norm_kernel, rms, consts, warps, False))
    rot = _sig(
        "q_ptr k_ptr cos_ptr sin_ptr q_out_ptr k_out_ptr q_tok_stride q_head_stride k_tok_stride "
        "k_head_stride cos_stride sin_stride n_q_heads n_k_heads half",
        dtype,
        cos_ptr="*fp32",
        sin_ptr="*fp32",
    )
    for half in (32, 64):
        consts = {"BLOCK_H": 16, "BLOCK_HALF": half, "INTERPRETED": False}
        out.append(Variant("rotary", f"half{half}", _rotary_kernel, rot, consts, 4, False))
    silu = _sig("x_ptr out_ptr x_row_stride n_inter", dtype)
    consts = {"BLOCK": 1024, "INTERPRETED": False}
    out.append(Variant("silu_and_mul", "1024", _silu_and_mul_kernel, silu, consts, 4, False))
    attn = _sig(
        "out_ptr part_m_ptr part_l_ptr part_acc_ptr q_ptr k_cache_ptr v_cache_ptr "
        "block_tables_ptr context_lens_ptr q_stride_s q_stride_h kv_stride_b kv_stride_t "
        "kv_stride_h bt_stride_s num_heads group head_dim block_size partition_size",
        dtype,
        qk_scale="fp32",
        part_m_ptr="*fp32",
        part_l_ptr="*fp32",
        part_acc_ptr="*fp32",
        block_tables_ptr="*i32",
        context_lens_ptr="*i32",
    )
    for label, group, head_dim in (
        ("mha-d128", 1, 128),
        ("gqa2-d80", 2, 80),
        ("gqa4-d128", 4, 128),
        ("gqa8-d64", 8, 64),
    ):
        plan = tile_plan(group, head_dim, element_size=4 if dtype == "fp32" else 2)
        for split in (False, True):
            consts = {
                "BLOCK_G": plan.block_g,
                "BLOCK_N": plan.block_n,
                "BLOCK_D": plan.block_d,
                "USE_DOT": plan.use_dot,
                "SPLIT": split,
                "INTERPRETED": False,
            }
            name = f"{label}{'-dot' if plan.use_dot else ''}{'-split' if split else ''}"
            out.append(
                Variant(
                    "paged_attention", name, _attention_kernel, attn, consts, plan.num_warps, True
                )
            )
    red = _sig(
        "out_ptr part_m_ptr part_l_ptr part_acc_ptr num_parts head_dim",
        dtype,
        part_m_ptr="*fp32",
        part_l_ptr="*fp32",
        part_acc_ptr="*fp32",
    )
    consts = {"BLOCK_P": 32, "BLOCK_D": 128, "INTERPRETED": False}
    out.append(Variant("paged_attention", "reduce", _reduce_kernel, red, consts, 4, True))
    return out


def _ptxas_resources(log: str) -> tuple[int, int]:
    """(registers, spill-store bytes) from the ``ptxas -v`` log Triton prints when asked."""
    regs = re.findall(r"Used (\d+) registers", log)
    spills = re.findall(r"(\d+) bytes spill stores", log)
    return (int(regs[-1]) if regs else -1), (int(spills[-1]) if spills else 0)


def compile_variant(variant: Variant, arch: int) -> tuple[int, int, int]:
    """Compile for ``sm_<arch>``; return (registers, spill bytes, shared-memory bytes)."""

    signature = dict(variant.signature)
    for name in variant.constexprs:
        signature[name] = "constexpr"
    src = ASTSource(fn=variant.fn, signature=signature, constexprs=dict(variant.constexprs))
    options = {"num_warps": variant.num_warps, "enable_fp_fusion": variant.fp_fusion}
    log = io.StringIO()
    knobs.nvidia.dump_ptxas_log = True  # Triton's own ptxas run prints its -v report
    try:
        with contextlib.redirect_stdout(log):
            compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
    finally:
        knobs.nvidia.dump_ptxas_log = False
    regs, spills = _ptxas_resources(log.getvalue())
    return regs, spills, int(compiled.metadata.shared)


def _row(arch: int, dtype: str, v: Variant, text: str) -> str:
    return f"{arch:>4} {dtype:>5} {v.kernel:<16} {v.label:<22} {text}"


def run(archs: list[int], dtypes: list[str], only: list[str], fail_on_spill: bool) -> int:
    """Compile the selected variants, print one table row each; 1 if any failed (or spilled)."""
    # A private cache: every variant really compiles, so ptxas reports its resources.
    os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="infernet-aot-")
    failures = 0
    print(
        f"{'arch':>4} {'dtype':>5} {'kernel':<16} {'variant':<22} {'regs':>4} {'spill':>5} {'smem':>6}"
    )
    for arch in archs:
        for dtype in dtypes:
            for v in variants(dtype):
                key = f"{dtype}:{v.kernel}:{v.label}"
                if only and not any(pattern in key for pattern in only):
                    continue
                try:
                    regs, spills, smem = compile_variant(v, arch)
                except Exception as exc:  # report every failing variant, then fail
                    failures += 1
                    print(_row(arch, dtype, v, f"FAILED: {exc!r}"[:400]))
                    continue
                print(_row(arch, dtype, v, f"{regs:>4} {spills:>5} {smem:>6}"))
                failures += int(fail_on_spill and spills > 0)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    """Command line: ``python -m infernet_kernels.aot [--arch N]... [--dtype D]... [--only P]...``."""
    parser = argparse.ArgumentParser(prog="python -m infernet_kernels.aot", description=__doc__)
    parser.add_argument("--arch", type=int, action="append", help="SM version, e.g. 90 or 80")
    parser.add_argument("--dtype", action="append", choices=_DTYPES)
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="compile only variants whose 'dtype:kernel:label' contains this (repeatable)",
    )
    parser.add_argument(
        "--fail-on-spill", action="store_true", help="exit 1 when a variant spills registers"
    )
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET", "0") not in {"", "0"}:
        print("unset TRITON_INTERPRET: the AOT check compiles the real kernels", file=sys.stderr)
        return 2
    return run(args.arch or [90], args.dtype or list(_DTYPES), args.only, args.fail_on_spill)


if __name__ == "__main__":
    sys.exit(main())
