"""Job-protocol errors and the wire error-code table (spec/job.md §Error codes).

:class:`JobProtocolError` is raised when the *peer* broke the job protocol; its ``code`` is the
:class:`ErrorCode` that goes back in a ``sys.error``. :class:`NodeConfigError` is a local
configuration problem, :class:`StoreError` a local persistence failure (5003 when reported),
:class:`PlanningError` a job that cannot be placed (4100 / 4101).
"""

from __future__ import annotations

from enum import IntEnum

from infernet_ref.errors import InfernetError, LocalProtocolError, RemoteProtocolError


class ErrorCode(IntEnum):
    """Error codes of ``sys.error`` / ``job.reject`` (spec/job.md §Error codes)."""

    BAD_REQUEST = 4000  # malformed or schema-invalid message
    UNAUTHENTICATED = 4001  # message before auth.ok
    AUTH_FAILED = 4002  # bad signature, challenge, endpoint, stale or replayed auth
    FORBIDDEN = 4003  # the authenticated key may not do this
    UNKNOWN_TYPE = 4004  # type not defined in this version
    TOO_LARGE = 4005  # message or payload above limits
    UNSUPPORTED_VERSION = 4006  # envelope v not supported
    RATE_LIMITED = 4008
    UNKNOWN_JOB = 4040
    UNKNOWN_SESSION = 4041
    UNKNOWN_MODEL = 4042
    INVALID_STATE = 4090  # not allowed in the current state
    DUPLICATE = 4091
    NO_CAPACITY = 4100  # does not fit
    NO_PROVIDERS = 4101
    CANCELLED = 4200
    TIMEOUT = 4300
    INTERNAL = 5000
    PROVIDER_FAILED = 5001
    VERIFICATION_MISMATCH = 5002
    STORAGE = 5003
    SANDBOX = 5004


class JobProtocolError(RemoteProtocolError):
    """The peer violated the job protocol; ``code`` is the :class:`ErrorCode` to send back."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.BAD_REQUEST) -> None:
        super().__init__(message, int(code))
        self.error_code = code
        self.msg_id: str | None = None  # the refused message's own id, when it had a usable one


class RemoteJobError(InfernetError):
    """The peer reported an error (``sys.error`` / ``job.reject``) in answer to our request."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"peer error {code}: {message}")
        self.code = code
        self.message = message


class PlanningError(InfernetError):
    """No placement satisfies the job (4100 no capacity / 4101 no providers)."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.NO_CAPACITY) -> None:
        super().__init__(message)
        self.code = code


class NodeConfigError(LocalProtocolError):
    """The node configuration is invalid; the message names the field."""


class StoreError(InfernetError):
    """The local state store failed or refused a transition (illegal state change, disk full)."""


class IllegalTransition(StoreError):
    """A job state transition not in the state table (spec/job.md §Job state machine)."""
