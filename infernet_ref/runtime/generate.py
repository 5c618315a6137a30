"""One-shot generation as used by ``infernet generate`` (spec/runtime.md §9).

:func:`run_generate` loads a checkpoint whole, as in-process pipeline stages, or as one
tensor-parallel rank (hybrid TP x PP when both are asked for), generates for one prompt and
returns a JSON-ready report: token ids, timings, and the KV-block figures from profiling.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from infernet_ref.runtime import tp
from infernet_ref.runtime.config import load_config
from infernet_ref.runtime.engine import Engine, profile_kv_budget
from infernet_ref.runtime.errors import PromptTooLong, RequestError
from infernet_ref.runtime.kv_cache import KVBudget
from infernet_ref.runtime.loader import load_model
from infernet_ref.runtime.pipeline import PipelineStage, generate_pipeline
from infernet_ref.runtime.sampling import SamplingParams


@dataclass(frozen=True, slots=True)
class GenerateJob:
    model_dir: str
    prompt_ids: list[int]
    params: SamplingParams
    dtype: str | None = None
    stages: tuple[tuple[int, int], ...] = ()
    block_size: int = 16
    kv_fraction: float = 0.5


def parse_stages(text: str, num_layers: int) -> tuple[tuple[int, int], ...]:
    """``"0-3,4-7"`` (inclusive) -> ``((0, 4), (4, 8))``; must tile ``[0, num_layers)``."""
    ranges = []
    try:
        for part in text.split(","):
            lo, hi = part.split("-")
            ranges.append((int(lo), int(hi) + 1))
    except ValueError:
        raise RequestError(f"--pp-stages {text!r} must look like 0-3,4-7") from None
    expect = 0
    for a, b in ranges:
        if a != expect or b <= a:
            raise RequestError(f"--pp-stages {text!r} must be contiguous ranges from layer 0")
        expect = b
    if expect != num_layers:
        raise RequestError(f"--pp-stages {text!r} must end at layer {num_layers - 1}")
    return tuple(ranges)


def _kv_report(budget: KVBudget, allocated: int) -> dict[str, Any]:
    return {
        **asdict(budget),
        "max_concurrent_tokens": budget.max_concurrent_tokens,
        "allocated_blocks": allocated,
    }


def run_generate(job: GenerateJob, tp_group: Any = None) -> dict[str, Any]:
    """Generate for ``job``; with ``tp_group`` this is one rank of a TP group (spec §9)."""
    cfg = load_config(job.model_dir)
    total = len(job.prompt_ids) + job.params.max_tokens
    if total > cfg.max_position_embeddings:
        raise PromptTooLong(
            f"prompt + new tokens = {total} exceeds the context of {cfg.max_position_embeddings}"
        )
    need_blocks = -(-total // job.block_size) + 1
    start = time.perf_counter()
    report: dict[str, Any] = {"model": str(Path(job.model_dir)), "prompt_ids": job.prompt_ids}
    stages = job.stages or ((0, cfg.num_hidden_layers),)
    loaded = []
    for a, b in stages:
        if tp_group is not None:
            model = tp.load_sharded(job.model_dir, tp_group, dtype=job.dtype, layer_range=(a, b))
        else:
            model = load_model(job.model_dir, dtype=job.dtype, layer_range=(a, b))
        budget = profile_kv_budget(model, block_size=job.block_size, fraction=job.kv_fraction)
        loaded.append((model, budget))
    report["load_seconds"] = time.perf_counter() - start
    report["kv"] = [_kv_report(b, min(b.num_blocks, need_blocks)) for _, b in loaded]
    if len(loaded) == 1:
        model, budget = loaded[0]
        engine = Engine(
            model, num_blocks=min(budget.num_blocks, need_blocks), block_size=job.block_size
        )
        done = engine.generate([job.prompt_ids], job.params)[0]
        s = engine.stats
        report.update(
            output_ids=done.output,
            finish_reason=done.finish_reason,
            seed=done.seed,
            prefill_seconds=s.prefill_seconds,
            decode_seconds=s.decode_seconds,
        )
    else:
        chain = [
            PipelineStage(m, num_blocks=min(b.num_blocks, need_blocks), block_size=job.block_size)
            for m, b in loaded
        ]
        res = generate_pipeline(
            [st.forward for st in chain],
            job.prompt_ids,
            job.params,
            eos_token_ids=cfg.eos_token_ids,
        )
        report.update(
            output_ids=res.output,
            finish_reason=res.finish_reason,
            seed=res.seed,
            prefill_seconds=res.prefill_seconds,
            decode_seconds=res.decode_seconds,
        )
    n_dec = max(0, len(report["output_ids"]) - 1)
    report["prefill_tokens_per_second"] = len(job.prompt_ids) / max(report["prefill_seconds"], 1e-9)
    report["decode_tokens_per_second"] = n_dec / max(report["decode_seconds"], 1e-9)
    report["stages"] = [list(r) for r in stages]
    return report


def tp_rank_generate(rank: int, world: int, job: GenerateJob, threads: int) -> dict[str, Any]:
    """Entry point of one spawned TP rank (see :mod:`infernet_ref.runtime.launch`)."""
    torch.set_num_threads(threads)
    report = run_generate(job, tp_group=None if world == 1 else _default_group())
    report["tp"] = world
    return report


def _default_group() -> Any:
    return dist.group.WORLD
