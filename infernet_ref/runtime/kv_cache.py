"""Paged KV cache: block manager, cache tensors and the memory budget (spec/runtime.md §4).

Theory of operation: the cache of every layer is ``(num_blocks, block_size, Hkv, D)`` for keys
and the same for values (the layout the Triton decode kernel reads, CONTRACTS.md). A sequence
owns a *block table*, the list of block numbers holding its tokens in order; token ``i`` lives
in slot ``table[i // block_size] * block_size + i % block_size``. :class:`BlockManager` is the
sans-I/O allocator: it hands out blocks for a prompt (``allocate``), grows a sequence one token
at a time (``append``), returns blocks (``free``) and admits new sequences only while a
*watermark* of free blocks stays in reserve, so that running sequences can keep decoding before
anyone must be preempted. :func:`profile_kv_budget` decides ``num_blocks`` the way the seed's
"GPU blocks" does: run one profiling forward at the largest batch, measure what is left
(``torch.cuda.mem_get_info`` on GPU, available RAM via psutil on CPU) and divide by the bytes of
one block across all layers; the figure is reported as the maximum number of concurrent tokens.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import psutil
import torch

from infernet_ref.runtime.errors import OutOfKVBlocks, RequestError
from infernet_ref.runtime.model import Transformer


class BlockManager:
    """Allocator of fixed-size KV blocks to sequences (spec §4.2)."""

    def __init__(self, num_blocks: int, block_size: int, watermark: float = 0.01) -> None:
        if num_blocks < 1 or block_size < 1 or not 0 <= watermark < 1:
            raise RequestError(
                f"impossible KV cache: {num_blocks} blocks of {block_size}, watermark {watermark}"
            )
        self.num_blocks, self.block_size = num_blocks, block_size
        self.watermark_blocks = int(watermark * num_blocks)
        self._free = list(range(num_blocks - 1, -1, -1))  # pop() hands out block 0 first
        self._tables: dict[Hashable, list[int]] = {}
        self._lengths: dict[Hashable, int] = {}

    @property
    def num_free_blocks(self) -> int:
        return len(self._free)

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def can_allocate(self, num_tokens: int) -> bool:
        """Admission: the prompt fits and leaves the watermark free."""
        return len(self._free) - self.blocks_for(num_tokens) >= self.watermark_blocks

    def fits_ever(self, num_tokens: int) -> bool:
        return self.blocks_for(num_tokens) <= self.num_blocks - self.watermark_blocks

    def reserve(self, seq: Hashable, num_tokens: int) -> None:
        """Give a new, empty sequence the blocks for ``num_tokens`` tokens up front."""
        if seq in self._tables:
            raise RequestError(f"sequence {seq!r} already holds KV blocks")
        need = self.blocks_for(num_tokens)
        if need > len(self._free):
            raise OutOfKVBlocks(f"{num_tokens} tokens need {need} blocks, {len(self._free)} free")
        self._tables[seq] = [self._free.pop() for _ in range(need)]
        self._lengths[seq] = 0

    def allocate(self, seq: Hashable, num_tokens: int) -> list[int]:
        """Reserve the first ``num_tokens`` slots of a new sequence; returns their slots."""
        self.reserve(seq, num_tokens)
        return self.append(seq, num_tokens)

    def can_append(self, seq: Hashable, num_tokens: int = 1) -> bool:
        length = self._lengths[seq]
        extra = self.blocks_for(length + num_tokens) - len(self._tables[seq])
        return extra <= len(self._free)

    def extra_blocks(self, seq: Hashable, num_tokens: int) -> int:
        """Blocks ``seq`` (new when unknown) needs to grow by ``num_tokens``."""
        if seq not in self._tables:
            return self.blocks_for(num_tokens)
        return max(0, self.blocks_for(self._lengths[seq] + num_tokens) - len(self._tables[seq]))

    def append(self, seq: Hashable, num_tokens: int = 1) -> list[int]:
        """Reserve ``num_tokens`` more slots at the end of ``seq``; returns their slots."""
        table, start = self._tables[seq], self._lengths[seq]
        extra = max(0, self.blocks_for(start + num_tokens) - len(table))
        if extra > len(self._free):
            raise OutOfKVBlocks(
                f"sequence {seq!r} needs {extra} more blocks, {len(self._free)} free"
            )
        table.extend(self._free.pop() for _ in range(extra))
        self._lengths[seq] = start + num_tokens
        bs = self.block_size
        return [table[i // bs] * bs + i % bs for i in range(start, start + num_tokens)]

    def truncate(self, seq: Hashable, length: int) -> None:
        """Forget the tokens of ``seq`` from ``length`` on (its blocks stay reserved)."""
        if not 0 <= length <= self._lengths[seq]:
            raise RequestError(f"cannot truncate sequence {seq!r} to {length}")
        self._lengths[seq] = length

    def free(self, seq: Hashable) -> None:
        """Return every block of ``seq`` (no-op for an unknown sequence)."""
        table = self._tables.pop(seq, None)
        self._lengths.pop(seq, None)
        if table:
            self._free.extend(reversed(table))

    def block_table(self, seq: Hashable) -> list[int]:
        return self._tables[seq]

    def length(self, seq: Hashable) -> int:
        return self._lengths[seq]

    def __contains__(self, seq: object) -> bool:
        return seq in self._tables


class PagedKVCache:
    """The cache tensors of ``num_layers`` layers; ``layers[i]`` is ``(k, v)`` of layer i."""

    def __init__(
        self,
        shape: tuple[int, int, int, int, int],  # (layers, blocks, block_size, Hkv, D)
        dtype: torch.dtype,
        device: torch.device | str = "cpu",
    ) -> None:
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.layers = [(self.k[i], self.v[i]) for i in range(shape[0])]
        self.num_blocks, self.block_size = shape[1], shape[2]

    @classmethod
    def for_model(
        cls, model: Transformer, num_blocks: int, block_size: int, dtype: torch.dtype | None = None
    ) -> PagedKVCache:
        """A cache for every local layer of ``model``, on its device."""
        cfg = model.config
        shape = (
            model.num_local_layers,
            num_blocks,
            block_size,
            cfg.num_key_value_heads,
            cfg.head_dim,
        )
        return cls(shape, dtype or model.dtype, next(model.parameters()).device)


def bytes_per_block(model: Transformer, block_size: int, dtype: torch.dtype) -> int:
    """Bytes of one block of keys and values across the model's local layers."""
    cfg = model.config
    return 2 * model.num_local_layers * block_size * cfg.kv_size * dtype.itemsize


@dataclass(frozen=True, slots=True)
class KVBudget:
    """The outcome of profiling (spec §4.4)."""

    num_blocks: int  # blocks that fit in the memory left after the profiling forward
    block_size: int
    bytes_per_block: int
    free_bytes: int  # memory measured as available (GPU free or RAM available)
    activation_bytes: int  # growth during the profiling forward
    source: str  # "cuda.mem_get_info" or "psutil.available"

    @property
    def max_concurrent_tokens(self) -> int:
        return self.num_blocks * self.block_size


def measure_free_memory(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free), "cuda.mem_get_info"
    return int(psutil.virtual_memory().available), "psutil.available"


def budget_from_memory(
    free_bytes: int,
    *,
    activation_bytes: int,
    per_block: int,
    block_size: int,
    fraction: float,
    source: str,
) -> KVBudget:
    """Blocks that fit in ``fraction`` of the free memory once activations are reserved."""
    usable = int(free_bytes * fraction) - activation_bytes
    blocks = max(0, usable // per_block)
    if blocks < 1:
        raise OutOfKVBlocks(
            f"no memory for a single KV block: {free_bytes} bytes free, "
            f"{activation_bytes} needed for activations, {per_block} per block"
        )
    return KVBudget(blocks, block_size, per_block, free_bytes, activation_bytes, source)
