"""The parallelism planner: the seed's scaling decision tree as a pure function (spec/job.md §Planning).

Theory of operation. :func:`plan_job` gets the model's shape, the job's needs (prompt length,
new tokens, dtype, redundancy) and the candidate providers as announced (devices' free memory,
free KV blocks, layer range served, load, latency, reputation). It computes per-stage memory
(weights of the stage's layers, the embedding on stage 0, norm and LM head on the last stage,
and the KV cache of the job's whole context for the stage's layers rounded to whole blocks,
split over ``tp`` devices) and walks the decision tree:

1. ``single`` — one device of one provider holds everything;
2. ``tensor`` — one provider with ``tp`` devices (a power of two dividing the attention and KV
   heads) holds everything;
3. ``pipeline`` / ``hybrid`` — contiguous layer ranges over several providers, each with the
   smallest ``tp`` that fits, fewest stages first (greedy furthest reach, which is optimal for
   covering [0, L) when each provider is used once), ties broken by rank.

Providers are ranked by :func:`score` (reputation × (1 - load) / (1 + latency/100 ms)). With
redundancy r it plans r replicas on pairwise disjoint providers. Nothing here does I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from infernet_ref.node.errors import ErrorCode, PlanningError

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
MAX_TP = 64


@dataclass(frozen=True, slots=True)
class ModelShape:
    """What the planner needs to know of a Llama-family model (HF config.json names)."""

    num_layers: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    tied_embeddings: bool = False
    qkv_bias: bool = False

    @classmethod
    def from_hf_config(cls, cfg: dict[str, Any]) -> ModelShape:
        """Read the shape from a decoded ``config.json``."""
        heads = int(cfg["num_attention_heads"])
        hidden = int(cfg["hidden_size"])
        return cls(
            num_layers=int(cfg["num_hidden_layers"]),
            hidden_size=hidden,
            intermediate_size=int(cfg["intermediate_size"]),
            num_heads=heads,
            num_kv_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or hidden // heads),
            vocab_size=int(cfg["vocab_size"]),
            tied_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            qkv_bias=cfg.get("model_type") == "qwen2" or bool(cfg.get("attention_bias", False)),
        )

    def layer_params(self) -> int:
        """Parameters of one decoder layer (attention, MLP, two RMSNorm weights)."""
        q, kv, h = (
            self.num_heads * self.head_dim,
            self.num_kv_heads * self.head_dim,
            self.hidden_size,
        )
        attn = h * q + 2 * h * kv + q * h + ((q + 2 * kv) if self.qkv_bias else 0)
        return attn + 3 * h * self.intermediate_size + 2 * h

    def embed_params(self) -> int:
        return self.vocab_size * self.hidden_size

    def head_params(self) -> int:
        """Final norm plus LM head (the head is the embedding again when tied, held separately)."""
        return self.hidden_size + self.vocab_size * self.hidden_size

    def total_params(self) -> int:
        head = self.hidden_size if self.tied_embeddings else self.head_params()
        return self.embed_params() + self.num_layers * self.layer_params() + head

    def kv_bytes_per_token_layer(self, dtype_bytes: int) -> int:
        return 2 * self.num_kv_heads * self.head_dim * dtype_bytes


@dataclass(frozen=True, slots=True)
class JobNeeds:
    prompt_tokens: int
    max_new_tokens: int
    dtype: str = "float32"
    redundancy: int = 1

    @property
    def context(self) -> int:
        return self.prompt_tokens + self.max_new_tokens


@dataclass(frozen=True, slots=True)
class ProviderOffer:
    """A provider as announced in the DHT for one model (spec/dht.md provider announcement)."""

    pubkey: str
    endpoint: str
    device_memory: tuple[int, ...]  # free bytes per device
    layer_start: int = 0
    layer_end: int | None = None  # None: all layers
    kv_block_size: int = 16
    free_kv_blocks: int | None = None  # None: bounded by memory only
    load: float = 0.0  # active sessions / capacity, in [0, 1]
    latency_ms: float = 0.0
    reputation: float = 1.0  # spec/node.md §Reputation, in [0, 1]


@dataclass(frozen=True, slots=True)
class Placement:
    provider: ProviderOffer
    stage: int
    layer_start: int
    layer_end: int
    tp: int


@dataclass(frozen=True, slots=True)
class JobPlan:
    strategy: str
    replicas: tuple[tuple[Placement, ...], ...]
    notes: tuple[str, ...] = field(default=())

    def to_wire(self, num_layers: int) -> dict[str, Any]:
        """The ``Plan`` body object of job-messages.schema.json."""
        return {
            "strategy": self.strategy,
            "replicas": [[placement_wire(p, num_layers) for p in rep] for rep in self.replicas],
        }


def placement_wire(p: Placement, num_layers: int) -> dict[str, Any]:
    shard = {
        "stage": p.stage,
        "layer_start": p.layer_start,
        "layer_end": p.layer_end,
        "num_layers": num_layers,
        "tp": p.tp,
    }
    return {"shard": shard, "provider": p.provider.pubkey, "endpoint": p.provider.endpoint}


def score(p: ProviderOffer) -> float:
    """Rank of a provider: higher is better (spec/job.md §Planning step 5)."""
    load = min(max(p.load, 0.0), 1.0)
    rep = min(max(p.reputation, 0.0), 1.0)
    return rep * (1.0 - 0.9 * load) / (1.0 + max(p.latency_ms, 0.0) / 100.0)


def stage_bytes(model: ModelShape, needs: JobNeeds, a: int, b: int, tp: int) -> int:
    """Bytes per device for layers [a, b) at tensor-parallel degree ``tp``, incl. KV for the context."""
    nbytes = DTYPE_BYTES[needs.dtype]
    sharded = (b - a) * model.layer_params() * nbytes
    replicated = 0
    if a == 0:
        replicated += model.embed_params() * nbytes
    if b == model.num_layers:
        replicated += model.head_params() * nbytes
    return math.ceil(sharded / tp) + replicated + math.ceil(kv_bytes(model, needs, b - a) / tp)


def kv_bytes(model: ModelShape, needs: JobNeeds, layers: int, block_size: int = 16) -> int:
    blocks = math.ceil(needs.context / block_size)
    return blocks * block_size * layers * model.kv_bytes_per_token_layer(DTYPE_BYTES[needs.dtype])


def valid_tps(model: ModelShape, devices: int) -> list[int]:
    """Tensor-parallel degrees usable on ``devices`` devices: powers of two dividing the heads."""
    out, t = [], 1
    while t <= min(devices, MAX_TP):
        if model.num_heads % t == 0 and model.num_kv_heads % t == 0:
            out.append(t)
        t *= 2
    return out


def _fits(p: ProviderOffer, model: ModelShape, needs: JobNeeds, a: int, b: int, *, tp: int) -> bool:
    end = model.num_layers if p.layer_end is None else p.layer_end
    if a < p.layer_start or b > end or b <= a:
        return False
    if (
        p.free_kv_blocks is not None
        and math.ceil(needs.context / p.kv_block_size) > p.free_kv_blocks
    ):
        return False
    per_device = stage_bytes(model, needs, a, b, tp)
    best = sorted(p.device_memory, reverse=True)[:tp]
    return len(best) == tp and min(best) >= per_device


def _reach(p: ProviderOffer, model: ModelShape, needs: JobNeeds, a: int) -> tuple[int, int]:
    """Furthest layer end reachable from ``a`` on ``p`` and the smallest tp achieving it."""
    best_end, best_tp = a, 0
    for tp in valid_tps(model, len(p.device_memory)):
        lo, hi = a, model.num_layers if p.layer_end is None else min(p.layer_end, model.num_layers)
        while lo < hi:  # largest b in (a, hi] that fits
            mid = (lo + hi + 1) // 2
            if _fits(p, model, needs, a, mid, tp=tp):
                lo = mid
            else:
                hi = mid - 1
        if lo > best_end:
            best_end, best_tp = lo, tp
    return best_end, best_tp


def _whole(model: ModelShape, needs: JobNeeds, ranked: Sequence[ProviderOffer]) -> JobPlan | None:
    L = model.num_layers
    for tp_wanted, strategy in ((1, "single"), (None, "tensor")):
        for p in ranked:
            tps = [1] if tp_wanted == 1 else valid_tps(model, len(p.device_memory))[1:]
            for tp in tps:
                if _fits(p, model, needs, 0, L, tp=tp):
                    return JobPlan(strategy, ((Placement(p, 0, 0, L, tp),),))
    return None


#: Search nodes the exact stage search may expand before it settles for the greedy plan
#: (only swarms with many providers of different layer ranges get near it).
SEARCH_BUDGET = 50_000


def _pipeline(
    model: ModelShape, needs: JobNeeds, ranked: Sequence[ProviderOffer]
) -> JobPlan | None:
    """The fewest pipeline stages on distinct providers (spec/job.md §Planning step 4).

    From a later start a provider reaches at least as far (fewer layers, no embedding), so each
    chosen provider takes its furthest reach; what remains is which providers, in which order.
    An iterative-deepening search over that choice is exact (greedy furthest-reach is not: it can
    spend a provider that a later range needed). Candidates are tried by reach, then smaller
    ``tp``, then score, so the first plan found at the minimal depth is also the preferred one.
    """
    L = model.num_layers
    reach: dict[tuple[int, int], tuple[int, int]] = {}

    def reach_of(i: int, a: int) -> tuple[int, int]:
        if (i, a) not in reach:
            reach[(i, a)] = _reach(ranked[i], model, needs, a)
        return reach[(i, a)]

    budget = [SEARCH_BUDGET]
    failed: set[tuple[int, frozenset[int], int]] = set()

    def search(a: int, used: frozenset[int], left: int) -> list[tuple[int, int, int]] | None:
        if a >= L:
            return []
        if left == 0 or (a, used, left) in failed or budget[0] <= 0:
            return None
        budget[0] -= 1
        options = []
        for i in range(len(ranked)):
            if i not in used:
                end, tp = reach_of(i, a)
                if end > a:
                    options.append((-end, tp, i))
        for neg_end, tp, i in sorted(options):
            rest = search(-neg_end, used | {i}, left - 1)
            if rest is not None:
                return [(i, a, tp), *rest]
        failed.add((a, used, left))
        return None

    for depth in range(1, len(ranked) + 1):
        found = search(0, frozenset(), depth)
        if found is not None:
            stages = [
                Placement(ranked[i], k, a, reach_of(i, a)[0], tp)
                for k, (i, a, tp) in enumerate(found)
            ]
            return _staged_plan(stages)
        if budget[0] <= 0:
            return _greedy_pipeline(model, needs, ranked)
    return None


def _greedy_pipeline(
    model: ModelShape, needs: JobNeeds, ranked: Sequence[ProviderOffer]
) -> JobPlan | None:
    """Furthest reach first, one provider per stage: the fallback when the search budget ends."""
    L, a = model.num_layers, 0
    stages: list[Placement] = []
    used: set[str] = set()
    while a < L:
        choice: tuple[int, int, ProviderOffer] | None = None
        for p in ranked:
            if p.pubkey in used:
                continue
            end, tp = _reach(p, model, needs, a)
            if end > a and (choice is None or (end, -tp) > (choice[0], -choice[1])):
                choice = (end, tp, p)
        if choice is None:
            return None
        end, tp, p = choice
        stages.append(Placement(p, len(stages), a, end, tp))
        used.add(p.pubkey)
        a = end
    return _staged_plan(stages)


def _staged_plan(stages: list[Placement]) -> JobPlan:
    """One replica of pipeline stages: "hybrid" when any stage is tensor-parallel."""
    strategy = "hybrid" if any(s.tp > 1 for s in stages) else "pipeline"
    return JobPlan(strategy, (tuple(stages),))


def plan_replica(model: ModelShape, needs: JobNeeds, providers: Iterable[ProviderOffer]) -> JobPlan:
    """One replica by the decision tree; raises :class:`PlanningError` (4100/4101)."""
    ranked = sorted(providers, key=lambda p: (-score(p), p.pubkey))
    if not ranked:
        raise PlanningError("no providers serve this model", ErrorCode.NO_PROVIDERS)
    plan = _whole(model, needs, ranked) or _pipeline(model, needs, ranked)
    if plan is None:
        need = stage_bytes(model, needs, 0, model.num_layers, 1)
        raise PlanningError(
            f"model needs {need} bytes for a {needs.context}-token context; the {len(ranked)} providers cannot hold it",
            ErrorCode.NO_CAPACITY,
        )
    return plan


def plan_job(model: ModelShape, needs: JobNeeds, providers: Iterable[ProviderOffer]) -> JobPlan:
    """The plan for a job: ``needs.redundancy`` replicas on pairwise disjoint providers."""
    if needs.dtype not in DTYPE_BYTES:
        raise PlanningError(f"unsupported dtype {needs.dtype!r}", ErrorCode.NO_CAPACITY)
    pool = list(providers)
    replicas: list[tuple[Placement, ...]] = []
    strategy = ""
    for r in range(needs.redundancy):
        try:
            rep = plan_replica(model, needs, pool)
        except PlanningError as exc:
            if r == 0:
                raise
            raise PlanningError(
                f"only {r} disjoint replicas fit, {needs.redundancy} requested",
                ErrorCode.NO_PROVIDERS,
            ) from exc
        strategy = strategy or rep.strategy
        replicas.append(rep.replicas[0])
        taken = {pl.provider.pubkey for pl in rep.replicas[0]}
        pool = [p for p in pool if p.pubkey not in taken]
    return JobPlan(strategy, tuple(replicas))


def replacement(
    model: ModelShape,
    needs: JobNeeds,
    failed: Placement,
    providers: Iterable[ProviderOffer],
    exclude: set[str],
) -> Placement:
    """A provider for the failed stage's layer range, not in ``exclude`` (spec/job.md §Failure and replay)."""
    ranked = sorted(
        (p for p in providers if p.pubkey not in exclude), key=lambda p: (-score(p), p.pubkey)
    )
    for p in ranked:
        for tp in valid_tps(model, len(p.device_memory)):
            if _fits(p, model, needs, failed.layer_start, failed.layer_end, tp=tp):
                return Placement(p, failed.stage, failed.layer_start, failed.layer_end, tp)
    raise PlanningError(
        f"no provider can take over layers [{failed.layer_start}, {failed.layer_end})",
        ErrorCode.PROVIDER_FAILED,
    )
