"""The job state machine: which states exist and which moves are legal."""

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


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.TIMED_OUT})
ACTIVE = frozenset(set(JobStatus) - TERMINAL)

# Every terminal transition produces exactly one event of this type.
TERMINAL_EVENT = {
    JobStatus.SUCCEEDED: "job.succeeded",
    JobStatus.FAILED: "job.failed",
    JobStatus.CANCELED: "job.canceled",
    JobStatus.TIMED_OUT: "job.timed_out",
}

ALLOWED = {
    JobStatus.QUEUED: {JobStatus.SUBMITTING},
    JobStatus.SUBMITTING: {JobStatus.RUNNING, JobStatus.QUEUED, JobStatus.COLLECTING},
    JobStatus.RUNNING: {JobStatus.COLLECTING},
    JobStatus.COLLECTING: {JobStatus.SUCCEEDED},
}


def can_move(src: JobStatus, dst: JobStatus) -> bool:
    if src in TERMINAL:
        return False
    if dst in (JobStatus.FAILED, JobStatus.CANCELED, JobStatus.TIMED_OUT):
        return True
    return dst in ALLOWED.get(src, set())
