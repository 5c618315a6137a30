"""The parallelism planner (spec/job.md §Planning): decision tree, memory model, ranking, replicas."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infernet_ref.node.errors import ErrorCode, PlanningError
from infernet_ref.node.planner import (
    JobNeeds,
    ModelShape,
    ProviderOffer,
    plan_job,
    replacement,
    score,
    stage_bytes,
    valid_tps,
)

# A 8-layer toy Llama: hidden 64, 4 heads / 2 kv heads of 16, MLP 128, vocab 256.
TOY = ModelShape(
    num_layers=8,
    hidden_size=64,
    intermediate_size=128,
    num_heads=4,
    num_kv_heads=2,
    head_dim=16,
    vocab_size=256,
)
NEEDS = JobNeeds(prompt_tokens=10, max_new_tokens=22)  # 32 tokens = 2 blocks of 16
LAYER = TOY.layer_params() * 4
KV_LAYER = 32 * 2 * 2 * 16 * 4  # tokens x (k, v) x kv_heads x head_dim x fp32
EMB = 256 * 64 * 4
HEAD = (64 + 256 * 64) * 4
WHOLE = 8 * LAYER + EMB + HEAD + 8 * KV_LAYER


def offer(name: str, *mem: int, **kw: object) -> ProviderOffer:
    return ProviderOffer(
        pubkey=name * 64 if len(name) == 1 else name,
        endpoint=f"ws://{name}/job",
        device_memory=tuple(mem),
        **kw,
    )  # type: ignore[arg-type]


def test_layer_params_match_hand_count() -> None:
    # q(64x64) + k,v(64x32 each) + o(64x64) + gate/up/down(3 x 64x128) + 2 norms
    assert TOY.layer_params() == 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128 + 2 * 64
    assert TOY.total_params() == 8 * TOY.layer_params() + 256 * 64 + 64 + 256 * 64


def test_shape_from_hf_config_matches_transformers_param_count() -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cfg = {
        "model_type": "llama",
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "vocab_size": 256,
        "tie_word_embeddings": False,
    }
    shape = ModelShape.from_hf_config(cfg)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg))
    assert shape.total_params() == sum(p.numel() for p in model.parameters())


def test_stage_bytes_counts_embedding_head_and_kv() -> None:
    assert stage_bytes(TOY, NEEDS, 0, 8, 1) == WHOLE
    assert stage_bytes(TOY, NEEDS, 2, 5, 1) == 3 * LAYER + 3 * KV_LAYER
    assert stage_bytes(TOY, NEEDS, 2, 6, 2) == 2 * LAYER + 2 * KV_LAYER


def test_single_device_when_it_fits_and_best_ranked_wins() -> None:
    slow = offer("a", WHOLE, latency_ms=200)
    fast = offer("b", WHOLE, latency_ms=1)
    plan = plan_job(TOY, NEEDS, [slow, fast])
    assert plan.strategy == "single"
    assert [(p.provider.pubkey[0], p.layer_start, p.layer_end, p.tp) for p in plan.replicas[0]] == [
        ("b", 0, 8, 1)
    ]


def test_tensor_parallel_inside_one_provider_before_pipeline() -> None:
    half = (8 * LAYER + 8 * KV_LAYER) // 2 + EMB + HEAD
    plan = plan_job(
        TOY, NEEDS, [offer("a", half, half), offer("b", WHOLE // 2), offer("c", WHOLE // 2)]
    )
    assert plan.strategy == "tensor"
    assert [(p.layer_start, p.layer_end, p.tp) for p in plan.replicas[0]] == [(0, 8, 2)]


def test_pipeline_across_providers_when_no_single_provider_fits() -> None:
    a = offer("a", EMB + 4 * (LAYER + KV_LAYER))
    b = offer("b", HEAD + 4 * (LAYER + KV_LAYER))
    plan = plan_job(TOY, NEEDS, [a, b])
    assert plan.strategy == "pipeline"
    assert [
        (p.provider.pubkey[0], p.layer_start, p.layer_end, p.stage) for p in plan.replicas[0]
    ] == [("a", 0, 4, 0), ("b", 4, 8, 1)]


def test_hybrid_two_stages_one_with_tp2() -> None:
    # The demo's shape: stage 0 on one device; stage 1 needs two devices of provider b.
    a = offer("a", EMB + 4 * (LAYER + KV_LAYER))
    per_dev = HEAD + 2 * (LAYER + KV_LAYER)
    b = offer("b", per_dev, per_dev)
    plan = plan_job(TOY, NEEDS, [a, b])
    assert plan.strategy == "hybrid"
    assert [(p.provider.pubkey[0], p.layer_start, p.layer_end, p.tp) for p in plan.replicas[0]] == [
        ("a", 0, 4, 1),
        ("b", 4, 8, 2),
    ]


def test_layer_ranges_served_constrain_the_plan() -> None:
    a = offer("a", WHOLE, layer_start=0, layer_end=3)
    b = offer("b", WHOLE, layer_start=3, layer_end=8)
    plan = plan_job(TOY, NEEDS, [a, b])
    assert [(p.layer_start, p.layer_end) for p in plan.replicas[0]] == [(0, 3), (3, 8)]
    with pytest.raises(PlanningError):
        plan_job(
            TOY,
            NEEDS,
            [offer("a", WHOLE, layer_start=0, layer_end=3), offer("b", WHOLE, layer_start=4)],
        )


def test_kv_blocks_announced_limit_the_context() -> None:
    assert plan_job(TOY, NEEDS, [offer("a", WHOLE, free_kv_blocks=2)]).strategy == "single"
    with pytest.raises(PlanningError) as exc:
        plan_job(TOY, NEEDS, [offer("a", WHOLE, free_kv_blocks=1)])
    assert exc.value.code is ErrorCode.NO_CAPACITY


def test_model_that_fits_nowhere_and_no_providers() -> None:
    with pytest.raises(PlanningError) as exc:
        plan_job(TOY, NEEDS, [offer("a", LAYER), offer("b", LAYER)])
    assert exc.value.code is ErrorCode.NO_CAPACITY
    with pytest.raises(PlanningError) as exc:
        plan_job(TOY, NEEDS, [])
    assert exc.value.code is ErrorCode.NO_PROVIDERS


def test_redundant_replicas_use_disjoint_providers() -> None:
    providers = [offer(c, WHOLE) for c in "abc"]
    plan = plan_job(TOY, JobNeeds(10, 22, redundancy=3), providers)
    assert sorted(rep[0].provider.pubkey[0] for rep in plan.replicas) == ["a", "b", "c"]
    with pytest.raises(PlanningError) as exc:
        plan_job(TOY, JobNeeds(10, 22, redundancy=4), providers)
    assert exc.value.code is ErrorCode.NO_PROVIDERS


def test_replacement_takes_the_failed_stage_range_and_skips_excluded() -> None:
    a = offer("a", EMB + 4 * (LAYER + KV_LAYER))
    b = offer("b", HEAD + 4 * (LAYER + KV_LAYER))
    c = offer("c", HEAD + 4 * (LAYER + KV_LAYER), latency_ms=50)
    plan = plan_job(TOY, NEEDS, [a, b, c])
    failed = plan.replicas[0][1]
    new = replacement(TOY, NEEDS, failed, [a, b, c], exclude={a.pubkey, failed.provider.pubkey})
    assert (new.layer_start, new.layer_end, new.stage) == (
        failed.layer_start,
        failed.layer_end,
        failed.stage,
    )
    assert new.provider.pubkey not in {a.pubkey, failed.provider.pubkey}
    with pytest.raises(PlanningError):
        replacement(TOY, NEEDS, failed, [a, b, c], exclude={a.pubkey, b.pubkey, c.pubkey})


def test_score_orders_by_reputation_load_and_latency() -> None:
    base = offer("a", 1)
    assert score(base) > score(offer("a", 1, reputation=0.5))
    assert score(base) > score(offer("a", 1, load=0.5))
    assert score(base) > score(offer("a", 1, latency_ms=30))


def test_valid_tps_divide_heads() -> None:
    assert valid_tps(TOY, 8) == [1, 2]  # 2 kv heads: tp 4 impossible
    assert valid_tps(ModelShape(2, 64, 64, 8, 8, 8, 10), 8) == [1, 2, 4, 8]


def _min_stages_bruteforce(
    model: ModelShape, needs: JobNeeds, providers: list[ProviderOffer]
) -> int | None:
    """Exhaustive search over every (provider, end layer, tp) at every position."""
    best: int | None = None
    frontier = {(0, frozenset())}
    for depth in range(1, len(providers) + 1):
        nxt = set()
        for a, used in frontier:
            for p in providers:
                if p.pubkey in used:
                    continue
                for b in range(a + 1, model.num_layers + 1):
                    for tp in valid_tps(model, len(p.device_memory)):
                        end = model.num_layers if p.layer_end is None else p.layer_end
                        fits = (
                            p.layer_start <= a
                            and b <= end
                            and sorted(p.device_memory, reverse=True)[tp - 1]
                            >= stage_bytes(model, needs, a, b, tp)
                        )
                        if fits:
                            if b == model.num_layers:
                                return depth
                            nxt.add((b, used | {p.pubkey}))
        frontier = nxt
    return best


mem = st.integers(min_value=LAYER, max_value=WHOLE + LAYER)


@settings(max_examples=120, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(mem, min_size=1, max_size=2), st.integers(0, 7), st.floats(0, 1)),
        min_size=1,
        max_size=4,
    )
)
def test_plans_are_valid_and_use_the_fewest_stages(
    spec: list[tuple[list[int], int, float]],
) -> None:
    providers = [
        offer(f"p{i}", *m, layer_start=min(ls, 3), load=load)
        for i, (m, ls, load) in enumerate(spec)
    ]
    optimum = _min_stages_bruteforce(TOY, NEEDS, providers)
    try:
        plan = plan_job(TOY, NEEDS, providers)
    except PlanningError:
        assert optimum is None
        return
    stages = plan.replicas[0]
    assert optimum is not None
    assert len(stages) == optimum
    assert stages[0].layer_start == 0
    assert stages[-1].layer_end == TOY.num_layers
    for prev, cur in itertools.pairwise(stages):
        assert prev.layer_end == cur.layer_start
    for s in stages:
        need = stage_bytes(TOY, NEEDS, s.layer_start, s.layer_end, s.tp)
        assert sorted(s.provider.device_memory, reverse=True)[s.tp - 1] >= need
    assert len({s.provider.pubkey for s in stages}) == len(stages)
    if any(m >= WHOLE for m, _, _ in [(max(m), ls, ld) for m, ls, ld in spec]) and any(
        ls == 0 and max(m) >= WHOLE for m, ls, _ in spec
    ):
        assert plan.strategy == "single"


def test_verification_majority_ties_and_mismatch_naming() -> None:
    from infernet_ref.node.verify import compare

    v = compare(["a"], [["p"]])
    assert (v.verdict, v.mismatched, v.winner) == ("single", (), 0)
    v = compare(["a", "a", "b"], [["p1", "p2"], ["p3"], ["p4", "p5"]])
    assert (v.verdict, v.majority, v.mismatched, v.winner) == ("mismatch", "a", ("p4", "p5"), 0)
    v = compare(["b", "a", "a"], [["p1"], ["p2"], ["p3"]])
    assert (v.majority, v.winner, v.mismatched) == ("a", 1, ("p1",))
    v = compare(["x", "y"], [["p1"], ["p2"]])  # a tie: replica 0's result, both are named
    assert (v.majority, v.mismatched, v.verdict) == ("x", ("p1", "p2"), "mismatch")
    v = compare(["x", "y", "y", "x"], [["p1"], ["p2"], ["p3"], ["p4"]])
    assert (v.majority, v.winner, v.mismatched) == ("x", 0, ("p1", "p2", "p3", "p4"))
    assert compare(["h", "h"], [["p1"], ["p2"]]).to_wire() == {
        "redundancy": 2,
        "verdict": "agree",
        "hashes": ["h", "h"],
        "mismatched": [],
    }
    with pytest.raises(ValueError, match="one hash"):
        compare([], [])


def test_greedy_fallback_when_the_search_budget_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    from infernet_ref.node import planner

    providers = [offer(f"p{i}", WHOLE // 3, layer_start=0) for i in range(6)]
    exact = plan_job(TOY, NEEDS, providers)
    monkeypatch.setattr(planner, "SEARCH_BUDGET", 1)
    fallback = plan_job(TOY, NEEDS, providers)
    assert [(s.layer_start, s.layer_end) for s in fallback.replicas[0]] == [
        (s.layer_start, s.layer_end) for s in exact.replicas[0]
    ]
