"""The runtime against Hugging Face transformers on random-weight checkpoints (issue 7 item 9)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from infernet_ref.runtime.engine import Engine, make_batch
from infernet_ref.runtime.kv_cache import PagedKVCache
from infernet_ref.runtime.loader import load_model
from infernet_ref.runtime.model import Transformer
from infernet_ref.runtime.sampling import SamplingParams

from .conftest import FAMILIES, hf_greedy, make_hf_model, save_hf

pytestmark = pytest.mark.interop

PROMPTS = [[1, 2, 3, 4, 5], [7, 8, 9], [11] * 13, [42]]


def prefill_logits(model: Transformer, ids: list[list[int]], block_size: int = 4) -> torch.Tensor:
    """All-position logits of equal-length prompts through the paged prefill path (S, T, V)."""
    s, t = len(ids), len(ids[0])
    per_seq = -(-t // block_size)
    cache = PagedKVCache.for_model(model, s * per_seq, block_size)
    tables = [list(range(i * per_seq, (i + 1) * per_seq)) for i in range(s)]
    slots = [
        tables[i][j // block_size] * block_size + j % block_size for i in range(s) for j in range(t)
    ]
    batch = make_batch([list(range(t))] * s, slots, tables, [t] * s, torch.device("cpu"))
    with torch.inference_mode():
        return model(torch.tensor(ids), batch, cache.layers, all_logits=True)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_greedy_tokens_identical_for_32_new_tokens(
    family: str, checkpoints: dict[str, tuple[Path, Any]]
) -> None:
    path, hf = checkpoints[family]
    engine = Engine(load_model(path), num_blocks=64, block_size=4, max_num_seqs=3)
    ours = [c.output for c in engine.generate(PROMPTS, SamplingParams(max_tokens=32))]
    assert ours == hf_greedy(hf, PROMPTS, 32)
    assert engine.blocks.num_free_blocks == 64  # every block came back


@pytest.mark.parametrize("family", list(FAMILIES))
def test_logits_match_transformers(family: str, checkpoints: dict[str, tuple[Path, Any]]) -> None:
    path, hf = checkpoints[family]
    model = load_model(path)
    ids = [[3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8]]
    ours = prefill_logits(model, ids)
    with torch.inference_mode():
        ref = hf(torch.tensor(ids)).logits.float()
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=1e-4)


def test_decode_logits_match_full_forward(checkpoints: dict[str, tuple[Path, Any]]) -> None:
    """Decode-step logits (paged cache, batch 2, different lengths) equal HF's full forward."""
    path, hf = checkpoints["llama-gqa3"]
    model = load_model(path)
    engine = Engine(model, num_blocks=32, block_size=4)
    prompts = [[5, 6, 7, 8, 9, 10], [3, 2]]
    seen: list[torch.Tensor] = []
    original = engine._sample

    def spy(logits: torch.Tensor, reqs: Any) -> list[int]:
        seen.append(logits.clone())
        return original(logits, reqs)

    engine._sample = spy  # type: ignore[method-assign]
    outs = engine.generate(prompts, SamplingParams(max_tokens=6))
    # seen[0], seen[1] are the prefills; seen[2:] are batched decode steps of both sequences
    for step, logits in enumerate(seen[2:], start=1):
        for row, (prompt, out) in enumerate(zip(prompts, outs, strict=True)):
            ctx = prompt + out.output[:step]
            with torch.inference_mode():
                ref = hf(torch.tensor([ctx])).logits[0, -1].float()
            torch.testing.assert_close(logits[row], ref, atol=2e-5, rtol=1e-4)


def test_sharded_checkpoint_with_index(tmp_path: Path) -> None:
    hf = make_hf_model("qwen2-bias", vocab=211, seed=3)
    path = save_hf(hf, tmp_path / "sharded", max_shard_size="20KB")
    assert (path / "model.safetensors.index.json").exists()
    assert len(list(path.glob("*.safetensors"))) > 2
    engine = Engine(load_model(path), num_blocks=32, block_size=8)
    ours = [c.output for c in engine.generate(PROMPTS[:2], SamplingParams(max_tokens=32))]
    assert ours == hf_greedy(hf, PROMPTS[:2], 32)


def test_llama3_rope_scaling_is_exercised(checkpoints: dict[str, tuple[Path, Any]]) -> None:
    """Past original_max_position_embeddings the scaled frequencies must still match HF."""
    path, hf = checkpoints["llama3-tied"]
    model = load_model(path)
    ids = [[(5 * i) % 97 for i in range(40)]]  # 40 > original_max_position_embeddings = 16
    with torch.inference_mode():
        ref = hf(torch.tensor(ids)).logits.float()
    torch.testing.assert_close(prefill_logits(model, ids), ref, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_load_tracks_transformers(
    dtype: torch.dtype, checkpoints: dict[str, tuple[Path, Any]]
) -> None:
    path, _hf = checkpoints["llama-gqa3"]
    model = load_model(path, dtype=dtype)
    assert model.model.layers["0"].self_attn.qkv_weight.dtype == dtype
    ids = [[3, 1, 4, 1, 5, 9, 2, 6]]
    ref_model = make_hf_model("llama-gqa3").to(dtype)
    with torch.inference_mode():
        ref = ref_model(torch.tensor(ids)).logits.float()
    ours = prefill_logits(model, ids)
    assert (ours - ref).abs().max() < 0.05 * ref.abs().max()
    assert (ours.argmax(-1) == ref.argmax(-1)).float().mean() >= 0.75


def test_chunked_prefill_after_context_matches_transformers(
    checkpoints: dict[str, tuple[Path, Any]],
) -> None:
    """T > 1 new tokens on top of cached context (the masked, gathered attention path)."""
    from infernet_ref.runtime.frames import ActivationFrame, decode_frame, encode_frame
    from infernet_ref.runtime.pipeline import PipelineStage

    path, hf = checkpoints["qwen2-bias"]
    stage = PipelineStage.load(path, (0, 3), num_blocks=16, block_size=4)
    ids = [5, 9, 2, 7, 7, 1, 3, 8, 4, 6, 2]
    pos = 0
    for chunk in (ids[:3], ids[3:8], ids[8:]):
        frame = ActivationFrame("c", pos, "input_ids", torch.tensor(chunk))
        logits = decode_frame(stage.forward(encode_frame(frame))).tensor
        pos += len(chunk)
        with torch.inference_mode():
            ref = hf(torch.tensor([ids[:pos]])).logits[0, -1].float()
        torch.testing.assert_close(logits, ref, atol=2e-5, rtol=1e-4)
