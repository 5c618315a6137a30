"""Pipeline stages: layers ``[a, b)`` with a per-session paged KV cache (spec/runtime.md §5).

Theory of operation: a :class:`PipelineStage` owns one slice of the model, one paged KV cache
for its layers and a :class:`~infernet_ref.runtime.kv_cache.BlockManager` whose sequences are
*sessions*. :meth:`PipelineStage.forward` is the whole wire contract: activation-frame bytes in
(spec §5.1), activation-frame bytes out. A session is opened explicitly with
:meth:`open_session` (which reserves its KV blocks, as ``stage.open`` does in spec/job.md) or,
unless ``require_open``, implicitly by a first frame at position 0; its frames must then arrive
in order — each frame's ``position`` equals the tokens the stage already
holds for it — until :meth:`close_session`. The first stage takes ``input_ids``, the others
``hidden_states`` of width ``hidden_size``; the last stage answers with the fp32 logits of the
frame's last token. Sampling happens outside (:func:`generate_pipeline`), so a pipeline is a
chain of ``bytes -> bytes`` callables that may be local objects, other processes
(:func:`serve_stage`) or remote nodes. Every check runs before the forward: a frame that is
malformed, out of order, too long for the context, or carrying NaN is refused with a typed
error and the session's cache is left as it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from infernet_ref.errors import InfernetError
from infernet_ref.runtime import tp
from infernet_ref.runtime.engine import make_batch, profile_kv_budget
from infernet_ref.runtime.errors import (
    FrameError,
    NumericalError,
    OutOfKVBlocks,
    PromptTooLong,
    RequestError,
    SessionExists,
    SessionOutOfOrder,
    UnknownSession,
)
from infernet_ref.runtime.frames import (
    DEFAULT_MAX_FRAME_BYTES,
    ActivationFrame,
    decode_frame,
    encode_frame,
)
from infernet_ref.runtime.kv_cache import BlockManager, PagedKVCache
from infernet_ref.runtime.loader import load_model
from infernet_ref.runtime.model import Transformer
from infernet_ref.runtime.sampling import SamplingParams, resolve_seed, sample

StageFn = Callable[[bytes], bytes]


class PipelineStage:
    """One stage of a pipeline; ``forward(bytes) -> bytes`` is its network API (spec §5.4)."""

    def __init__(
        self,
        model: Transformer,
        *,
        num_blocks: int,
        block_size: int = 16,
        max_sessions: int = 64,
        wire_dtype: torch.dtype | None = None,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        require_open: bool = False,
    ) -> None:
        cfg = model.config
        self.model, self.config = model, cfg
        self.layer_range = model.layer_range
        self.is_first, self.is_last = model.is_first, model.is_last
        self.device = next(model.parameters()).device
        self.cache = PagedKVCache.for_model(model, num_blocks, block_size)
        self.blocks = BlockManager(num_blocks, block_size, watermark=0.0)
        self.max_sessions, self.wire_dtype = max_sessions, wire_dtype
        self.max_frame_bytes, self.require_open = max_frame_bytes, require_open
        self._limits: dict[str, int] = {}  # session -> most tokens it may hold
        self.last_forward_seconds = 0.0

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        layer_range: tuple[int, int],
        *,
        dtype: str | torch.dtype | None = None,
        device: str | torch.device = "cpu",
        num_blocks: int | None = None,
        block_size: int = 16,
        kv_fraction: float = 0.5,
        tp_group: Any = None,
        **kwargs: Any,
    ) -> PipelineStage:
        """Load only the stage's layers (and only this TP rank's slices when ``tp_group``)."""
        if tp_group is not None:
            model = tp.load_sharded(
                model_dir, tp_group, dtype=dtype, device=device, layer_range=layer_range
            )
        else:
            model = load_model(model_dir, dtype=dtype, device=device, layer_range=layer_range)
        if num_blocks is None:
            budget = profile_kv_budget(model, block_size=block_size, fraction=kv_fraction)
            num_blocks = budget.num_blocks
        return cls(model, num_blocks=num_blocks, block_size=block_size, **kwargs)

    @property
    def sessions(self) -> list[str]:
        return list(self._limits)

    def open_session(self, session: str, max_tokens: int) -> int:
        """Reserve KV blocks for ``max_tokens`` tokens of a new session; returns the blocks.

        Raises SessionExists (4091), PromptTooLong (4000) or OutOfKVBlocks (4100).
        """
        if session in self._limits:
            raise SessionExists(f"session {session!r} is already open")
        if not 1 <= max_tokens <= self.config.max_position_embeddings:
            raise PromptTooLong(
                f"max_tokens {max_tokens} outside [1, {self.config.max_position_embeddings}]"
            )
        if len(self._limits) >= self.max_sessions:
            raise OutOfKVBlocks(f"stage holds the maximum of {self.max_sessions} sessions")
        self.blocks.reserve(session, max_tokens)
        self._limits[session] = max_tokens
        return len(self.blocks.block_table(session))

    def close_session(self, session: str) -> None:
        """Free a session's KV blocks (idempotent)."""
        self.blocks.free(session)
        self._limits.pop(session, None)

    def forward(
        self, data: bytes, *, session: str | None = None, position: int | None = None
    ) -> bytes:
        """Run one frame through the stage: frame bytes in, frame bytes out (spec §5.4).

        ``session``/``position``, when given, are the envelope's values; a frame that disagrees
        is a FrameError (spec/job.md: 4000).
        """
        frame = decode_frame(data, max_size=self.max_frame_bytes)
        if (session is not None and frame.session != session) or (
            position is not None and frame.position != position
        ):
            raise FrameError(
                f"frame is for session {frame.session!r} at {frame.position}, "
                f"the envelope says {session!r} at {position}"
            )
        return encode_frame(self.forward_frame(frame), self.wire_dtype)

    def _check_tensor(self, frame: ActivationFrame) -> None:
        want = "input_ids" if self.is_first else "hidden_states"
        if frame.kind != want:
            raise FrameError(f"stage {self.layer_range} takes {want!r}, got {frame.kind!r}")
        t = frame.tensor
        if self.is_first and not bool(((t >= 0) & (t < self.config.vocab_size)).all()):
            raise FrameError(f"input_ids must be in [0, {self.config.vocab_size})")
        if not self.is_first:
            if t.shape[1] != self.config.hidden_size:
                raise FrameError(f"hidden_states width {t.shape[1]} != {self.config.hidden_size}")
            if not bool(torch.isfinite(t).all()):
                raise FrameError("hidden_states contain NaN or Inf")

    def _check_session(self, frame: ActivationFrame) -> None:
        s = frame.session
        known = s in self._limits
        if not known and (self.require_open or frame.position != 0):
            raise UnknownSession(f"session {s!r} is not open on stage {self.layer_range}")
        held = self.blocks.length(s) if known else 0
        if frame.position != held:
            raise SessionOutOfOrder(
                f"session {s!r} holds {held} tokens, frame starts at {frame.position}"
            )
        end = frame.position + frame.num_tokens
        limit = self._limits.get(s, self.config.max_position_embeddings)
        if end > limit:
            raise PromptTooLong(f"session {s!r} would reach {end} tokens, its limit is {limit}")
        if not known and len(self._limits) >= self.max_sessions:
            raise OutOfKVBlocks(f"stage holds the maximum of {self.max_sessions} sessions")
        grow = self.blocks.extra_blocks(s, frame.num_tokens)
        if grow > self.blocks.num_free_blocks:
            raise OutOfKVBlocks(
                f"session {s!r} needs {grow} more KV blocks, {self.blocks.num_free_blocks} free"
            )

    def forward_many(self, frames: Sequence[bytes]) -> list[bytes]:
        """Run frames of several sessions as one batch (same token count each, spec §5.4)."""
        decoded = [decode_frame(d, max_size=self.max_frame_bytes) for d in frames]
        return [encode_frame(f, self.wire_dtype) for f in self.forward_frames(decoded)]

    def forward_frame(self, frame: ActivationFrame) -> ActivationFrame:
        """The typed twin of :meth:`forward`."""
        return self.forward_frames([frame])[0]

    def _check_batch(self, frames: Sequence[ActivationFrame]) -> None:
        if not frames:
            raise RequestError("no frames to run")
        if len({f.session for f in frames}) != len(frames):
            raise RequestError("a batch holds at most one frame per session")
        if len({f.num_tokens for f in frames}) != 1:
            raise RequestError("frames batched together must carry the same number of tokens")
        for f in frames:
            self._check_tensor(f)
            self._check_session(f)
        new = sum(f.session not in self._limits for f in frames)
        if len(self._limits) + new > self.max_sessions:
            raise OutOfKVBlocks(f"stage holds the maximum of {self.max_sessions} sessions")
        grow = sum(self.blocks.extra_blocks(f.session, f.num_tokens) for f in frames)
        if grow > self.blocks.num_free_blocks:
            raise OutOfKVBlocks(
                f"the batch needs {grow} KV blocks, {self.blocks.num_free_blocks} free"
            )

    @torch.inference_mode()
    def forward_frames(self, frames: Sequence[ActivationFrame]) -> list[ActivationFrame]:
        """Check every frame, then run them in one forward; nothing changes if a check fails."""
        self._check_batch(frames)
        slots: list[int] = []
        for f in frames:
            if f.session not in self._limits:
                self.blocks.reserve(f.session, f.num_tokens)
                self._limits[f.session] = self.config.max_position_embeddings
            slots += self.blocks.append(f.session, f.num_tokens)
        lengths = [self.blocks.length(f.session) for f in frames]
        batch = make_batch(
            [list(range(f.position, n)) for f, n in zip(frames, lengths, strict=True)],
            slots,
            [self.blocks.block_table(f.session) for f in frames],
            lengths,
            self.device,
        )
        x = torch.stack([f.tensor for f in frames]).to(self.device)
        x = x.long() if self.is_first else x.to(self.model.dtype)  # (S, T) or (S, T, C)
        start = time.perf_counter()
        out = self.model(x, batch, self.cache.layers)  # (S, V) or (S, T, C)
        self.last_forward_seconds = time.perf_counter() - start
        self._drop_non_finite(frames, out)
        kind = "logits" if self.is_last else "hidden_states"
        return [
            ActivationFrame(f.session, f.position, kind, row.cpu())
            for f, row in zip(frames, out, strict=True)
        ]

    def _drop_non_finite(self, frames: Sequence[ActivationFrame], out: torch.Tensor) -> None:
        """On NaN/Inf: close the spoiled sessions, roll the others back, raise."""
        finite = torch.isfinite(out.reshape(len(frames), -1).float().sum(dim=1)).tolist()
        if all(finite):
            return
        bad = [f.session for f, ok in zip(frames, finite, strict=True) if not ok]
        for f, ok in zip(frames, finite, strict=True):
            if ok:
                self.blocks.truncate(f.session, f.position)
            else:
                self.close_session(f.session)
        raise NumericalError(f"stage {self.layer_range} produced NaN or Inf for sessions {bad}")


@dataclass(frozen=True, slots=True)
class PipelineResult:
    output: list[int]
    finish_reason: str
    seed: int
    prefill_seconds: float
    decode_seconds: float


class PipelineDriver:
    """Sans-I/O driver of one pipelined generation (spec §5.5, spec/job.md dispatch).

    ``next_frame()`` gives the ``input_ids`` frame for stage 0 (the prompt at step 0, then the
    last sampled token); the caller carries it through the stages by whatever transport it has
    and hands the last stage's logits frame to ``receive_logits()``, which samples and returns
    the token. ``restart()`` rewinds to position 0 with prompt + tokens so far (replay on fresh
    sessions after a reroute); sampling is seeded per output index, so the output is unchanged.
    """

    def __init__(
        self,
        prompt: Sequence[int],
        params: SamplingParams,
        *,
        session: str = "s0",
        eos_token_ids: Sequence[int] = (),
    ) -> None:
        if not prompt:
            raise RequestError("the prompt is empty")
        self.prompt, self.params, self.session = list(prompt), params, session
        self.seed = resolve_seed(params.seed)
        self.eos = set(eos_token_ids)
        self.output: list[int] = []
        self.finish_reason: str | None = None
        self.position = 0
        self._pending = list(prompt)
        self._generator = torch.Generator()

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def next_frame(self) -> bytes:
        if self.done:
            raise RequestError("the generation is finished")
        ids = torch.tensor(self._pending, dtype=torch.int64)
        return encode_frame(ActivationFrame(self.session, self.position, "input_ids", ids))

    def receive_logits(self, data: bytes) -> int:
        """Sample the next token from the last stage's reply; returns it."""
        frame = decode_frame(data)
        expect = (self.session, self.position)
        if frame.kind != "logits" or (frame.session, frame.position) != expect:
            raise FrameError(
                f"expected logits for {expect}, got {frame.kind!r} for "
                f"{(frame.session, frame.position)}"
            )
        p = self.params
        token = int(
            sample(
                frame.tensor.unsqueeze(0), [p], [self.seed], [len(self.output)], self._generator
            )[0]
        )
        self.position += len(self._pending)
        self._pending = [token]
        self.output.append(token)
        if token in p.stop_token_ids:
            self.finish_reason = "stop"
        elif token in self.eos and not p.ignore_eos:
            self.finish_reason = "eos"
        elif len(self.output) >= p.max_tokens:
            self.finish_reason = "length"
        return token

    def restart(self) -> None:
        """Replay from position 0 on fresh sessions: prompt + every token so far."""
        self.position, self._pending = 0, self.prompt + self.output


def generate_pipeline(
    stages: Sequence[StageFn],
    prompt: Sequence[int],
    params: SamplingParams,
    *,
    session: str = "s0",
    eos_token_ids: Sequence[int] = (),
) -> PipelineResult:
    """Drive a chain of stages (each ``bytes -> bytes``) to the end of the generation."""
    driver = PipelineDriver(prompt, params, session=session, eos_token_ids=eos_token_ids)
    timings = [0.0, 0.0]
    while not driver.done:
        start = time.perf_counter()
        data = driver.next_frame()
        for stage in stages:
            data = stage(data)
        first = driver.position == 0
        driver.receive_logits(data)
        timings[0 if first else 1] += time.perf_counter() - start
    return PipelineResult(
        driver.output, driver.finish_reason or "length", driver.seed, timings[0], timings[1]
    )


def serve_stage(
    conn: Any, model_dir: str, layer_range: tuple[int, int], dtype: str | None, num_blocks: int
) -> None:
    """Child-process loop: frame bytes in over ``conn``, frame bytes (or an error) out.

    Replies are ``b"OK" + frame`` or ``b"ER" + message``; an empty message ends the loop.
    """
    torch.set_num_threads(1)
    stage = PipelineStage.load(model_dir, layer_range, dtype=dtype, num_blocks=num_blocks)
    conn.send_bytes(b"OK")
    while True:
        data = conn.recv_bytes()
        if not data:
            break
        try:
            conn.send_bytes(b"OK" + stage.forward(data))
        except InfernetError as exc:
            conn.send_bytes(b"ER" + f"{type(exc).__name__}: {exc}".encode())
    conn.close()


def remote_stage(conn: Any) -> StageFn:
    """A ``bytes -> bytes`` callable that forwards to a :func:`serve_stage` process."""

    def call(data: bytes) -> bytes:
        conn.send_bytes(data)
        reply: bytes = conn.recv_bytes()
        if reply[:2] != b"OK":
            raise RequestError(f"remote stage failed: {reply[2:].decode(errors='replace')}")
        return reply[2:]

    return call
