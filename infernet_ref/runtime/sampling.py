"""Token sampling: greedy, temperature, top-k, top-p, seeded per request (spec/runtime.md §8).

Theory of operation: ``temperature == 0`` is greedy (argmax). Otherwise the fp32 logits are
divided by the temperature, cut to the ``top_k`` largest (ties at the k-th value stay, as in
transformers' ``TopKLogitsWarper``), then to the smallest set whose probability reaches
``top_p`` (transformers' ``TopPLogitsWarper`` rule: drop the tail whose cumulative mass is at
most ``1 - top_p``, never the top token), and one token is drawn with ``torch.multinomial`` from
a :class:`torch.Generator` seeded for that token alone with
``(seed * 1000003 + t) mod 2^63`` for output index ``t`` (spec/job.md §Determinism). A token
therefore depends only on (logits, params, seed, t): never on which other requests share the
batch, and not on history either, so a preempted or rerouted request that is recomputed (or
replayed on another provider) draws exactly the same tokens.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from infernet_ref.runtime.errors import RequestError


@dataclass(frozen=True, slots=True)
class SamplingParams:
    max_tokens: int = 16
    temperature: float = 0.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = field(default_factory=tuple)
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise RequestError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise RequestError(f"temperature must be finite and >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise RequestError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise RequestError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.seed is not None and not 0 <= self.seed < 1 << 64:
            raise RequestError(f"seed must be in [0, 2^64), got {self.seed}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


SEED_MULTIPLIER = 1000003


def resolve_seed(seed: int | None) -> int:
    """The request's seed, drawn at random when the caller gave none."""
    return secrets.randbits(63) if seed is None else seed


def token_seed(seed: int, index: int) -> int:
    """Seed of the generator that draws output token ``index`` (spec/job.md §Determinism)."""
    return (seed * SEED_MULTIPLIER + index) % (1 << 63)


def warp_logits(logits: torch.Tensor, params: SamplingParams) -> torch.Tensor:
    """Temperature, top-k and top-p on fp32 logits (..., V); removed entries become -inf."""
    scores = logits / params.temperature
    if 0 < params.top_k < scores.shape[-1]:
        kth = torch.topk(scores, params.top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, -math.inf)
    if params.top_p < 1.0:
        sorted_scores, order = torch.sort(scores, descending=False, dim=-1)
        cum = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        remove = cum <= 1 - params.top_p
        remove[..., -1:] = False
        scores = scores.masked_fill(remove.scatter(-1, order, remove), -math.inf)
    return scores


def sample(
    logits: torch.Tensor,
    params: Sequence[SamplingParams],
    seeds: Sequence[int],
    indices: Sequence[int],
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token per row of fp32 ``logits`` (S, V) -> int64 (S,).

    Row ``i`` is output token ``indices[i]`` of a request seeded with ``seeds[i]``; greedy rows
    take the first arg-max.
    """
    tokens = logits.argmax(dim=-1)
    if all(p.greedy for p in params):
        return tokens
    gen = generator if generator is not None else torch.Generator(device=logits.device)
    for i, p in enumerate(params):
        if p.greedy:
            continue
        gen.manual_seed(token_seed(seeds[i], indices[i]))
        probs = warp_logits(logits[i], p).softmax(dim=-1)
        tokens[i] = torch.multinomial(probs, 1, generator=gen)[0]
    return tokens
