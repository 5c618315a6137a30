"""Kernel benchmark (spec/kernels.md §benchmarks): achieved bandwidth vs the device's peak.

Run on a CUDA machine: ``.venv/bin/python benchmarks/bench_kernels.py [--dtype bf16]
[--ops rms_norm,paged_attention_decode] [--peak-gbps 3350] [--json out.json]``.

For every kernel it first checks the output against the ``*_reference`` twin (tolerance table;
a mismatch makes the exit status 1), then times the Triton kernel and, in the same run, the
PyTorch reference (and for paged attention a vectorized gather + SDPA peer) with
``triton.testing.do_bench`` (median of CUDA-event timings, L2 flushed between runs). Bandwidth
counts the bytes each op must move at least once (inputs read, outputs written); the fraction is
of the peak DRAM bandwidth looked up from the device name (``PEAK_GBPS``) or ``--peak-gbps``.

Without CUDA it prints why and exits 0. ``--smoke`` instead runs every case at toy sizes on the
CPU through Triton's interpreter, to check the script end to end; its timings mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

# Datasheet DRAM bandwidth in GB/s; the first name fragment contained in the device name wins.
PEAK_GBPS: list[tuple[str, float]] = [
    ("H200", 4800.0),
    ("H100 NVL", 3900.0),
    ("H100 PCIe", 2000.0),
    ("H100", 3350.0),  # SXM5 80 GB HBM3
    ("H800", 3350.0),
    ("A100-SXM4-80GB", 2039.0),
    ("A100 80GB PCIe", 1935.0),
    ("A100", 1555.0),  # 40 GB SXM4 and PCIe
    ("L40S", 864.0),
    ("L4", 300.0),
    ("A10G", 600.0),
]

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


@dataclass
class Row:
    """One measured case: kernel and peer timings, bandwidth and correctness."""

    op: str
    case: str
    dtype: str
    bytes_moved: int
    kernel_ms: float
    kernel_gbps: float
    peak_fraction: float | None
    peers: dict[str, float]  # peer name -> ms
    max_abs_err: float
    ok: bool


@dataclass
class Case:
    """A kernel call, its reference, optional extra peers, and the bytes it must move."""

    op: str
    name: str
    kernel: Callable[[], Any]
    reference: Callable[[], Any]
    bytes_moved: int
    peers: dict[str, Callable[[], Any]]


def peak_gbps(name: str, override: float | None) -> float | None:
    """Peak DRAM GB/s of the device called ``name`` (None when unknown and not overridden)."""
    if override is not None:
        return override
    for fragment, gbps in PEAK_GBPS:
        if fragment in name:
            return gbps
    return None


def _nbytes(*tensors: Any) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def elementwise_cases(torch: Any, ik: Any, dtype: Any, device: str, smoke: bool) -> list[Case]:
    """RMSNorm, rotary and SiLU-and-mul at Llama-3-8B widths (toy widths under --smoke)."""
    cases = []
    rows, hidden = (6, 77) if smoke else (16384, 4096)
    x = torch.randn(rows, hidden, device=device, dtype=dtype)
    w = torch.randn(hidden, device=device, dtype=dtype)
    cases.append(
        Case(
            "rms_norm",
            f"{rows}x{hidden}",
            lambda: ik.rms_norm(x, w, 1e-5),
            lambda: ik.rms_norm_reference(x, w, 1e-5),
            _nbytes(x, w, x),
            {},
        )
    )
    tokens, heads, kv_heads, dim = (3, 4, 2, 80) if smoke else (8192, 32, 8, 128)
    q = torch.randn(tokens, heads, dim, device=device, dtype=dtype)
    k = torch.randn(tokens, kv_heads, dim, device=device, dtype=dtype)
    angles = torch.rand(tokens, dim // 2, device=device) * 100
    cos, sin = angles.cos(), angles.sin()
    cases.append(
        Case(
            "rotary_embedding",
            f"T{tokens}-H{heads}-Hkv{kv_heads}-D{dim}",
            lambda: ik.rotary_embedding(q, k, cos, sin),
            lambda: ik.rotary_embedding_reference(q, k, cos, sin),
            2 * _nbytes(q, k) + _nbytes(cos, sin),
            {},
        )
    )
    rows, inter = (5, 45) if smoke else (8192, 14336)
    gu = torch.randn(rows, 2 * inter, device=device, dtype=dtype)
    cases.append(
        Case(
            "silu_and_mul",
            f"{rows}x2*{inter}",
            lambda: ik.silu_and_mul(gu),
            lambda: ik.silu_and_mul_reference(gu),
            _nbytes(gu) * 3 // 2,
            {},
        )
    )
    return cases


def _paged(
    torch: Any, dtype: Any, device: str, *, seqs: int, ctx: int, heads: int, kv_heads: int
) -> dict[str, Any]:
    dim, block = 128, 16
    per_seq = -(-ctx // block)
    num_blocks = seqs * per_seq
    k_cache = torch.randn(num_blocks, block, kv_heads, dim, device=device, dtype=dtype)
    v_cache = torch.randn_like(k_cache)
    perm = torch.randperm(num_blocks, device=device).to(torch.int32)
    tables = perm.view(seqs, per_seq)
    lens = torch.full((seqs,), ctx, dtype=torch.int32, device=device)
    q = torch.randn(seqs, heads, dim, device=device, dtype=dtype)
    return {"q": q, "k": k_cache, "v": v_cache, "tables": tables, "lens": lens, "scale": dim**-0.5}


def _gather_sdpa(torch: Any, p: dict[str, Any]) -> Any:
    """Vectorized PyTorch peer: gather every sequence's K/V through the tables, then SDPA."""
    seqs, per_seq = p["tables"].shape
    block = p["k"].shape[1]
    idx = p["tables"].long()
    k = p["k"][idx].reshape(seqs, per_seq * block, *p["k"].shape[2:]).transpose(1, 2)
    v = p["v"][idx].reshape(seqs, per_seq * block, *p["v"].shape[2:]).transpose(1, 2)
    pos = torch.arange(per_seq * block, device=k.device)
    mask = (pos[None, :] < p["lens"][:, None].long())[:, None, None, :]  # (S, 1, 1, L)
    out = torch.nn.functional.scaled_dot_product_attention(
        p["q"].unsqueeze(2), k, v, attn_mask=mask, scale=p["scale"], enable_gqa=True
    )  # (S, H, 1, D)
    return out.squeeze(2)


def attention_cases(torch: Any, ik: Any, dtype: Any, device: str, smoke: bool) -> list[Case]:
    """Decode batches: many sequences (one program per KV head), few long ones (split mode)."""
    shapes = (
        [(3, 40, 8, 2)] if smoke else [(64, 2048, 32, 8), (4, 16384, 32, 8), (32, 1024, 32, 32)]
    )
    cases = []
    for seqs, ctx, heads, kv_heads in shapes:
        p = _paged(torch, dtype, device, seqs=seqs, ctx=ctx, heads=heads, kv_heads=kv_heads)
        args = (p["q"], p["k"], p["v"], p["tables"], p["lens"], p["scale"])
        kv_bytes = 2 * seqs * ctx * kv_heads * 128 * p["k"].element_size()
        cases.append(
            Case(
                "paged_attention_decode",
                f"S{seqs}-ctx{ctx}-H{heads}-Hkv{kv_heads}-D128",
                lambda args=args: ik.paged_attention_decode(*args),
                lambda args=args: ik.paged_attention_decode_reference(*args),
                kv_bytes + 2 * _nbytes(p["q"]) + _nbytes(p["tables"], p["lens"]),
                {"gather+sdpa": lambda p=p: _gather_sdpa(torch, p)},
            )
        )
    return cases


def _time_ms(fn: Callable[[], Any], smoke: bool) -> float:
    if smoke:
        samples = []
        for _ in range(3):
            start = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - start) * 1e3)
        return statistics.median(samples)
    import triton.testing

    return float(triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median"))


def measure(case: Case, torch: Any, ik: Any, peak: float | None, smoke: bool) -> Row:
    """Check the kernel against its reference, then time it and its peers."""
    out, ref = case.kernel(), case.reference()
    outs = out if isinstance(out, tuple) else (out,)
    refs = ref if isinstance(ref, tuple) else (ref,)
    atol, rtol = ik.tolerance(case.op, refs[0].dtype)
    ok = all(
        torch.allclose(o.float(), r.float(), atol=atol, rtol=rtol)
        for o, r in zip(outs, refs, strict=True)
    )
    err = max(float((o.float() - r.float()).abs().max()) for o, r in zip(outs, refs, strict=True))
    kernel_ms = _time_ms(case.kernel, smoke)
    peers = {"reference": _time_ms(case.reference, smoke)}
    peers.update({name: _time_ms(fn, smoke) for name, fn in case.peers.items()})
    gbps = case.bytes_moved / (kernel_ms * 1e-3) / 1e9
    return Row(
        case.op,
        case.name,
        str(refs[0].dtype).removeprefix("torch."),
        case.bytes_moved,
        kernel_ms,
        gbps,
        gbps / peak if peak else None,
        peers,
        err,
        ok,
    )


def _print(rows: list[Row], device: str, peak: float | None, smoke: bool) -> None:
    peak_text = f"{peak:.0f} GB/s" if peak else "unknown (pass --peak-gbps)"
    print(f"device: {device}; peak DRAM bandwidth: {peak_text}")
    if smoke:
        print("SMOKE RUN on CPU through the Triton interpreter: timings are meaningless")
    head = (
        f"{'op':<23} {'case':<28} {'dtype':<8} {'MB':>8} {'kernel ms':>10} {'GB/s':>8} {'%peak':>6}"
    )
    print(head + "  peers (ms, speed-up of the kernel)      max|err| ok")
    for r in rows:
        frac = f"{100 * r.peak_fraction:5.1f}%" if r.peak_fraction is not None else "     -"
        peers = ", ".join(f"{n} {ms:.4g} ({ms / r.kernel_ms:.2f}x)" for n, ms in r.peers.items())
        print(
            f"{r.op:<23} {r.case:<28} {r.dtype:<8} {r.bytes_moved / 1e6:8.1f} {r.kernel_ms:10.4f} "
            f"{r.kernel_gbps:8.1f} {frac:>6}  {peers:<40} {r.max_abs_err:.2e} {'ok' if r.ok else 'FAIL'}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    parser.add_argument("--ops", default="", help="comma-separated op names (default: all)")
    parser.add_argument("--peak-gbps", type=float, default=None, help="override the peak DRAM GB/s")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument(
        "--smoke", action="store_true", help="toy sizes on CPU via TRITON_INTERPRET=1"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        os.environ["TRITON_INTERPRET"] = "1"  # before infernet_kernels defines its kernels
    import torch

    if not args.smoke and not torch.cuda.is_available():
        print(
            "bench_kernels: no CUDA device here; the Triton kernels need a GPU, nothing to measure."
        )
        print("  (run with --smoke to exercise this script on CPU through the Triton interpreter)")
        return 0
    import infernet_kernels as ik

    device = "cpu" if args.smoke else "cuda"
    name = "CPU (Triton interpreter)" if args.smoke else torch.cuda.get_device_name(0)
    peak = None if args.smoke else peak_gbps(name, args.peak_gbps)
    dtype = getattr(torch, DTYPES[args.dtype])
    torch.manual_seed(0)
    cases = elementwise_cases(torch, ik, dtype, device, args.smoke)
    cases += attention_cases(torch, ik, dtype, device, args.smoke)
    wanted = {op for op in args.ops.split(",") if op}
    rows = [measure(c, torch, ik, peak, args.smoke) for c in cases if not wanted or c.op in wanted]
    _print(rows, name, peak, args.smoke)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(
                {"device": name, "peak_gbps": peak, "rows": [asdict(r) for r in rows]}, fh, indent=2
            )
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
