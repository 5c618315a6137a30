"""Activation frames: what travels between pipeline stages (spec/runtime.md §5).

A frame is one safetensors blob (spec §5.1) holding exactly one tensor and three metadata
strings::

    __metadata__ = {"format": "infernet.activation.v1", "session": S, "position": P}
    input_ids      I64/I32 (T,)             into the first stage
    hidden_states  F32/F16/BF16 (T, C)      between stages
    logits         F32 (V,)                 out of the last stage: the last token's logits

``session`` names the sequence whose KV cache the stage extends (spec/job.md ``SessionId``:
1..64 characters of ``[A-Za-z0-9_-]``), ``position`` is the absolute position of the first of the ``T`` tokens as a
decimal string. :func:`decode_frame` accepts nothing else and raises only :class:`FrameError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from infernet_ref.errors import ValidationError
from infernet_ref.runtime.errors import FrameError, RequestError
from infernet_ref.runtime.safetensors_io import decode_tensors, encode_tensors
from infernet_ref.specs import validate_data

SCHEMA = "runtime-activation-frame"
FRAME_FORMAT = "infernet.activation.v1"
DEFAULT_MAX_FRAME_BYTES = 64 << 20
KINDS = ("input_ids", "hidden_states", "logits")
_SESSION = re.compile(r"[A-Za-z0-9_-]{1,64}")
_POSITION = re.compile(r"0|[1-9][0-9]{0,9}")
WIRE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True, slots=True)
class ActivationFrame:
    session: str
    position: int
    kind: str  # one of KINDS
    tensor: torch.Tensor

    @property
    def num_tokens(self) -> int:
        return 1 if self.kind == "logits" else int(self.tensor.shape[0])


def encode_frame(frame: ActivationFrame, wire_dtype: torch.dtype | None = None) -> bytes:
    """Serialize a frame; hidden states are cast to ``wire_dtype`` when given (spec §5.2)."""
    if frame.kind not in KINDS or not _SESSION.fullmatch(frame.session) or frame.position < 0:
        raise RequestError(f"cannot encode frame {frame.kind!r} for session {frame.session!r}")
    t = frame.tensor
    if frame.kind == "hidden_states" and wire_dtype is not None:
        t = t.to(wire_dtype)
    meta = {"format": FRAME_FORMAT, "session": frame.session, "position": str(frame.position)}
    return encode_tensors({frame.kind: t}, meta)


def _check_tensor(kind: str, t: torch.Tensor) -> None:
    ok = {
        "input_ids": t.dim() == 1 and t.dtype in (torch.int64, torch.int32),
        "hidden_states": t.dim() == 2 and t.dtype in WIRE_DTYPES.values(),
        "logits": t.dim() == 1 and t.dtype == torch.float32,
    }[kind]
    if not ok:
        raise FrameError(f"frame tensor {kind!r} has dtype {t.dtype} and shape {list(t.shape)}")
    if t.shape[0] < 1 or (kind == "hidden_states" and t.shape[1] < 1):
        raise FrameError(f"frame tensor {kind!r} is empty")


def decode_frame(data: bytes, *, max_size: int = DEFAULT_MAX_FRAME_BYTES) -> ActivationFrame:
    """Parse and check a frame received from a peer (spec §5.3).

    The header is checked by the strict safetensors parser, then against
    ``runtime-activation-frame.schema.json``, then tensor by tensor.
    """
    tensors, meta, header = decode_tensors(data, max_size=max_size)
    try:
        validate_data(header, SCHEMA)
    except ValidationError as exc:
        raise FrameError(f"activation frame header: {exc}") from None
    if set(meta) != {"format", "session", "position"} or meta["format"] != FRAME_FORMAT:
        raise FrameError(
            f"frame metadata must be exactly format/session/position, got {sorted(meta)}"
        )
    if not _SESSION.fullmatch(meta["session"]):
        raise FrameError("frame session must be 1..64 characters of [A-Za-z0-9_-]")
    if not _POSITION.fullmatch(meta["position"]):
        raise FrameError(f"frame position {meta['position'][:20]!r} is not a decimal integer")
    if len(tensors) != 1 or next(iter(tensors)) not in KINDS:
        raise FrameError(f"frame must hold exactly one of {KINDS}, got {sorted(tensors)[:4]}")
    kind, tensor = next(iter(tensors.items()))
    _check_tensor(kind, tensor)
    return ActivationFrame(meta["session"], int(meta["position"]), kind, tensor)
