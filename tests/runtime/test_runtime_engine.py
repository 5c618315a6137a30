"""Block manager, KV budget, sampling against transformers' warpers, continuous batching."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from infernet_ref.runtime.engine import Engine, profile_kv_budget
from infernet_ref.runtime.errors import OutOfKVBlocks, PromptTooLong, RequestError
from infernet_ref.runtime.kv_cache import BlockManager, budget_from_memory
from infernet_ref.runtime.loader import load_model
from infernet_ref.runtime.sampling import SamplingParams, sample, token_seed, warp_logits

from .conftest import hf_greedy


def test_block_manager_slots_and_watermark() -> None:
    bm = BlockManager(num_blocks=10, block_size=4, watermark=0.2)  # 2 blocks held back
    assert bm.allocate("a", 6) == [0, 1, 2, 3, 4, 5]
    assert bm.block_table("a") == [0, 1]
    assert bm.append("a", 3) == [6, 7, 8]
    assert bm.block_table("a") == [0, 1, 2]
    assert bm.can_allocate(20)
    assert not bm.can_allocate(21)
    bm.allocate("b", 20)
    assert not bm.can_allocate(1)
    assert bm.num_free_blocks == 2
    assert bm.can_append("a", 3)
    assert not bm.can_append("a", 12)
    with pytest.raises(OutOfKVBlocks):
        bm.append("a", 12)
    with pytest.raises(RequestError):
        bm.allocate("a", 1)
    bm.free("a")
    bm.free("a")  # idempotent
    assert bm.num_free_blocks == 5
    assert not bm.fits_ever(33)
    assert bm.fits_ever(32)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["alloc", "append", "free"]), st.integers(0, 4), st.integers(1, 9)
        ),
        max_size=60,
    )
)
def test_block_manager_never_double_books(ops: list[tuple[str, int, int]]) -> None:
    bm = BlockManager(num_blocks=12, block_size=3)
    for op, seq, n in ops:
        try:
            if op == "alloc" and seq not in bm:
                bm.allocate(seq, n)
            elif op == "append" and seq in bm:
                bm.append(seq, n)
            elif op == "free":
                bm.free(seq)
        except OutOfKVBlocks:
            pass
        owned = [b for s in range(5) if s in bm for b in bm.block_table(s)]
        assert len(owned) == len(set(owned))
        assert len(owned) + bm.num_free_blocks == 12
        for s in range(5):
            if s in bm:
                assert len(bm.block_table(s)) == bm.blocks_for(bm.length(s))


def test_kv_budget_from_profiling(checkpoints: dict[str, tuple[Path, Any]]) -> None:
    model = load_model(checkpoints["llama-gqa3"][0])
    budget = profile_kv_budget(model, block_size=16, profile_tokens=64, fraction=0.01)
    cfg = model.config
    assert budget.bytes_per_block == 2 * cfg.num_hidden_layers * 16 * cfg.kv_size * 4
    assert budget.source == "psutil.available"
    assert budget.free_bytes > 0
    assert (
        budget.num_blocks
        == (int(budget.free_bytes * 0.01) - budget.activation_bytes) // budget.bytes_per_block
    )
    assert budget.max_concurrent_tokens == budget.num_blocks * 16
    with pytest.raises(OutOfKVBlocks):
        budget_from_memory(
            1000, activation_bytes=900, per_block=200, block_size=16, fraction=1.0, source="x"
        )


@pytest.mark.interop
def test_continuous_batching_with_preemption_matches_transformers(
    checkpoints: dict[str, tuple[Path, Any]],
) -> None:
    """7 requests, at most 3 running, a cache too small for all: same tokens as one by one."""
    path, hf = checkpoints["mistral-mqa"]
    prompts = [[i + 1] * (3 + 2 * i) for i in range(7)]
    engine = Engine(load_model(path), num_blocks=14, block_size=4, max_num_seqs=3)
    out = engine.generate(prompts, SamplingParams(max_tokens=16))
    assert [c.output for c in out] == hf_greedy(hf, prompts, 16)
    assert engine.stats.preemptions > 0  # the small cache forced recomputation
    assert engine.blocks.num_free_blocks == 14


def test_engine_request_errors(checkpoints: dict[str, tuple[Path, Any]]) -> None:
    engine = Engine(load_model(checkpoints["llama-gqa3"][0]), num_blocks=8, block_size=4)
    with pytest.raises(PromptTooLong):
        engine.add_request([1] * 250, SamplingParams(max_tokens=10))  # context 256
    with pytest.raises(OutOfKVBlocks):
        engine.add_request([1] * 30, SamplingParams(max_tokens=10))  # 40 tokens > 32 slots
    with pytest.raises(RequestError, match=r"\[0, 97\)"):
        engine.add_request([1, 97], SamplingParams())
    with pytest.raises(RequestError, match="empty"):
        engine.add_request([], SamplingParams())
    for bad in (
        {"temperature": -1.0},
        {"top_p": 0.0},
        {"top_k": -2},
        {"max_tokens": 0},
        {"temperature": float("nan")},
    ):
        with pytest.raises(RequestError):
            SamplingParams(**bad)  # type: ignore[arg-type]


def test_stop_tokens_and_eos(checkpoints: dict[str, tuple[Path, Any]]) -> None:
    path, hf = checkpoints["llama-gqa3"]
    ref = hf_greedy(hf, [[1, 2, 3]], 10)[0]
    engine = Engine(load_model(path), num_blocks=8, block_size=4)
    stop = ref[4]
    out = engine.generate([[1, 2, 3]], SamplingParams(max_tokens=10, stop_token_ids=(stop,)))[0]
    assert out.output == ref[: ref.index(stop) + 1]
    assert out.finish_reason == "stop"
    engine.eos = {ref[2]}
    out = engine.generate([[1, 2, 3]], SamplingParams(max_tokens=10))[0]
    assert out.finish_reason == "eos"
    assert out.output[-1] == ref[2]


@pytest.mark.parametrize(("top_k", "top_p", "temp"), [(0, 0.9, 1.0), (5, 1.0, 0.7), (10, 0.5, 1.3)])
def test_warpers_equal_transformers(top_k: int, top_p: float, temp: float) -> None:
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    torch.manual_seed(7)
    logits = torch.randn(4, 50) * 3
    ref = TemperatureLogitsWarper(temp)(None, logits.clone())
    if top_k:
        ref = TopKLogitsWarper(top_k)(None, ref)
    if top_p < 1:
        ref = TopPLogitsWarper(top_p)(None, ref)
    ours = warp_logits(logits, SamplingParams(temperature=temp, top_k=top_k, top_p=top_p))
    assert torch.equal(torch.isinf(ours), torch.isinf(ref))
    torch.testing.assert_close(ours[~torch.isinf(ours)], ref[~torch.isinf(ref)])


def test_seeded_sampling_is_reproducible_and_batch_independent(
    checkpoints: dict[str, tuple[Path, Any]],
) -> None:
    model = load_model(checkpoints["llama-gqa3"][0])
    p = SamplingParams(max_tokens=20, temperature=1.0, top_k=30, top_p=0.95, seed=99)
    alone = Engine(model, num_blocks=32, block_size=4).generate([[5, 6, 7]], p)[0].output
    other = SamplingParams(max_tokens=20, temperature=1.0, seed=1)
    batched = Engine(model, num_blocks=32, block_size=4).generate(
        [[1, 1], [5, 6, 7], [9]], [other, p, SamplingParams(max_tokens=5)]
    )
    assert batched[1].output == alone
    again = Engine(model, num_blocks=32, block_size=4).generate([[5, 6, 7]], p)[0]
    assert again.output == alone
    assert again.seed == 99
    different = SamplingParams(max_tokens=20, temperature=1.0, top_k=30, top_p=0.95, seed=100)
    assert (
        Engine(model, num_blocks=32, block_size=4).generate([[5, 6, 7]], different)[0].output
        != alone
    )


def test_sampling_respects_top_k_support() -> None:
    logits = torch.arange(10.0).repeat(200, 1)
    params = [SamplingParams(temperature=1.0, top_k=3)] * 200
    tokens = sample(logits, params, [5] * 200, list(range(200)))
    assert set(tokens.tolist()) <= {7, 8, 9}
    assert len(set(tokens.tolist())) == 3


def test_token_seed_follows_the_job_spec() -> None:
    assert token_seed(7, 3) == (7 * 1000003 + 3) % 2**63
    logits = torch.randn(1, 64)
    p = [SamplingParams(temperature=1.0)]
    first = sample(logits, p, [11], [4])
    gen = torch.Generator().manual_seed((11 * 1000003 + 4) % 2**63)
    assert int(first[0]) == int(torch.multinomial(logits[0].softmax(-1), 1, generator=gen)[0])


def test_sampled_output_survives_preemption(checkpoints: dict[str, tuple[Path, Any]]) -> None:
    """Recomputation after preemption draws the same tokens: seeds depend on (seed, index)."""
    model = load_model(checkpoints["mistral-mqa"][0])
    prompts = [[i + 1] * (3 + 2 * i) for i in range(6)]
    params = [SamplingParams(max_tokens=14, temperature=0.9, top_p=0.9, seed=s) for s in range(6)]
    roomy = Engine(model, num_blocks=64, block_size=4).generate(prompts, params)
    tight = Engine(model, num_blocks=12, block_size=4, max_num_seqs=3)
    assert [c.output for c in tight.generate(prompts, params)] == [c.output for c in roomy]
    assert tight.stats.preemptions > 0
