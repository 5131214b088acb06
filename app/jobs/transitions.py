"""Guarded state changes. Every move is `UPDATE ... WHERE status IN (expected)`,
is legal by the state machine (`states.can_move`), writes a timeline event, and
— for terminal moves — creates the webhook event in the same transaction, so a
job ends exactly once and announces it once."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import ColumnElement
from sqlalchemy.orm import Session

from app.clients.models import Client
from app.core import metrics
from app.jobs import repository as repo
from app.jobs.models import Job
from app.jobs.notify import job_changed
from app.jobs.states import (
    OPTIONAL_EVENTS,
    TERMINAL,
    TERMINAL_EVENT,
    ErrorSource,
    JobEvent,
    JobStatus,
    Timeline,
    can_move,
)
from app.jobs.views import load_out
from app.webhooks import repository as webhook_repo
from app.webhooks import service as webhooks

log = structlog.get_logger(__name__)
ERROR_MESSAGE_CHARS = 1000


class IllegalMove(Exception):
    """A move the state machine does not allow: a bug in the caller, never a race."""


def move(
    session: Session,
    job_id: str,
    *,
    expected: Iterable[JobStatus],
    to: JobStatus,
    now: datetime,
    values: dict[str, Any] | None = None,
    lease_token: str | None = None,
    message: str | None = None,
    data: dict[str, Any] | None = None,
    where: Iterable[ColumnElement[bool]] = (),
) -> bool:
    """Move the job if it is in one of `expected` (and holds `lease_token`, and meets
    `where`); False if it is not, i.e. another worker or the caller won the row."""
    expected = tuple(expected)
    illegal = [src.value for src in expected if not can_move(src, to)]
    if illegal:
        raise IllegalMove(f"{', '.join(illegal)} -> {to.value}")
    update = {"status": to.value, "updated_at": now, "status_changed_at": now, **(values or {})}
    if to in TERMINAL:
        update.update(completed_at=now, due_at=None, timeout_at=None, lease_token=None)
    previous = repo.status_since(session, job_id)
    if not repo.guarded_update(session, job_id, expected, update, lease_token=lease_token, where=where):
        return False
    if JobStatus.RUNNING in expected and (polled := repo.end_polls(session, job_id)) is not None:
        data = {**(data or {}), "polls": polled}  # the run's schedule ends, and says how long it was
    repo.add_event(session, job_id, Timeline.STATUS, now, status=to.value, message=message, data=data)
    job_changed(session, (job_id,))
    job = repo.get(session, job_id)
    assert job is not None
    log.info("job_status", job_id=job_id, model=job.model, status=to.value, message=message)
    metrics.job_transition(job, to.value, now, previous, terminal=to in TERMINAL, session=session)
    if to in TERMINAL:
        _announce(session, job, TERMINAL_EVENT[to], now)
        if to is JobStatus.CANCELED:
            webhook_repo.cancel_pending(session, job_id, OPTIONAL_EVENTS, now)
    elif to is JobStatus.RUNNING and JobEvent.RUNNING in subscribed_events(session, job):
        _announce(session, job, JobEvent.RUNNING, now)
    return True


def fail(
    session: Session,
    job_id: str,
    *,
    expected: Iterable[JobStatus],
    code: str,
    message: str,
    source: ErrorSource,
    now: datetime,
    to: JobStatus = JobStatus.FAILED,
    lease_token: str | None = None,
    values: dict[str, Any] | None = None,
) -> bool:
    """End the job with an error (`failed`, or `timed_out`/`canceled` through `to`)."""
    message = message[:ERROR_MESSAGE_CHARS]
    return move(
        session, job_id, expected=expected, to=to, now=now, lease_token=lease_token, message=message,
        values={**(values or {}), "error_code": code, "error_message": message, "error_source": source.value},
    )


def subscribed_events(session: Session, job: Job) -> set[str]:
    """The optional events the job was submitted with (its own list, or its client's at
    that moment): a later change to the client's list does not reach jobs in flight."""
    return set(job.webhook_events or [])


def _announce(session: Session, job: Job, event: JobEvent, now: datetime) -> None:
    client = session.get(Client, job.client_id)
    if client is None or not job.webhook_url:
        return
    data = load_out(session, job, with_webhook=False).model_dump(mode="json", exclude={"webhook"})
    webhooks.create_event(
        session, job_id=job.id, client=client, url=job.webhook_url, event_type=event, data=data, now=now
    )


def announce_progress(session: Session, job: Job, now: datetime) -> None:
    _announce(session, job, JobEvent.PROGRESS, now)
