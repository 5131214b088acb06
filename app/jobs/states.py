"""The job state machine: which states exist, which moves are legal, and the
names of what a move announces. `transitions.move` refuses any other move."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    SUBMITTING = "submitting"
    RUNNING = "running"
    COLLECTING = "collecting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    TIMED_OUT = "timed_out"


class JobEvent(StrEnum):
    """Webhook event types."""

    RUNNING = "job.running"
    PROGRESS = "job.progress"
    SUCCEEDED = "job.succeeded"
    FAILED = "job.failed"
    CANCELED = "job.canceled"
    TIMED_OUT = "job.timed_out"


class ErrorSource(StrEnum):
    """Where a job's failure came from (`error.source`)."""

    VALIDATION = "validation"
    UPSTREAM = "upstream"
    STORAGE = "storage"
    TIMEOUT = "timeout"
    CANCELED = "canceled"


class Timeline(StrEnum):
    """Kinds of timeline entries (`GET /v1/jobs/{id}/events`)."""

    STATUS = "status"
    UPSTREAM_ERROR = "upstream_error"
    UPSTREAM_ORPHAN = "upstream_orphan"
    COLLECT_ERROR = "collect_error"
    LATE_SUCCESS = "late_success"
    LATE_FAILURE = "late_failure"
    LATE_WATCH_ENDED = "late_watch_ended"
    ARTIFACTS_DELETED = "artifacts_deleted"
    SLOT_WAIT = "slot_wait"
    THROTTLED = "throttled"
    # Something in an accepted input the upstream may not do as the caller expects.
    INPUT_WARNING = "input_warning"


PRIORITIES = ("high", "normal", "low")  # stored as 0, 1, 2

TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.TIMED_OUT})
ACTIVE = frozenset(set(JobStatus) - TERMINAL)
# Events a caller may subscribe to; the terminal ones are always sent.
OPTIONAL_EVENTS = (JobEvent.RUNNING, JobEvent.PROGRESS)

# Every terminal transition produces exactly one event of this type.
TERMINAL_EVENT = {
    JobStatus.SUCCEEDED: JobEvent.SUCCEEDED,
    JobStatus.FAILED: JobEvent.FAILED,
    JobStatus.CANCELED: JobEvent.CANCELED,
    JobStatus.TIMED_OUT: JobEvent.TIMED_OUT,
}

# The forward path; any active state may also end failed, canceled or timed out.
ALLOWED = {
    JobStatus.QUEUED: {JobStatus.SUBMITTING},
    # back to queued: a create the upstream refused with a retryable answer;
    # straight to collecting: a synchronous family answered with the result.
    JobStatus.SUBMITTING: {JobStatus.RUNNING, JobStatus.QUEUED, JobStatus.COLLECTING},
    JobStatus.RUNNING: {JobStatus.COLLECTING},
    JobStatus.COLLECTING: {JobStatus.SUCCEEDED},
}
ENDINGS = frozenset({JobStatus.FAILED, JobStatus.CANCELED, JobStatus.TIMED_OUT})


def can_move(src: JobStatus, dst: JobStatus) -> bool:
    if src in TERMINAL:
        return False
    return dst in ENDINGS or dst in ALLOWED.get(src, set())
