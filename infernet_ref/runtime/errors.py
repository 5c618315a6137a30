"""Typed errors of the inference runtime (spec/runtime.md §7 "Errors").

Every failure the runtime raises on purpose is an :class:`RuntimeLayerError`, itself an
:class:`~infernet_ref.errors.InfernetError`. The split says who is at fault:

- the *checkpoint* (a model folder someone handed us): :class:`UnsupportedModel`,
  :class:`CheckpointError` and its subclasses;
- the *caller* of the API: :class:`RequestError` (prompt too long, bad sampling parameters,
  impossible tensor-parallel size, unknown session);
- a *peer* that sent an activation frame: :class:`FrameError`, a
  :class:`~infernet_ref.errors.RemoteProtocolError` carrying the job-protocol error code;
- the *numerics*: :class:`NumericalError` (NaN or Inf in activations or logits).

Each class carries ``job_error_code``, the spec/job.md error code a node answers with when the
error ends a request (4000 bad_request, 4041 unknown_session, 4090 invalid_state, 4091
duplicate, 4100 no_capacity, 5000 internal). All of them are raised before the expensive work they would spoil (shape checks run before a
single weight byte is copied; a prompt is checked against the context before any forward).
"""

from __future__ import annotations

from infernet_ref.errors import InfernetError, LocalProtocolError, RemoteProtocolError

# Job-protocol error code carried by FrameError (spec/job.md "bad_request").
FRAME_ERROR_CODE = 4000


class RuntimeLayerError(InfernetError):
    """Base class of every error raised by :mod:`infernet_ref.runtime`."""

    job_error_code = 5000


class UnsupportedModel(RuntimeLayerError):
    """The checkpoint's architecture or an option of it is outside the supported family."""


class CheckpointError(RuntimeLayerError):
    """The checkpoint folder is unusable (bad config, bad safetensors, wrong tensors)."""


class TruncatedCheckpoint(CheckpointError):
    """A safetensors file ends before the data its header announces."""


class MissingTensor(CheckpointError):
    """A tensor the model needs is absent from every safetensors file of the checkpoint."""


class TensorShapeMismatch(CheckpointError):
    """A tensor is present but its shape disagrees with the configuration."""


class RequestError(RuntimeLayerError, LocalProtocolError):
    """The caller asked for something impossible (prompt too long, bad parameters, bad TP size)."""

    job_error_code = 4000


class UnknownSession(RequestError):
    """A pipeline-stage session that was never opened (or already closed)."""

    job_error_code = 4041


class SessionExists(RequestError):
    """``open_session`` with a session id that is in use."""

    job_error_code = 4091


class SessionOutOfOrder(RequestError):
    """A frame whose position does not continue its session."""

    job_error_code = 4090


class PromptTooLong(RequestError):
    """The prompt plus the requested new tokens do not fit in the model's context."""


class OutOfKVBlocks(RequestError):
    """The KV cache has no room for the request (now, or ever)."""

    job_error_code = 4100


class NumericalError(RuntimeLayerError):
    """Activations or logits contain NaN or infinity."""


class FrameError(RuntimeLayerError, RemoteProtocolError):
    """An activation frame from a peer is malformed (spec/runtime.md §5)."""

    job_error_code = FRAME_ERROR_CODE

    def __init__(self, message: str) -> None:
        RemoteProtocolError.__init__(self, message, FRAME_ERROR_CODE)
