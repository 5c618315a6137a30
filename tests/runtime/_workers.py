"""Functions run inside spawned processes by the runtime tests (must be importable by name)."""

from __future__ import annotations

from typing import Any

import torch


def tp_rank_check(
    rank: int, world: int, paths: list[str], prompts: list[list[int]], n: int
) -> list[dict[str, Any]]:
    return [_tp_check_one(rank, path, prompts, n) for path in paths]


def _tp_check_one(rank: int, path: str, prompts: list[list[int]], n: int) -> dict[str, Any]:
    from infernet_ref.runtime import tp
    from infernet_ref.runtime.engine import Engine
    from infernet_ref.runtime.loader import load_model
    from infernet_ref.runtime.pipeline import PipelineStage, generate_pipeline
    from infernet_ref.runtime.sampling import SamplingParams

    from .test_runtime_oracle import prefill_logits

    full = load_model(path)
    loaded = tp.load_sharded(path)  # only this rank's slices read from disk
    passed = tp.shard_model(full)  # the separate pass over an unsharded model
    ids = [[3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1, 8, 2, 8, 1, 8], [1, 1, 2, 3, 5, 8, 13, 21]]
    ref = prefill_logits(full, ids)
    diffs = {
        "loaded": float((prefill_logits(loaded, ids) - ref).abs().max()),
        "passed": float((prefill_logits(passed, ids) - ref).abs().max()),
    }
    params = SamplingParams(max_tokens=n)
    tokens = {
        name: [c.output for c in Engine(m, num_blocks=64, block_size=4).generate(prompts, params)]
        for name, m in (("full", full), ("loaded", loaded), ("passed", passed))
    }
    sampled = SamplingParams(max_tokens=n, temperature=0.8, top_k=20, top_p=0.9, seed=1234)
    tokens["sampled_full"] = (
        Engine(full, num_blocks=64, block_size=4).generate(prompts, sampled)[0].output
    )
    tokens["sampled_tp"] = (
        Engine(loaded, num_blocks=64, block_size=4).generate(prompts, sampled)[0].output
    )
    n_layers = full.config.num_hidden_layers
    stages = [
        PipelineStage.load(
            path, r, num_blocks=32, block_size=4, tp_group=torch.distributed.group.WORLD
        )
        for r in ((0, 1), (1, n_layers))
    ]
    tokens["hybrid"] = generate_pipeline([s.forward for s in stages], prompts[0], params).output
    from infernet_ref.runtime.generate import GenerateJob, tp_rank_generate

    job = GenerateJob(path, prompts[1], params, "float32", ((0, 1), (1, n_layers)), block_size=4)
    report = tp_rank_generate(rank, 2, job, 1)  # what `infernet generate --tp 2 --pp-stages` runs
    tokens["cli"] = report["output_ids"]
    shapes = tuple(loaded.model.layers["0"].self_attn.qkv_weight.shape)
    return {"rank": rank, "diffs": diffs, "tokens": tokens, "qkv_shape": shapes}
