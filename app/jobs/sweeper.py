"""The sweeper: the database says what is overdue; nudge it again.

Runs on the scheduler's leader every SWEEP_INTERVAL. Because every queue message is only a nudge,
losing all of them (a flushed Redis, a crashed worker) delays jobs by at most
one sweep, never loses them. Each step is its own short transaction. One query first asks
which steps have anything due, so a quiet round costs one round trip, not one per step.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime

import structlog
from sqlalchemy import or_

from app.core import queue
from app.core.clock import utcnow
from app.core.db import NOW, session_scope
from app.core.queue import enqueue
from app.core.settings import Settings, get_settings
from app.core.tasks import TaskName
from app.jobs import repository as repo
from app.jobs.models import Job
from app.jobs.states import ErrorSource, JobStatus
from app.jobs.transitions import fail

log = structlog.get_logger(__name__)


# What each step claims.
QUEUED_WITH_SLOT = repo.Due((JobStatus.QUEUED,), Job.due_at, (Job.slot_at.is_not(None),))
SUBMITTING = repo.Due((JobStatus.SUBMITTING,), Job.due_at)
COLLECTING = repo.Due((JobStatus.COLLECTING,), Job.due_at)
WATCHED = repo.Due((JobStatus.TIMED_OUT,), Job.due_at)


def sweep() -> dict[str, int]:
    settings = get_settings()
    now = utcnow()
    stats: Counter[str] = Counter()
    with session_scope() as session:
        due = _PROBE.ask(session, now)
    for name, step in _STEPS.items():
        if name in due:
            step(settings, now, stats)
    if any(stats.values()):
        log.info("sweep", **stats)
    return dict(stats)


def _backed_up(task: TaskName, settings: Settings, stats: Counter[str]) -> bool:
    """The task's queue already holds a sweep's worth of messages (Redis can say): a job
    overdue behind them is late, not lost, and another nudge would only lengthen the
    queue. The nudges wait for the workers to catch up."""
    waiting = queue.waiting(task)
    if waiting is not None and waiting >= settings.sweep_batch_size:
        stats[f"{task.value.rsplit('.', 1)[-1]}_nudges_held"] += 1
        return True
    return False


def _nudge_queued(settings: Settings, now: datetime, stats: Counter[str]) -> None:
    """A job holding a slot whose submit never started (its message was lost): nudge it
    again, waiting twice as long each time. A job waiting for a slot is the dispatcher's."""
    if _backed_up(TaskName.SUBMIT_JOB, settings, stats):
        return
    with session_scope() as session:
        for job_id in repo.claim_ids(
            session, QUEUED_WITH_SLOT, now, settings.sweep_batch_size,
            {"due_at": repo.backed_off(now, settings.queue_nudge_after), "nudges": Job.nudges + 1},
        ):
            enqueue(session, TaskName.SUBMIT_JOB, job_id)
            stats["submit_nudged"] += 1


def _judge_lost_submits(settings: Settings, now: datetime, stats: Counter[str]) -> None:
    """A lease that expired in `submitting` means the worker died mid-call: the create
    may or may not have happened upstream. Never resubmit."""
    with session_scope() as session:
        for job_id in repo.claim_ids(session, SUBMITTING, now, settings.sweep_batch_size, {"due_at": None}):
            stats["submit_lease_expired"] += fail(
                session, job_id, expected=[JobStatus.SUBMITTING], now=now, code="upstream_submit_unknown",
                source=ErrorSource.UPSTREAM,
                message="the worker stopped during the create call, so whether the upstream created the task "
                "is unknown; not resubmitted, to avoid a duplicate charge",
            )


def _nudge_collecting(settings: Settings, now: datetime, stats: Counter[str]) -> None:
    if _backed_up(TaskName.COLLECT_JOB, settings, stats):
        return
    with session_scope() as session:
        for job_id in repo.claim_ids(
            session, COLLECTING, now, settings.sweep_batch_size,
            {"due_at": repo.backed_off(now, settings.collect_lease), "lease_token": None, "nudges": Job.nudges + 1},
        ):
            enqueue(session, TaskName.COLLECT_JOB, job_id)
            stats["collect_nudged"] += 1


def _time_out(settings: Settings, now: datetime, stats: Counter[str]) -> None:
    with session_scope() as session:
        overdue = [(job, _which_deadline(job)) for job in repo.due_timeouts(session, now, settings.sweep_batch_size)]
        overdue += [(job, _stalled(job)) for job in repo.stalled(session, now, settings.sweep_batch_size)]
        for job, (code, message) in overdue:
            was = JobStatus(job.status)
            moved = fail(session, job.id, expected=[was], to=JobStatus.TIMED_OUT, now=now, code=code,
                         message=message, source=ErrorSource.TIMEOUT)
            stats["timed_out"] += moved
            # Watched: a task the upstream was still working on (collecting means it had finished).
            if moved and was is JobStatus.RUNNING and job.upstream_id and settings.late_watch.total_seconds():
                repo.guarded_update(session, job.id, [JobStatus.TIMED_OUT], {"due_at": now + settings.late_watch_interval})


def _late_checks(settings: Settings, now: datetime, stats: Counter[str]) -> None:
    """Timed-out jobs under the late watch: one upstream check each, at most every interval."""
    with session_scope() as session:
        for job_id in repo.claim_ids(session, WATCHED, now, settings.sweep_batch_size,
                                     {"due_at": now + settings.late_watch_interval}):
            enqueue(session, TaskName.LATE_CHECK, job_id)
            stats["late_checks"] += 1


def _which_deadline(job: Job) -> tuple[str, str]:
    if job.status == JobStatus.QUEUED and job.queue_deadline_at and (
            job.deadline_at is None or job.queue_deadline_at <= job.deadline_at):
        return "queue_timeout", f"not submitted within the queue deadline ({job.queue_deadline_at.isoformat()})"
    return "deadline_exceeded", f"not finished by the job's deadline ({_iso(job.deadline_at)})"


def _stalled(job: Job) -> tuple[str, str]:
    return "stalled", (
        f"no progress from the upstream since {job.progress_at.isoformat()} "
        f"(last status {job.upstream_status or 'unknown'}, {job.progress}%)"
    )


def _iso(moment: datetime | None) -> str:
    return moment.isoformat() if moment else "unknown"


Step = Callable[[Settings, datetime, Counter[str]], None]
_STEPS: dict[str, Step] = {
    "nudge_queued": _nudge_queued, "judge_lost_submits": _judge_lost_submits, "nudge_collecting": _nudge_collecting,
    "time_out": _time_out, "late_checks": _late_checks,
}
# Which steps have anything due: each question is its step's own condition.
_PROBE = repo.Probe({
    "nudge_queued": QUEUED_WITH_SLOT.any(NOW),
    "judge_lost_submits": SUBMITTING.any(NOW),
    "nudge_collecting": COLLECTING.any(NOW),
    "time_out": or_(repo.TIMED_OUT.any(NOW), repo.any_stalled(NOW)),
    "late_checks": WATCHED.any(NOW),
})
