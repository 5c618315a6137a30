"""The runtime on the test device (CPU by default, the GPU on opt-in) against transformers.

With ``INFERNET_TEST_DEVICE=cuda`` (scripts/gpu_check.sh sets it) these checks run on the GPU,
where the runtime dispatches RMSNorm, rotary, SiLU-and-mul and paged-attention decode to the
compiled Triton kernels; otherwise they run on CPU through the PyTorch paths, which keeps the
tests themselves checked in CI on machines without a GPU. The oracle is always
Hugging Face ``transformers``: fp32 runs must give the token ids of its CPU greedy ``generate``
and logits within a small tolerance of its CPU forward (cuBLAS and the kernels reduce in another
order than MKL, hence a looser bound than the CPU-only oracle tests); bf16/fp16 runs are compared
with transformers in the same dtype on the same device. Each GPU test also checks that the
kernels really ran (calls counted), so a silent fallback to the PyTorch paths fails.
"""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

from infernet_ref.runtime import ops
from infernet_ref.runtime.engine import Engine, make_batch, profile_kv_budget
from infernet_ref.runtime.kv_cache import PagedKVCache
from infernet_ref.runtime.loader import load_model
from infernet_ref.runtime.model import Transformer
from infernet_ref.runtime.sampling import SamplingParams

from .conftest import FAMILIES, TEST_DEVICE, hf_greedy, save_hf

DEVICE = "cuda" if TEST_DEVICE == "cuda" else "cpu"
KERNEL_OPS = ("rms_norm", "rotary_embedding", "silu_and_mul", "paged_attention_decode")
PROMPTS = [[1, 2, 3, 4, 5], [7, 8, 9], [11] * 13, [42]]
FP32_TOL = {"atol": 1e-4, "rtol": 1e-4}

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(
        DEVICE == "cuda" and not torch.cuda.is_available(),
        reason="INFERNET_TEST_DEVICE=cuda but torch.cuda.is_available() is False: no GPU here",
    ),
]


@pytest.fixture
def kernel_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts the runtime's calls of each Triton kernel (none on the CPU paths)."""
    calls: Counter[str] = Counter()
    mod = ops.triton_kernels()
    if mod is None:
        return calls
    for name in KERNEL_OPS:
        fn = getattr(mod, name)

        def counted(*args: Any, _fn: Any = fn, _name: str = name, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _fn(*args, **kwargs)

        monkeypatch.setattr(mod, name, counted)
    return calls


def assert_kernels_ran(calls: Counter[str], names: tuple[str, ...] = KERNEL_OPS) -> None:
    if DEVICE == "cuda":
        missing = [n for n in names if calls[n] == 0]
        assert not missing, f"kernels never called on CUDA: {missing} (calls: {dict(calls)})"
    else:
        assert not calls, f"Triton kernels called on CPU: {dict(calls)}"


def prefill_logits(model: Transformer, ids: list[list[int]], block_size: int = 4) -> torch.Tensor:
    """All-position logits (S, T, V) on CPU of equal-length prompts through the paged prefill."""
    device = next(model.parameters()).device
    s, t = len(ids), len(ids[0])
    per_seq = -(-t // block_size)
    cache = PagedKVCache.for_model(model, s * per_seq, block_size)
    tables = [list(range(i * per_seq, (i + 1) * per_seq)) for i in range(s)]
    slots = [
        tables[i][j // block_size] * block_size + j % block_size for i in range(s) for j in range(t)
    ]
    batch = make_batch([list(range(t))] * s, slots, tables, [t] * s, device)
    with torch.inference_mode():
        out = model(torch.tensor(ids, device=device), batch, cache.layers, all_logits=True)
    return out.float().cpu()


def decode_logits(engine: Engine, prompts: list[list[int]], new_tokens: int) -> tuple[Any, Any]:
    """Run greedy generation; return the completions and the logits of every decode step."""
    seen: list[torch.Tensor] = []
    original = engine._sample

    def spy(logits: torch.Tensor, reqs: Any) -> list[int]:
        seen.append(logits.float().cpu())
        return original(logits, reqs)

    engine._sample = spy  # type: ignore[method-assign]
    outs = engine.generate(prompts, SamplingParams(max_tokens=new_tokens))
    return outs, seen[len(prompts) :]  # the first len(prompts) calls are the prefills


def hf_last_logits(hf: Any, ctx: list[int]) -> torch.Tensor:
    device = next(hf.parameters()).device
    with torch.inference_mode():
        return hf(torch.tensor([ctx], device=device)).logits[0, -1].float().cpu()


def test_runtime_selects_the_compiled_kernels() -> None:
    from infernet_kernels._common import is_interpreted

    mod = ops.triton_kernels()
    if DEVICE == "cpu":  # CPU tensors take the PyTorch paths even where the kernels exist
        assert ops._cuda_kernels(torch.zeros(1)) is None
        return
    assert mod is not None, "infernet_kernels is not available on this CUDA machine"
    import importlib

    # by module path: the package re-exports functions of the same names as these modules
    pa = importlib.import_module("infernet_kernels.paged_attention")
    rn = importlib.import_module("infernet_kernels.rms_norm")

    assert not is_interpreted(pa._attention_kernel)
    assert not is_interpreted(rn._rms_norm_kernel)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_fp32_greedy_tokens_identical_to_transformers(
    family: str, checkpoints: dict[str, tuple[Path, Any]], kernel_calls: Counter[str]
) -> None:
    path, hf = checkpoints[family]
    engine = Engine(load_model(path, device=DEVICE), num_blocks=64, block_size=4, max_num_seqs=3)
    ours = [c.output for c in engine.generate(PROMPTS, SamplingParams(max_tokens=32))]
    assert ours == hf_greedy(hf, PROMPTS, 32)
    assert engine.blocks.num_free_blocks == 64
    assert_kernels_ran(kernel_calls)


@pytest.mark.parametrize("family", ["llama-gqa3", "mistral-mqa", "qwen2-bias"])
def test_fp32_prefill_and_decode_logits_match_transformers(
    family: str, checkpoints: dict[str, tuple[Path, Any]], kernel_calls: Counter[str]
) -> None:
    path, hf = checkpoints[family]
    model = load_model(path, device=DEVICE)
    ids = [[3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8]]
    with torch.inference_mode():
        ref = hf(torch.tensor(ids)).logits.float()
    torch.testing.assert_close(prefill_logits(model, ids), ref, **FP32_TOL)
    prompts = [[5, 6, 7, 8, 9, 10], [3, 2]]
    outs, steps = decode_logits(Engine(model, num_blocks=32, block_size=4), prompts, 6)
    assert len(steps) == 5
    for step, logits in enumerate(steps, start=1):  # batched decode of both sequences
        for row, (prompt, out) in enumerate(zip(prompts, outs, strict=True)):
            ref_row = hf_last_logits(hf, prompt + out.output[:step])
            torch.testing.assert_close(logits[row], ref_row, **FP32_TOL)
    assert_kernels_ran(kernel_calls)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("family", ["llama-gqa3", "qwen2-bias"])
def test_half_precision_tracks_transformers_in_the_same_dtype(
    family: str,
    dtype: torch.dtype,
    checkpoints: dict[str, tuple[Path, Any]],
    kernel_calls: Counter[str],
) -> None:
    """Same criterion as the CPU half-precision oracle test, prefill and every decode step."""
    path, hf32 = checkpoints[family]
    hf = copy.deepcopy(hf32).to(device=DEVICE, dtype=dtype)
    model = load_model(path, dtype=dtype, device=DEVICE)
    assert model.model.layers["0"].self_attn.qkv_weight.dtype == dtype
    ids = [[3, 1, 4, 1, 5, 9, 2, 6]]
    with torch.inference_mode():
        ref = hf(torch.tensor(ids, device=DEVICE)).logits.float().cpu()
    ours = prefill_logits(model, ids)
    assert (ours - ref).abs().max() < 0.05 * ref.abs().max()
    agree = [(ours.argmax(-1) == ref.argmax(-1)).float().mean()]
    prompts = [[5, 6, 7, 8, 9, 10], [3, 2, 9]]
    outs, steps = decode_logits(Engine(model, num_blocks=32, block_size=4), prompts, 8)
    for step, logits in enumerate(steps, start=1):
        for row, (prompt, out) in enumerate(zip(prompts, outs, strict=True)):
            ref_row = hf_last_logits(hf, prompt + out.output[:step])
            assert (logits[row] - ref_row).abs().max() < 0.05 * ref_row.abs().max()
            agree.append((logits[row].argmax() == ref_row.argmax()).float())
    assert float(torch.stack(agree).mean()) >= 0.75
    assert_kernels_ran(kernel_calls)


def test_continuous_batching_with_preemption_matches_transformers(
    checkpoints: dict[str, tuple[Path, Any]], kernel_calls: Counter[str]
) -> None:
    path, hf = checkpoints["mistral-mqa"]
    prompts = [[i + 1] * (3 + 2 * i) for i in range(7)]
    engine = Engine(load_model(path, device=DEVICE), num_blocks=14, block_size=4, max_num_seqs=3)
    out = engine.generate(prompts, SamplingParams(max_tokens=16))
    assert [c.output for c in out] == hf_greedy(hf, prompts, 16)
    assert engine.stats.preemptions > 0
    assert engine.blocks.num_free_blocks == 14
    assert_kernels_ran(kernel_calls)


def test_long_context_decode_split_and_tensor_core_attention(
    tmp_path: Path, kernel_calls: Counter[str]
) -> None:
    """Contexts over 512 tokens (the kernel's split / flash-decoding mode on a GPU) and 4 query
    heads per KV head with head_dim 32 (its tl.dot mode): logits of every decode step and the
    greedy tokens against transformers on CPU."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=211,
        hidden_size=256,
        num_attention_heads=8,
        num_key_value_heads=2,
        intermediate_size=344,
        num_hidden_layers=2,
        max_position_embeddings=1024,
        rms_norm_eps=1e-5,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    torch.manual_seed(5)
    hf = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in hf.named_parameters():
            if "norm" in name:
                p.uniform_(0.8, 1.2)
            else:
                p.normal_(0.0, 0.06 if p.dim() > 1 else 0.05)
    path = save_hf(hf, tmp_path / "long")
    prompts = [[(7 * i + 3) % 211 for i in range(600)], [(11 * i + 1) % 211 for i in range(530)]]
    engine = Engine(load_model(path, device=DEVICE), num_blocks=80, block_size=16)
    outs, steps = decode_logits(engine, prompts, 8)
    assert [c.output for c in outs] == hf_greedy(hf, prompts, 8)
    for step, logits in enumerate(steps, start=1):
        for row, (prompt, out) in enumerate(zip(prompts, outs, strict=True)):
            ref_row = hf_last_logits(hf, prompt + out.output[:step])
            torch.testing.assert_close(logits[row], ref_row, **FP32_TOL)
    assert_kernels_ran(kernel_calls)


def test_seeded_sampling_is_reproducible_and_batch_independent(
    checkpoints: dict[str, tuple[Path, Any]],
) -> None:
    model = load_model(checkpoints["llama-gqa3"][0], device=DEVICE)
    p = SamplingParams(max_tokens=20, temperature=1.0, top_k=30, top_p=0.95, seed=99)
    alone = Engine(model, num_blocks=32, block_size=4).generate([[5, 6, 7]], p)[0].output
    other = SamplingParams(max_tokens=20, temperature=1.0, seed=1)
    batched = Engine(model, num_blocks=32, block_size=4).generate(
        [[1, 1], [5, 6, 7], [9]], [other, p, SamplingParams(max_tokens=5)]
    )
    assert batched[1].output == alone
    assert Engine(model, num_blocks=32, block_size=4).generate([[5, 6, 7]], p)[0].output == alone
    different = SamplingParams(max_tokens=20, temperature=1.0, top_k=30, top_p=0.95, seed=100)
    assert (
        Engine(model, num_blocks=32, block_size=4).generate([[5, 6, 7]], different)[0].output
        != alone
    )


def test_kv_budget_from_the_device_memory(checkpoints: dict[str, tuple[Path, Any]]) -> None:
    model = load_model(checkpoints["llama-gqa3"][0], device=DEVICE)
    budget = profile_kv_budget(model, block_size=16, profile_tokens=64, fraction=0.01)
    cfg = model.config
    assert budget.source == ("cuda.mem_get_info" if DEVICE == "cuda" else "psutil.available")
    assert budget.bytes_per_block == 2 * cfg.num_hidden_layers * 16 * cfg.kv_size * 4
    assert budget.free_bytes > 0
    assert (
        budget.num_blocks
        == (int(budget.free_bytes * 0.01) - budget.activation_bytes) // budget.bytes_per_block
    )
    if DEVICE == "cuda":
        assert budget.activation_bytes > 0  # the profiling prefill allocated on the GPU
        _free, total = torch.cuda.mem_get_info()
        assert budget.free_bytes <= total


def test_bf16_kv_cache_on_the_device_holds_what_was_written(
    checkpoints: dict[str, tuple[Path, Any]],
) -> None:
    """The engine's paged cache lives on the model's device and in its dtype."""
    model = load_model(checkpoints["llama-gqa3"][0], dtype="bfloat16", device=DEVICE)
    engine = Engine(model, num_blocks=16, block_size=4)
    k, v = engine.cache.layers[0]
    assert k.device.type == v.device.type == torch.device(DEVICE).type
    assert k.dtype == torch.bfloat16
    engine.generate([[1, 2, 3, 4, 5]], SamplingParams(max_tokens=3))
    written = int((k.float().abs().sum(dim=(1, 2, 3)) > 0).sum())
    assert written == 2  # 5 prompt + 2 decoded tokens fill two 4-token blocks
