"""The persisted job state machine as a data table (spec/job.md §Job state machine).

One table serves every role that records jobs: the aggregator (the full machine), the client
(queued = submitted, planned = accepted) and the provider (queued = offered/accepted, running =
assigned/session open). ``planned -> planned`` and ``running -> planned`` are replays after a
stage failure. Terminal states have no way out: :func:`check_transition` refuses them, which is
what makes "every job ends in one recorded terminal state" hold.
"""

from __future__ import annotations

from enum import StrEnum

from infernet_ref.node.errors import IllegalTransition


class JobState(StrEnum):
    """Values of ``JobState`` in job-messages.schema.json."""

    QUEUED = "queued"
    PLANNED = "planned"
    RUNNING = "running"
    VERIFYING = "verifying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


TERMINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.REJECTED})

_ANY_END = {JobState.FAILED, JobState.CANCELLED}

#: state -> states it may move to (spec/job.md §Job state machine table).
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.PLANNED, JobState.RUNNING, JobState.REJECTED, *_ANY_END}),
    JobState.PLANNED: frozenset({JobState.PLANNED, JobState.RUNNING, *_ANY_END}),
    JobState.RUNNING: frozenset(
        {JobState.PLANNED, JobState.VERIFYING, JobState.COMPLETED, *_ANY_END}
    ),
    JobState.VERIFYING: frozenset({JobState.COMPLETED, *_ANY_END}),
    JobState.COMPLETED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
    JobState.REJECTED: frozenset(),
}


def check_transition(old: JobState, new: JobState) -> None:
    """Raise :class:`IllegalTransition` unless ``old -> new`` is in :data:`TRANSITIONS`."""
    if new not in TRANSITIONS[old]:
        raise IllegalTransition(f"job state {old.value} -> {new.value} is not allowed")
