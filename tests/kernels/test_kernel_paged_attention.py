"""Paged-attention decode: kernel vs reference, reference vs dense SDPA (spec/kernels.md)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from infernet_kernels import (
    KernelInputError,
    paged_attention_decode,
    paged_attention_decode_reference,
)
from kernels_testlib import DTYPE_IDS, DTYPES, assert_matches, make_paged_case

# (num_heads, num_kv_heads, head_dim, block_size, context_lens): GQA ratios 1, 2, 4, 7 and 3,
# head_dim 64/80/128, 1..7 sequences, contexts on both sides of block boundaries, a cache block
# size that is not a power of two, and an empty padding slot.
CONFIGS = {
    "mha-d64-1seq": (4, 4, 64, 16, [1]),
    "gqa2-d80-boundaries": (8, 4, 80, 16, [15, 16, 17]),
    "gqa4-d128-7seqs": (8, 2, 128, 16, [1, 16, 33, 47, 64, 5, 100]),
    "gqa7-d64-bs8": (7, 1, 64, 8, [9, 40]),
    "gqa3-d80-bs5-empty": (6, 2, 80, 5, [23, 0, 11]),
}


def _case(name: str, dtype: torch.dtype, seed: int = 0):  # type: ignore[no-untyped-def]
    heads, kv_heads, head_dim, block_size, lens = CONFIGS[name]
    return make_paged_case(
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        block_size=block_size,
        context_lens=lens,
        dtype=dtype,
        seed=seed,
    )


def _dense_sdpa(case) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Independent oracle: SDPA over the dense K/V the cache was built from, in float32."""
    outs = []
    for s, (k, v) in enumerate(zip(case.dense_k, case.dense_v, strict=True)):
        heads, dim = case.q.shape[1:]
        if k.shape[0] == 0:
            outs.append(torch.zeros(heads, dim))
            continue
        query = case.q[s].float().unsqueeze(1)  # (H, 1, D)
        out = F.scaled_dot_product_attention(
            query,
            k.float().transpose(0, 1),  # (Hkv, ctx, D)
            v.float().transpose(0, 1),
            scale=case.scale,
            enable_gqa=True,
        )  # (H, 1, D)
        outs.append(out.squeeze(1))
    return torch.stack(outs).to(case.q.dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_reference_matches_dense_sdpa(name: str, dtype: torch.dtype) -> None:
    case = _case(name, dtype)
    expected = _dense_sdpa(case)
    actual = paged_attention_decode_reference(
        case.q, case.k_cache, case.v_cache, case.block_tables, case.context_lens, case.scale
    )
    assert_matches("paged_attention_decode", actual, expected)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_kernel_matches_reference(name: str, dtype: torch.dtype) -> None:
    case = _case(name, dtype, seed=1)
    args = (case.q, case.k_cache, case.v_cache, case.block_tables, case.context_lens, case.scale)
    actual = paged_attention_decode(*args)
    assert_matches("paged_attention_decode", actual, paged_attention_decode_reference(*args))
    assert torch.isfinite(actual.float()).all()


# Both product modes (tl.dot and broadcast-sum) and the split (flash-decoding) mode with a
# partition smaller than the contexts, so partitions end inside, at and past each context.
MODES = {
    "sum": {"use_dot": False},
    "dot": {"use_dot": True},
    "sum-split32": {"use_dot": False, "partition_size": 32},
    "dot-split48": {"use_dot": True, "partition_size": 48},
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("name", ["gqa2-d80-boundaries", "gqa3-d80-bs5-empty"])
def test_kernel_modes_match_reference(name: str, mode: str, dtype: torch.dtype) -> None:
    case = _case(name, dtype, seed=2)
    args = (case.q, case.k_cache, case.v_cache, case.block_tables, case.context_lens, case.scale)
    actual = paged_attention_decode(*args, **MODES[mode])
    assert_matches("paged_attention_decode", actual, paged_attention_decode_reference(*args))


def test_more_partitions_than_one_reduce_step() -> None:
    """35 partitions, combined by the reduce kernel in two steps of 32; the score maximum lies
    in the second step, so the first step's partials must be rescaled."""
    case = make_paged_case(
        num_heads=2,
        num_kv_heads=1,
        head_dim=64,
        block_size=16,
        context_lens=[560],
        dtype=torch.float32,
    )
    spike = 550
    block = int(case.block_tables[0, spike // 16])
    case.k_cache[block, spike % 16, 0] = 2.5 * (case.q[0, 0] + case.q[0, 1])
    args = (case.q, case.k_cache, case.v_cache, case.block_tables, case.context_lens, case.scale)
    actual = paged_attention_decode(*args, partition_size=16)
    assert_matches("paged_attention_decode", actual, paged_attention_decode_reference(*args))


def test_empty_context_yields_zeros_and_strided_query() -> None:
    case = _case("gqa3-d80-bs5-empty", torch.float32, seed=3)
    wide = torch.randn(case.q.shape[0], case.q.shape[1], 2 * case.q.shape[2])
    q = wide[..., : case.q.shape[2]]  # head_dim unit-strided, heads and sequences strided
    args = (q, case.k_cache, case.v_cache, case.block_tables, case.context_lens, case.scale)
    out = paged_attention_decode(*args, check_bounds=True)
    assert torch.equal(out[1], torch.zeros_like(out[1]))
    assert_matches("paged_attention_decode", out, paged_attention_decode_reference(*args))


def test_scale_is_applied() -> None:
    case = _case("mha-d64-1seq", torch.float32)
    case = make_paged_case(
        num_heads=2,
        num_kv_heads=2,
        head_dim=64,
        block_size=16,
        context_lens=[20],
        dtype=torch.float32,
    )
    base = (case.q, case.k_cache, case.v_cache, case.block_tables, case.context_lens)
    sharp = paged_attention_decode(*base, 1.0)
    soft = paged_attention_decode(*base, 0.01)
    assert not torch.allclose(sharp, soft)
    assert_matches("paged_attention_decode", soft, paged_attention_decode_reference(*base, 0.01))


def _bad_inputs() -> dict[str, tuple[dict[str, object], str]]:
    return {
        "int64-tables": ({"block_tables": "int64"}, "block_tables must be int32"),
        "int64-lens": ({"context_lens": "int64"}, "context_lens must be int32"),
        "heads-not-multiple": ({"q_heads": 5}, "not a multiple"),
        "dtype-mismatch": ({"q_dtype": torch.float16}, "share a dtype"),
        "bad-scale": ({"scale": float("nan")}, "scale must be"),
        "int-query": ({"q_dtype": torch.int32}, "float32, float16 or bfloat16"),
    }


@pytest.mark.parametrize("bad", list(_bad_inputs()))
def test_contract_violations_raise_typed_errors(bad: str) -> None:
    change, message = _bad_inputs()[bad]
    case = make_paged_case(
        num_heads=4,
        num_kv_heads=2,
        head_dim=64,
        block_size=16,
        context_lens=[3],
        dtype=torch.float32,
    )
    q = case.q
    if "q_heads" in change:
        q = torch.randn(1, int(change["q_heads"]), 64)  # type: ignore[call-overload]
    if "q_dtype" in change:
        q = q.to(change["q_dtype"])  # type: ignore[call-overload]
    tables = case.block_tables.long() if "block_tables" in change else case.block_tables
    lens = case.context_lens.long() if "context_lens" in change else case.context_lens
    scale = float(change.get("scale", case.scale))  # type: ignore[arg-type]
    with pytest.raises(KernelInputError, match=message):
        paged_attention_decode(q, case.k_cache, case.v_cache, tables, lens, scale)


def test_check_bounds_rejects_out_of_range_tables() -> None:
    case = make_paged_case(
        num_heads=2,
        num_kv_heads=1,
        head_dim=64,
        block_size=16,
        context_lens=[20, 3],
        dtype=torch.float32,
    )
    too_long = case.context_lens.clone()
    too_long[1] = case.block_tables.shape[1] * 16 + 1
    args = (case.q, case.k_cache, case.v_cache, case.block_tables)
    with pytest.raises(KernelInputError, match=r"context_lens\[1\]"):
        paged_attention_decode(*args, too_long, 0.125, check_bounds=True)
    longer = case.context_lens.clone()
    longer[1] = 17  # now reads the padding entry of row 1, which names no block
    with pytest.raises(KernelInputError, match=r"block_tables\[1\]"):
        paged_attention_decode(*args, longer, 0.125, check_bounds=True)
