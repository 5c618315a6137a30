"""Runtime benchmark: decode/prefill tokens/s against transformers, TP=2 vs TP=1, load memory.

    .venv/bin/python benchmarks/bench_runtime.py [--new-tokens 128] [--prompt 32] [--threads 2]
    python benchmarks/bench_runtime.py --device cuda [--dtype bfloat16] [--json out.json]

Builds a random-weight 56M-parameter Llama (hidden 512, 8 layers, 8 heads, 4 KV heads,
intermediate 1408, vocab 32000, fp32), saves it as safetensors, then in the same run:
1. transformers ``generate`` (greedy) and our engine on the same prompt: prefill and decode
   tokens/s, the ratio, and whether the token ids are identical;
2. our engine with TP=2 (two gloo ranks, threads/2 each) against TP=1 (all threads);
3. peak RSS while loading, in fresh processes, against the weight bytes, for our loader and for
   transformers' ``from_pretrained``.
Numbers are noisy on a shared machine; each timing is the best of ``--repeat`` runs.

With ``--device cuda`` both models live on the GPU in ``--dtype`` (our runtime then calls the
Triton kernels) and only step 1 runs: TP=2 would need two GPUs, and host RSS says nothing about
GPU memory. Without a CUDA device ``--device cuda`` says so and exits 0. Under bf16/fp16 the
two implementations round differently, so identical greedy tokens are reported, not required.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIG = {
    "hidden_size": 512,
    "num_hidden_layers": 8,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "intermediate_size": 1408,
    "vocab_size": 32000,
    "max_position_embeddings": 2048,
}


def make_checkpoint(path: Path) -> int:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**CONFIG, bos_token_id=None, eos_token_id=None))
    model.save_pretrained(path)
    return sum(p.numel() for p in model.parameters())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def hf_run(model: object, prompt: list[int], n: int) -> tuple[float, float, list[int]]:
    """One transformers run: (prefill seconds, decode seconds per token, tokens)."""
    device = next(model.parameters()).device  # type: ignore[attr-defined]
    ids = torch.tensor([prompt], device=device)
    kw = {"attention_mask": torch.ones_like(ids), "do_sample": False, "pad_token_id": 0}
    with torch.inference_mode():
        _sync(device)
        t = time.perf_counter()
        model.generate(ids, max_new_tokens=1, min_new_tokens=1, **kw)  # type: ignore[attr-defined]
        _sync(device)
        pre = time.perf_counter() - t
        t = time.perf_counter()
        out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, **kw)  # type: ignore[attr-defined]
        _sync(device)
        total = time.perf_counter() - t
    return pre, (total - pre) / (n - 1), out[0, len(prompt) :].tolist()


def our_run(model: object, prompt: list[int], n: int) -> tuple[float, float, list[int]]:
    """One run of our engine: (prefill seconds, decode seconds per token, tokens)."""
    from infernet_ref.runtime.engine import Engine
    from infernet_ref.runtime.sampling import SamplingParams

    engine = Engine(model, num_blocks=-(-(len(prompt) + n) // 16) + 1, block_size=16)  # type: ignore[arg-type]
    out = engine.generate([prompt], SamplingParams(max_tokens=n))[0].output
    s = engine.stats
    return s.prefill_seconds, s.decode_seconds / s.decode_tokens, out


def bench_pair(
    path: Path,
    prompt: list[int],
    n: int,
    repeat: int,
    *,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> dict[str, object]:
    """Alternate transformers and ours (ABAB...) so that load changes hit both; best of each."""
    from transformers import AutoModelForCausalLM

    from infernet_ref.runtime.loader import load_model

    hf = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    ours = load_model(path, dtype=dtype, device=device)
    best = {"hf": [float("inf")] * 2, "ours": [float("inf")] * 2}
    tokens: dict[str, list[int]] = {}
    for _ in range(repeat):
        for name, fn, model in (("hf", hf_run, hf), ("ours", our_run, ours)):
            pre, dec, tokens[name] = fn(model, prompt, n)
            best[name] = [min(best[name][0], pre), min(best[name][1], dec)]
    return {
        "hf_prefill": len(prompt) / best["hf"][0],
        "hf_decode": 1 / best["hf"][1],
        "our_prefill": len(prompt) / best["ours"][0],
        "our_decode": 1 / best["ours"][1],
        "same": tokens["hf"] == tokens["ours"],
        "n": len(tokens["ours"]),
    }


def tp_rank(rank: int, world: int, path: str, job: tuple[list[int], int, int]) -> float:
    prompt, n, repeat = job
    from infernet_ref.runtime import tp
    from infernet_ref.runtime.engine import Engine
    from infernet_ref.runtime.sampling import SamplingParams

    model = tp.load_sharded(path)
    best = float("inf")
    for _ in range(repeat):
        engine = Engine(model, num_blocks=-(-(len(prompt) + n) // 16) + 1)
        engine.generate([prompt], SamplingParams(max_tokens=n))
        best = min(best, engine.stats.decode_seconds / engine.stats.decode_tokens)
    return 1 / best


LOAD_PROBE = """
import sys, json, psutil, torch
sys.path.insert(0, {root!r})
torch.set_num_threads(1)
proc = psutil.Process()
if {hf}:
    import transformers
    from transformers import AutoModelForCausalLM
else:
    from infernet_ref.runtime.loader import load_model
base = proc.memory_info().rss
if {hf}:
    m = AutoModelForCausalLM.from_pretrained({path!r}, dtype=torch.float32)
else:
    m = load_model({path!r})
# VmHWM belongs to this process image (ru_maxrss would include the forking parent's peak)
peak = [int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
wb = sum(p.numel() * p.element_size() for p in {{id(p): p for p in m.parameters()}}.values())
print(json.dumps(dict(base=base, peak=peak, weights=wb)))
"""


def load_memory(path: Path, hf: bool) -> dict[str, int]:
    code = LOAD_PROBE.format(root=str(ROOT), path=str(path), hf=hf)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _kernels_in_use() -> bool:
    from infernet_ref.runtime import ops

    return ops.triton_kernels() is not None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-tp", action="store_true")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    ap.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_runtime: --device cuda but no CUDA device here; nothing to measure.")
        return
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "llama56m"
        params = make_checkpoint(path)
        where = (
            f"{torch.cuda.get_device_name(0)}, triton kernels: {_kernels_in_use()}"
            if args.device == "cuda"
            else f"{args.threads} threads"
        )
        print(
            f"model: {params / 1e6:.1f}M params, {args.dtype}, {where}, "
            f"prompt {args.prompt}, {args.new_tokens} new tokens, torch {torch.__version__}"
        )
        prompt = [(7 * i + 3) % CONFIG["vocab_size"] for i in range(args.prompt)]
        r = bench_pair(path, prompt, args.new_tokens, args.repeat, device=args.device, dtype=dtype)
        hf_pre, hf_dec, our_pre, our_dec = (
            float(r["hf_prefill"]),
            float(r["hf_decode"]),
            float(r["our_prefill"]),
            float(r["our_decode"]),
        )
        print(
            f"prefill tok/s: transformers {hf_pre:8.1f}  ours {our_pre:8.1f}  "
            f"ratio {our_pre / hf_pre:.2f}x"
        )
        print(
            f"decode  tok/s: transformers {hf_dec:8.1f}  ours {our_dec:8.1f}  "
            f"ratio {our_dec / hf_dec:.2f}x"
        )
        print(f"greedy tokens identical: {r['same']} ({r['n']} tokens)")
        if args.json:
            figures = {"device": args.device, "dtype": args.dtype, "params": params, **r}
            Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
        if args.device == "cuda":
            return
        if not args.skip_tp:
            from infernet_ref.runtime.launch import run_ranks

            half = max(1, args.threads // 2)
            tp2 = run_ranks(
                tp_rank, 2, str(path), (prompt, args.new_tokens, args.repeat), threads=half
            )
            print(
                f"decode  tok/s: TP=1 ({args.threads} threads) {our_dec:8.1f}  "
                f"TP=2 ({half} thread(s) per rank) {tp2:8.1f}  ratio {tp2 / our_dec:.2f}x"
            )
        for name, hf in (("ours", False), ("transformers", True)):
            m = load_memory(path, hf)
            print(
                f"load peak RSS {name:>12}: {(m['peak'] - m['base']) / 2**20:7.1f} MiB over the "
                f"pre-load baseline = {(m['peak'] - m['base']) / m['weights']:.2f}x the "
                f"{m['weights'] / 2**20:.1f} MiB of weights (absolute peak {m['peak'] / 2**20:.0f} MiB)"
            )


if __name__ == "__main__":
    main()
