"""Generation engine: prefill, decode and continuous batching (spec/runtime.md §8).

Theory of operation: requests wait in a FIFO queue. Each :meth:`Engine.step` first *admits*
waiting requests while the batch has room and the block manager's watermark allows, running one
prefill forward per admitted prompt and sampling its first token; then it runs one *decode*
forward over every sequence that was already running, so sequences join and leave the batch at
token granularity (continuous batching). When a running sequence needs a new block and none is
free, the youngest running sequence is preempted: its blocks are freed and it goes back to the
front of the queue to be recomputed from prompt + tokens so far (sampling is seeded per output
index, so the output is unchanged). A request finishes on ``max_tokens``, a stop token, EOS, or the
end of the context. Logits that are not finite raise :class:`NumericalError`.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psutil
import torch

from infernet_ref.runtime.errors import NumericalError, OutOfKVBlocks, PromptTooLong, RequestError
from infernet_ref.runtime.kv_cache import (
    BlockManager,
    KVBudget,
    PagedKVCache,
    budget_from_memory,
    bytes_per_block,
    measure_free_memory,
)
from infernet_ref.runtime.model import Batch, Transformer
from infernet_ref.runtime.sampling import SamplingParams, resolve_seed, sample

TokenSync = Callable[[torch.Tensor], torch.Tensor]


@dataclass(slots=True, eq=False)
class Request:
    id: int
    prompt: list[int]
    params: SamplingParams
    seed: int
    output: list[int] = field(default_factory=list)
    finish_reason: str | None = None

    @property
    def tokens(self) -> list[int]:
        return self.prompt + self.output


@dataclass(frozen=True, slots=True)
class Completion:
    request_id: int
    prompt: list[int]
    output: list[int]
    finish_reason: str
    seed: int


@dataclass(slots=True)
class Stats:
    prefill_tokens: int = 0
    prefill_seconds: float = 0.0
    decode_tokens: int = 0
    decode_seconds: float = 0.0
    decode_steps: int = 0
    preemptions: int = 0


def make_batch(
    positions: Sequence[Sequence[int]],
    slots: Sequence[int],
    tables: Sequence[Sequence[int]],
    lengths: Sequence[int],
    device: torch.device,
) -> Batch:
    """Build a :class:`Batch` from Python lists (one row per sequence, equal T)."""
    width = max(len(t) for t in tables)
    padded = [list(t) + [0] * (width - len(t)) for t in tables]
    return Batch(
        positions=torch.tensor(positions, dtype=torch.int64, device=device),
        slots=torch.tensor(slots, dtype=torch.int64, device=device),
        block_tables=torch.tensor(padded, dtype=torch.int32, device=device),
        context_lens=torch.tensor(lengths, dtype=torch.int32, device=device),
        max_context=max(lengths),
        from_start=all(p[0] == 0 for p in positions),
    )


def check_finite(x: torch.Tensor, what: str) -> None:
    """Raise NumericalError when ``x`` holds NaN or Inf (one reduction: NaN/Inf propagate)."""
    if not math.isfinite(float(x.float().sum())):
        raise NumericalError(f"{what} contain NaN or Inf")


@torch.inference_mode()
def profile_kv_budget(
    model: Transformer,
    *,
    block_size: int = 16,
    profile_tokens: int = 512,
    fraction: float = 0.9,
    kv_dtype: torch.dtype | None = None,
) -> KVBudget:
    """Run one profiling prefill of ``profile_tokens`` and size the cache from what is left."""
    cfg, device = model.config, next(model.parameters()).device
    dtype = kv_dtype or model.dtype
    tokens = min(profile_tokens, cfg.max_position_embeddings)
    nblocks = -(-tokens // block_size)
    scratch = PagedKVCache.for_model(model, nblocks, block_size, dtype)
    batch = make_batch(
        [list(range(tokens))], list(range(tokens)), [list(range(nblocks))], [tokens], device
    )
    x = (
        torch.zeros(1, tokens, dtype=torch.int64, device=device)
        if model.is_first
        else torch.zeros(1, tokens, cfg.hidden_size, dtype=model.dtype, device=device)
    )
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        model(x, batch, scratch.layers)
        activation = torch.cuda.max_memory_allocated(device) - before
    else:
        rss = psutil.Process().memory_info().rss
        model(x, batch, scratch.layers)
        activation = max(0, psutil.Process().memory_info().rss - rss)
    del scratch
    free, source = measure_free_memory(device)
    per_block = bytes_per_block(model, block_size, dtype)
    return budget_from_memory(
        free,
        activation_bytes=activation,
        per_block=per_block,
        block_size=block_size,
        fraction=fraction,
        source=source,
    )


class Engine:
    """Continuous-batching generation over one model (whole, or one TP rank of it)."""

    def __init__(
        self,
        model: Transformer,
        *,
        num_blocks: int,
        block_size: int = 16,
        max_num_seqs: int = 16,
        watermark: float = 0.01,
        token_sync: TokenSync | None = None,
    ) -> None:
        if not (model.is_first and model.is_last):
            raise RequestError("the engine needs a whole model; use PipelineStage for a slice")
        cfg = model.config
        self.model, self.max_num_seqs, self.token_sync = model, max_num_seqs, token_sync
        self.device = next(model.parameters()).device
        self.max_context = cfg.max_position_embeddings
        self.cache = PagedKVCache.for_model(model, num_blocks, block_size)
        self.blocks = BlockManager(num_blocks, block_size, watermark)
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.stats = Stats()
        self._ids = itertools.count()
        self.eos = set(cfg.eos_token_ids)
        self._generator = torch.Generator(device=self.device)

    def add_request(self, prompt: Sequence[int], params: SamplingParams) -> int:
        """Queue a prompt; checks it against the vocabulary, context and cache first."""
        ids = [int(t) for t in prompt]
        vocab = self.model.config.vocab_size
        if not ids:
            raise RequestError("the prompt is empty")
        if not all(0 <= t < vocab for t in ids):
            raise RequestError(f"prompt token ids must be in [0, {vocab})")
        total = len(ids) + params.max_tokens
        if total > self.max_context:
            raise PromptTooLong(
                f"prompt of {len(ids)} tokens + {params.max_tokens} new tokens exceeds the "
                f"context of {self.max_context}"
            )
        if not self.blocks.fits_ever(total):
            raise OutOfKVBlocks(f"{total} tokens can never fit in {self.blocks.num_blocks} blocks")
        req = Request(next(self._ids), ids, params, resolve_seed(params.seed))
        self.waiting.append(req)
        return req.id

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def _finish_check(self, req: Request, token: int) -> None:
        req.output.append(token)
        p = req.params
        if token in p.stop_token_ids:
            req.finish_reason = "stop"
        elif token in self.eos and not p.ignore_eos:
            req.finish_reason = "eos"
        elif len(req.output) >= p.max_tokens:
            req.finish_reason = "length"

    def _sample(self, logits: torch.Tensor, reqs: Sequence[Request]) -> list[int]:
        check_finite(logits, "logits")
        tokens = sample(
            logits,
            [r.params for r in reqs],
            [r.seed for r in reqs],
            [len(r.output) for r in reqs],
            self._generator,
        )
        if self.token_sync is not None:
            tokens = self.token_sync(tokens)
        out: list[int] = tokens.tolist()
        return out

    def _prefill(self, req: Request) -> None:
        ids = req.tokens
        slots = self.blocks.allocate(req.id, len(ids))
        batch = make_batch(
            [list(range(len(ids)))],
            slots,
            [self.blocks.block_table(req.id)],
            [len(ids)],
            self.device,
        )
        x = torch.tensor([ids], dtype=torch.int64, device=self.device)
        start = time.perf_counter()
        logits = self.model(x, batch, self.cache.layers)
        self._finish_check(req, self._sample(logits, [req])[0])
        self.stats.prefill_seconds += time.perf_counter() - start
        self.stats.prefill_tokens += len(ids)

    def _preempt_for(self, req: Request) -> bool:
        """Free the youngest other running sequence until ``req`` can grow; False if alone."""
        while not self.blocks.can_append(req.id):
            victims = [r for r in self.running if r is not req]
            if not victims:
                return False
            victim = max(victims, key=lambda r: r.id)
            self.running.remove(victim)
            self.blocks.free(victim.id)
            self.waiting.appendleft(victim)
            self.stats.preemptions += 1
        return True

    def _decode(self, reqs: list[Request]) -> None:
        slot_of: dict[int, int] = {}
        for req in reqs:  # grow one at a time so that each check sees the blocks taken so far
            if req not in self.running:
                continue  # preempted to make room for an earlier one
            if not self._preempt_for(req):
                raise OutOfKVBlocks(f"request {req.id} cannot grow: the cache is exhausted")
            slot_of[req.id] = self.blocks.append(req.id)[0]
        reqs = [r for r in reqs if r in self.running]
        if not reqs:
            return
        slots = [slot_of[r.id] for r in reqs]
        lengths = [self.blocks.length(r.id) for r in reqs]
        batch = make_batch(
            [[n - 1] for n in lengths],
            slots,
            [self.blocks.block_table(r.id) for r in reqs],
            lengths,
            self.device,
        )
        x = torch.tensor([[r.output[-1]] for r in reqs], dtype=torch.int64, device=self.device)
        start = time.perf_counter()
        logits = self.model(x, batch, self.cache.layers)
        for req, tok in zip(reqs, self._sample(logits, reqs), strict=True):
            self._finish_check(req, tok)
        self.stats.decode_seconds += time.perf_counter() - start
        self.stats.decode_tokens += len(reqs)
        self.stats.decode_steps += 1

    @torch.inference_mode()
    def step(self) -> list[Completion]:
        """Admit and prefill what fits, decode the rest once; return finished requests."""
        decoding = list(self.running)
        while (
            self.waiting
            and len(self.running) < self.max_num_seqs
            and self.blocks.can_allocate(len(self.waiting[0].tokens) + 1)
        ):
            req = self.waiting.popleft()
            self.running.append(req)
            self._prefill(req)
        if decoding:
            self._decode(decoding)
        if not self.running and self.waiting:
            raise OutOfKVBlocks("the next request does not fit in an empty cache")
        done = [r for r in self.running if r.finish_reason is not None]
        for req in done:
            self.running.remove(req)
            self.blocks.free(req.id)
        return [Completion(r.id, r.prompt, r.output, r.finish_reason or "", r.seed) for r in done]

    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingParams | Sequence[SamplingParams]
    ) -> list[Completion]:
        """Run prompts to completion with continuous batching; results in prompt order."""
        plist = [params] * len(prompts) if isinstance(params, SamplingParams) else list(params)
        ids = [self.add_request(p, sp) for p, sp in zip(prompts, plist, strict=True)]
        results: dict[int, Completion] = {}
        while self.has_unfinished():
            for c in self.step():
                results[c.request_id] = c
        return [results[i] for i in ids]
