"""The sandboxed model worker: ``python -m infernet_ref.node.worker`` (spec/node-worker.md §Worker).

Theory of operation: a provider starts one worker per served layer range through an executor
(:mod:`infernet_ref.node.sandbox`); the worker loads only those layers of the checkpoint at
``--model-dir`` (read-only inside the sandbox) into a runtime :class:`PipelineStage` and then
serves framed requests on stdin/stdout, one reply per request:

- ``ping`` — liveness plus what is loaded (layers, TP size, KV blocks free, open sessions);
- ``stage.open`` / ``stage.forward`` / ``stage.close`` — pipeline-stage sessions; the payload of
  ``stage.forward`` is one activation frame (spec/runtime.md §5.1) and so is its reply;
- ``generate`` — whole-model generation (only when the worker holds every layer), greedy or
  seeded sampling, so redundant providers can be compared token for token.

Failures are typed replies (spec/node-worker.md §Errors) and never end the session; only a
framing error (the channel lost sync) or end of input stops the worker. With ``--tp N`` the
worker is rank 0 of a gloo group of N processes inside the same sandbox (:mod:`.sandbox.ranks`).
A model that fails to load leaves the worker answering ``ping`` (with ``model_error``) and
refusing model operations with ``model_unavailable``, so the provider can report why.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import sys
from dataclasses import dataclass
from typing import Any

from infernet_ref.node.sandbox.channel import Dispatch, OpError, Reply, serve, take_stdout

MAX_SESSIONS = 64
DEFAULT_KV_BLOCKS = 256
MAX_PROMPT = 1 << 16
ERROR_CODES = {
    "UnknownSession": "unknown_session",
    "SessionExists": "duplicate",
    "SessionOutOfOrder": "bad_frame",
    "FrameError": "bad_frame",
    "PromptTooLong": "too_long",
    "OutOfKVBlocks": "no_capacity",
    "NumericalError": "numerical",
    "RequestError": "bad_request",
}


@dataclass(frozen=True, slots=True)
class WorkerArgs:
    model_dir: str | None
    layers: tuple[int, int | None]
    tp: int
    dtype: str
    kv_blocks: int
    max_payload: int
    rank: int
    world: int
    port: int
    device: str = "cpu"


def parse_args(argv: list[str]) -> WorkerArgs:
    """Parse the worker command line (spec/node-worker.md §Worker)."""
    p = argparse.ArgumentParser(prog="infernet-worker")
    p.add_argument("--model-dir")
    p.add_argument("--layers", default="0:")
    p.add_argument("--tp", type=int, default=1)
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    p.add_argument("--kv-blocks", type=int, default=DEFAULT_KV_BLOCKS)
    p.add_argument("--max-payload", type=int, default=1 << 30)
    p.add_argument("--rank", type=int, default=0)
    p.add_argument("--world", type=int, default=0)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (spec/node-worker.md)")
    a = p.parse_args(argv)
    start, _, end = a.layers.partition(":")
    layers = (int(start or 0), int(end) if end else None)
    return WorkerArgs(
        a.model_dir,
        layers,
        a.tp,
        a.dtype,
        a.kv_blocks,
        a.max_payload,
        a.rank,
        a.world or a.tp,
        a.port,
        a.device,
    )


def _runtime_error(exc: Exception) -> OpError:
    for cls in type(exc).__mro__:
        if cls.__name__ in ERROR_CODES:
            return OpError(ERROR_CODES[cls.__name__], f"{type(exc).__name__}: {exc}")
    return OpError("invalid", f"{type(exc).__name__}: {exc}")


def _int(h: dict[str, Any], key: str, lo: int, hi: int, default: int | None = None) -> int:
    v = h.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise OpError("bad_request", f"{key!r} must be an integer in [{lo}, {hi}]")
    return v


def _num(h: dict[str, Any], key: str, lo: float, hi: float, default: float) -> float:
    v = h.get(key, default)
    if not isinstance(v, int | float) or isinstance(v, bool) or not lo <= v <= hi:
        raise OpError("bad_request", f"{key!r} must be a number in [{lo}, {hi}]")
    return float(v)


def split_batch(payload: bytes, count: int) -> list[bytes]:
    """The ``count`` length-prefixed frames of a batch payload (spec/node-worker.md)."""
    out, at = [], 0
    for _ in range(count):
        if at + 8 > len(payload):
            raise OpError("bad_frame", "batch payload ends inside a length prefix")
        n = int.from_bytes(payload[at : at + 8], "little")
        if n > len(payload) - at - 8:
            raise OpError("bad_frame", "batch payload ends inside a frame")
        out.append(payload[at + 8 : at + 8 + n])
        at += 8 + n
    if at != len(payload):
        raise OpError("bad_frame", f"{len(payload) - at} bytes after the batch's last frame")
    return out


def join_batch(frames: list[bytes]) -> bytes:
    """The inverse of :func:`split_batch`."""
    return b"".join(len(f).to_bytes(8, "little") + f for f in frames)


def _sampling(h: dict[str, Any]) -> tuple[Any, int]:
    """One step's sampling request (spec/node-worker.md ``sample_index``): the runtime's
    SamplingParams and the output index to sample."""
    from infernet_ref.runtime.sampling import SamplingParams  # noqa: PLC0415

    params = SamplingParams(
        max_tokens=1,
        temperature=_num(h, "temperature", 0.0, 100.0, 0.0),
        top_k=_int(h, "top_k", 0, 1 << 20, 0),
        top_p=_num(h, "top_p", 1e-9, 1.0, 1.0),
        seed=_int(h, "seed", 0, (1 << 53) - 1, 0),
    )
    return params, _int(h, "sample_index", 0, 65535, 0)


def _sample_rows(rows: list[Any], requests: list[tuple[Any, int]]) -> list[int]:
    """Sample one token per logits row (each (V,) or (1, V), taken in fp32), row i with
    ``requests[i]``, seeded per (seed, index) as spec/job.md §Determinism says."""
    import torch  # noqa: PLC0415

    from infernet_ref.runtime.sampling import sample  # noqa: PLC0415

    logits = torch.stack([r.float().reshape(-1) for r in rows])
    params = [p for p, _ in requests]
    seeds = [p.seed for p in params]
    return [int(t) for t in sample(logits, params, seeds, [i for _, i in requests]).tolist()]


def _frame_session(payload: bytes) -> str | None:
    """The ``session`` in a frame's safetensors metadata; None when the header is unreadable.

    A cheap look at the header only (spec/runtime.md §5.3 frames); full validation stays with
    :func:`~infernet_ref.runtime.frames.decode_frame`.
    """
    if len(payload) < 8:
        return None
    n = int.from_bytes(payload[:8], "little")
    if n > len(payload) - 8:
        return None
    try:
        header = json.loads(payload[8 : 8 + n])
    except (ValueError, UnicodeDecodeError):
        return None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    session = meta.get("session") if isinstance(meta, dict) else None
    return session if isinstance(session, str) else None


def _session(h: dict[str, Any]) -> str:
    s = h.get("session")
    if not isinstance(s, str) or not 1 <= len(s) <= 128 or not all(33 <= ord(c) <= 126 for c in s):
        raise OpError("bad_request", "'session' must be 1-128 printable ASCII characters")
    return s


class StageWorker:
    """Rank 0's request handler around one PipelineStage."""

    def __init__(self, args: WorkerArgs) -> None:
        self.args = args
        self.stage: Any = None
        self.model_error: str | None = None
        self.sessions: set[str] = set()
        self.followers: list[Any] = []
        self.tp = args.tp
        self._load()

    def _load(self) -> None:
        if self.args.model_dir is None:
            self.model_error = "no --model-dir given"
            return
        try:
            self.stage = load_stage(self.args)
        except Exception as exc:
            self.model_error = f"{type(exc).__name__}: {exc}"

    def _broadcast(self, kind: str, data: bytes) -> None:
        if self.tp > 1:
            from infernet_ref.node.sandbox.ranks import Command, broadcast_command  # noqa: PLC0415

            broadcast_command(Command[kind], data)

    def _forward(self, data: bytes) -> bytes:
        self._broadcast("FORWARD", data)
        out: bytes = self.stage.forward(data)
        return out

    def _forward_sample(self, data: bytes, h: dict[str, Any]) -> int:
        """A last stage's step that samples output ``sample_index`` itself (spec/node-worker.md):
        the fp32 logits, seeded per (seed, index) as spec/job.md §Determinism says."""
        from infernet_ref.runtime.frames import decode_frame  # noqa: PLC0415

        if not self.stage.is_last:
            raise OpError("bad_request", "only the last stage samples")
        request = _sampling(h)
        self._broadcast("FORWARD", data)
        frame = self.stage.forward_frame(decode_frame(data, max_size=self.args.max_payload))
        return _sample_rows([frame.tensor], [request])[0]

    def _forward_batch(self, h: dict[str, Any], payload: bytes) -> Reply:
        """Several sessions' frames in one forward (spec/node-worker.md stage.forward_batch)."""
        from infernet_ref.runtime.frames import decode_frame, encode_frame  # noqa: PLC0415

        if self.tp > 1:
            raise OpError("bad_request", "batched forwards need a worker without followers")
        sessions: list[str] = h["sessions"]  # the schema checked the shape
        datas = split_batch(payload, len(sessions))
        frames = []
        for s, data in zip(sessions, datas, strict=True):
            if s not in self.sessions:
                raise OpError("unknown_session", f"session {s!r} is not open")
            frame = decode_frame(data, max_size=self.args.max_payload)
            if frame.session != s:
                raise OpError("bad_frame", f"frame does not belong to session {s!r}")
            frames.append(frame)
        samples = h.get("samples")
        if samples is not None and (not self.stage.is_last or len(samples) != len(sessions)):
            raise OpError("bad_request", "samples: one per session, on the last stage only")
        requests = None if samples is None else [_sampling(x) for x in samples]  # before running
        outs = self.stage.forward_frames(frames)  # checks every frame before running any
        reply: dict[str, Any] = {"sessions": sessions, "seconds": self.stage.last_forward_seconds}
        if requests is None:
            return reply, join_batch([encode_frame(o, self.stage.wire_dtype) for o in outs])
        reply["tokens"] = _sample_rows([o.tensor for o in outs], requests)
        return reply, b""

    def _open(self, session: str, max_tokens: int) -> int:
        # checked here first so a refusal never reaches the followers (they must stay in step)
        if session in self.stage.sessions:
            raise OpError("duplicate", f"session {session!r} is already open")
        blocks: int = self.stage.open_session(session, max_tokens)
        self._broadcast("OPEN_SESSION", f"{session} {max_tokens}".encode("ascii"))
        self.sessions.add(session)
        return blocks

    def _close(self, session: str) -> None:
        self.sessions.discard(session)
        self._broadcast("CLOSE_SESSION", session.encode("ascii"))
        self.stage.close_session(session)

    def ping(self) -> dict[str, Any]:
        info: dict[str, Any] = {"program": "worker", "tp": self.tp, "sessions": len(self.sessions)}
        if self.stage is None:
            info["model_error"] = self.model_error
            return info
        a, b = self.stage.layer_range
        info.update(
            layers=[a, b],
            first=self.stage.is_first,
            last=self.stage.is_last,
            free_blocks=self.stage.blocks.num_free_blocks,
            num_layers=self.stage.config.num_hidden_layers,
        )
        return info

    def dispatch(self, op: str, h: dict[str, Any], payload: bytes) -> Reply:
        if op == "ping":
            return self.ping(), b""
        if self.stage is None:
            raise OpError("model_unavailable", f"no model loaded: {self.model_error}")
        try:
            return self._dispatch_model(op, h, payload)
        except OpError:
            raise
        except Exception as exc:
            if type(exc).__module__.startswith("infernet_ref"):
                raise _runtime_error(exc) from exc
            raise

    def _dispatch_model(self, op: str, h: dict[str, Any], payload: bytes) -> Reply:
        if op == "stage.open":
            s = _session(h)
            context = self.stage.config.max_position_embeddings
            blocks = self._open(s, _int(h, "max_tokens", 1, context, context))
            return {
                "session": s,
                "blocks": blocks,
                "free_blocks": self.stage.blocks.num_free_blocks,
            }, b""
        if op == "stage.forward":
            s = _session(h)
            if s not in self.sessions:
                raise OpError("unknown_session", f"session {s!r} is not open")
            # Without followers the stage's own decode validates the frame fully, so only the
            # session is read here; with followers the frame is checked before they see it.
            if self.tp > 1 or _frame_session(payload) != s:
                from infernet_ref.runtime.frames import decode_frame  # noqa: PLC0415

                if decode_frame(payload, max_size=self.args.max_payload).session != s:
                    raise OpError("bad_frame", f"frame does not belong to session {s!r}")
            if "sample_index" in h:
                token = self._forward_sample(payload, h)
                return {
                    "session": s,
                    "seconds": self.stage.last_forward_seconds,
                    "token": token,
                }, b""
            out = self._forward(payload)
            return {"session": s, "seconds": self.stage.last_forward_seconds}, out
        if op == "stage.forward_batch":
            return self._forward_batch(h, payload)
        if op == "stage.close":
            s = _session(h)
            known = s in self.sessions
            self._close(s)
            return {"session": s, "closed": known}, b""
        if op == "generate":
            return self.generate(h), b""
        raise OpError("unknown_op", f"worker does not implement {op!r}")

    def generate(self, h: dict[str, Any]) -> dict[str, Any]:
        from infernet_ref.runtime.pipeline import generate_pipeline  # noqa: PLC0415
        from infernet_ref.runtime.sampling import SamplingParams  # noqa: PLC0415

        if not (self.stage.is_first and self.stage.is_last):
            raise OpError("bad_request", "generate needs a worker that holds every layer")
        ids = h.get("prompt_ids")
        vocab = self.stage.config.vocab_size
        if (
            not isinstance(ids, list)
            or not 1 <= len(ids) <= MAX_PROMPT
            or not all(
                isinstance(t, int) and not isinstance(t, bool) and 0 <= t < vocab for t in ids
            )
        ):
            raise OpError(
                "bad_request", f"'prompt_ids' must be 1..{MAX_PROMPT} ids in [0, {vocab})"
            )
        # the seed goes back in the reply, so it must fit canonical JSON (spec/encoding.md)
        seed = secrets.randbits(53) if h.get("seed") is None else _int(h, "seed", 0, (1 << 53) - 1)
        params = SamplingParams(
            max_tokens=_int(h, "max_new_tokens", 1, 1 << 16, 16),
            temperature=_num(h, "temperature", 0.0, 100.0, 0.0),
            top_k=_int(h, "top_k", 0, 1 << 20, 0),
            top_p=_num(h, "top_p", 1e-9, 1.0, 1.0),
            seed=seed,
        )
        session = f"generate-{secrets.token_hex(8)}"
        self._open(session, len(ids) + params.max_tokens)
        try:
            res = generate_pipeline(
                [self._forward],
                ids,
                params,
                session=session,
                eos_token_ids=self.stage.config.eos_token_ids,
            )
        finally:
            self._close(session)
        return {
            "output_ids": res.output,
            "finish_reason": res.finish_reason,
            "seed": res.seed,
            "prefill_seconds": res.prefill_seconds,
            "decode_seconds": res.decode_seconds,
        }

    def stop(self) -> None:
        if self.tp > 1 and self.stage is not None:
            from infernet_ref.node.sandbox.ranks import Command, broadcast_command  # noqa: PLC0415

            with contextlib.suppress(Exception):
                broadcast_command(Command.STOP)
        for proc in self.followers:
            if self.stage is None:  # the group never formed: nothing will tell them to stop
                proc.kill()
            with contextlib.suppress(Exception):
                proc.wait(timeout=10)
            if proc.poll() is None:
                proc.kill()


def load_stage(args: WorkerArgs) -> Any:
    """Load this rank's PipelineStage (joining the TP group first when ``world > 1``)."""
    import torch  # noqa: PLC0415 - the worker's heavy import, after the channel is up

    from infernet_ref.runtime.config import load_config  # noqa: PLC0415
    from infernet_ref.runtime.pipeline import PipelineStage  # noqa: PLC0415

    assert args.model_dir is not None
    torch.set_num_threads(1)
    cfg = load_config(args.model_dir)
    start, end = args.layers
    layer_range = (start, cfg.num_hidden_layers if end is None else end)
    group = None
    if args.world > 1:
        import torch.distributed as dist  # noqa: PLC0415

        from infernet_ref.node.sandbox.ranks import init_group  # noqa: PLC0415

        init_group(args.rank, args.world, args.port)
        group = dist.group.WORLD
    from infernet_ref.node.sandbox.spec import DEVICE  # noqa: PLC0415

    if not DEVICE.fullmatch(args.device):
        raise OpError("bad_request", f"device {args.device!r} is not cpu, cuda or cuda:N")
    if args.device != "cpu" and args.world > 1:
        raise OpError("bad_request", "tensor parallelism on CUDA is not built in this version")
    return PipelineStage.load(
        args.model_dir,
        layer_range,
        dtype=args.dtype,
        device=args.device,
        num_blocks=args.kv_blocks,
        tp_group=group,
        max_sessions=MAX_SESSIONS,
    )


def build_dispatch(argv: list[str]) -> Dispatch:
    """Build rank 0's dispatcher (used directly by the in-process executor)."""
    args = parse_args(argv)
    if args.tp > 1:
        raise OpError("bad_request", "tensor parallelism needs a process sandbox, not in-process")
    return StageWorker(args).dispatch


def _start_followers(args: WorkerArgs, argv: list[str]) -> tuple[WorkerArgs, list[Any]]:
    from dataclasses import replace  # noqa: PLC0415

    from infernet_ref.node.sandbox.ranks import free_port, spawn_ranks  # noqa: PLC0415

    port = free_port()
    return replace(args, port=port, world=args.tp), spawn_ranks(args.tp, port, argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point (spec/node-worker.md §Worker)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.rank > 0:  # a tensor-parallel follower: no channel, just collectives
        from infernet_ref.node.sandbox.ranks import follower_loop  # noqa: PLC0415

        stage = load_stage(args)
        follower_loop(stage)
        return 0
    channel = take_stdout()
    followers: list[Any] = []
    if args.tp > 1 and args.model_dir is not None:
        args, followers = _start_followers(args, argv)
    worker = StageWorker(args)
    worker.followers = followers
    try:
        serve(worker.dispatch, sys.stdin.buffer, channel, max_payload=args.max_payload)
    finally:
        worker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
