"""Job rules on the API side: accept (validate, store, nudge), list, cancel."""

from __future__ import annotations

import difflib
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pydantic
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.artifacts import uploads
from app.clients import quotas
from app.clients.models import Client
from app.core import metrics
from app.core.clock import utcnow
from app.core.db import savepoint
from app.core.errors import (
    AppError,
    Conflict,
    FieldError,
    NotFound,
    ValidationFailed,
    validation_errors,
)
from app.core.ids import new_id
from app.core.queue import enqueue
from app.core.settings import get_settings
from app.core.tasks import TaskName
from app.jobs import repository as repo
from app.jobs.models import Job
from app.jobs.schemas import JobBatchItem, JobCreate
from app.jobs.states import ACTIVE, PRIORITIES, TERMINAL, ErrorSource, JobStatus, Timeline
from app.jobs.transitions import fail
from app.providers.base import ModelSpec, ValidationContext
from app.providers.registry import UnknownModel, adapter_for, catalog, get_model
from app.webhooks import service as webhooks
from app.webhooks import ssrf


@dataclass
class Accepted:
    job: Job
    replayed: bool
    # The client's rate limit as it stands after this submission (RateLimit fields).
    headers: dict[str, str] = field(default_factory=dict)


def fingerprint(body: JobCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(existing: Job, body: JobCreate) -> Accepted:
    if existing.request_fingerprint != fingerprint(body):
        raise ValidationFailed(
            "this Idempotency-Key was already used with a different request body",
            code="idempotency_key_reused",
            errors=[FieldError(field="Idempotency-Key", message="already used with a different body", code="idempotency_key_reused")],
        )
    return Accepted(existing, replayed=True)


def validate_input(session: Session, client: Client, spec: ModelSpec, body: JobCreate) -> dict[str, Any]:
    ctx = ValidationContext(
        client_id=client.id,
        get_job=lambda job_id: repo.get_for_client(session, client.id, job_id),
        get_upload=lambda upload_id: uploads.get_for_client(session, client.id, upload_id),
    )
    try:
        return adapter_for(spec).validate(spec, body.input, ctx)
    except pydantic.ValidationError as exc:
        errors = validation_errors([dict(e) for e in exc.errors()])
        for err in errors:
            err.field = f"input.{err.field}" if err.field != "body" else "input"
        raise ValidationFailed("; ".join(f"{e.field}: {e.message}" for e in errors), errors=errors) from None


def create(session: Session, client: Client, body: JobCreate, idempotency_key: str | None) -> Accepted:
    if idempotency_key is not None:
        existing = _earlier(session, client, idempotency_key)
        if existing is not None:
            return _replay(existing, body)
    spec = _model(body.model)
    job_input = validate_input(session, client, spec, body)
    webhook_url = _webhook_url(client, body.webhook_url)
    # Only a keyed request can be replayed, so only it needs its body's fingerprint.
    print_ = fingerprint(body) if idempotency_key is not None else None
    job = _new_job(client, spec, body, job_input, webhook_url, idempotency_key, print_)
    quotas.check_queued(session, client, get_settings())
    rate_headers = quotas.check_rate(client)
    quotas.charge(session, client, spec.price, job.created_at)
    try:
        inserted = repo.insert_new(session, job, "accepted")
    except IntegrityError:
        session.rollback()
        inserted = False
    if not inserted:
        # Another request with this key won the insert between our look-up and ours.
        existing = repo.get_by_idempotency_key(session, client.id, idempotency_key) if idempotency_key else None
        if existing is None:
            raise Conflict("a request with this Idempotency-Key is in progress", code="idempotency_in_progress")
        return _replay(existing, body)
    for warning in adapter_for(spec).input_warnings(spec, job_input):
        repo.add_event(session, job.id, Timeline.INPUT_WARNING, job.created_at, message=warning.message,
                       data={"field": f"input.{warning.field}", "code": warning.code})
    if job.slot_at is not None:  # FIFO dispatch: submitted at once; otherwise the dispatcher nudges
        enqueue(session, TaskName.SUBMIT_JOB, job.id)
    metrics.job_created(spec.id, session)
    return Accepted(job, replayed=False, headers=rate_headers)


@dataclass
class BatchOutcome:
    index: int
    key: str
    accepted: Accepted | None = None
    error: AppError | None = None


def create_batch(session: Session, client: Client, items: list[JobBatchItem]) -> list[BatchOutcome]:
    """Each item as its own `create`: one that fails leaves no trace (a savepoint on
    Postgres takes back its writes, such as a budget charge) and the others go on. One
    transaction for all, committed by the caller, then every accepted job is published."""
    savepoints = session.get_bind().dialect.name == "postgresql"
    transaction = session.get_transaction() or session.begin()
    outcomes = []
    for index, item in enumerate(items):
        outcome = BatchOutcome(index, item.idempotency_key)
        try:
            with savepoint(session, enabled=savepoints):
                outcome.accepted = create(session, client, item.job_create(), item.idempotency_key)
        except AppError as exc:
            outcome.error = exc
        if session.get_transaction() is not transaction:
            # `create` rolled the whole transaction back (a concurrent duplicate on SQLite):
            # the items before this one are gone too, so the batch as a whole is refused.
            raise Conflict("a request with one of these Idempotency-Keys is in progress; send the batch again",
                           code="idempotency_in_progress")
        outcomes.append(outcome)
    return outcomes


def _earlier(session: Session, client: Client, idempotency_key: str) -> Job | None:
    if not idempotency_key.strip():
        raise ValidationFailed.field("Idempotency-Key", "must not be empty; leave the header out instead", "empty")
    if len(idempotency_key) > 255:
        raise ValidationFailed.field("Idempotency-Key", "must be at most 255 characters", "too_long")
    return repo.get_by_idempotency_key(session, client.id, idempotency_key)


def _model(model_id: str) -> ModelSpec:
    try:
        return get_model(model_id)
    except UnknownModel:
        known = catalog()
        close = difflib.get_close_matches(model_id.lower(), sorted(known), n=3, cutoff=0.6)
        hint = ""
        if close:
            names = close[0] if len(close) == 1 else f"{', '.join(close[:-1])} or {close[-1]}"
            hint = f"did you mean {names}? "
        raise ValidationFailed.field(
            "model", f"unknown model {model_id!r}; {hint}GET /v1/models lists all {len(known)}", "unknown_model"
        ) from None


def _webhook_url(client: Client, requested: str | None) -> str | None:
    """The job's own URL (checked now) or the client's default; either one disabled by a
    410 is a 409, since the job would never be notified."""
    if not requested:
        if client.webhook_url and client.webhook_url in client.disabled_webhook_urls:
            raise webhooks.url_disabled(
                client, client.webhook_url, "the client's webhook URL",
                'or give this job a webhook_url of its own, or clear the default: PATCH /v1/client {"webhook_url": null}',
            )
        return client.webhook_url
    try:
        ssrf.check_at_submit(requested, get_settings().webhook_allowed_cidrs)
    except ssrf.UnsafeURL as exc:
        raise ValidationFailed.field("webhook_url", str(exc), "unsafe_url") from None
    if requested in client.disabled_webhook_urls:
        raise webhooks.url_disabled(client, requested, "webhook_url")
    return requested


def _new_job(
    client: Client, spec: ModelSpec, body: JobCreate, job_input: dict[str, Any], webhook_url: str | None,
    idempotency_key: str | None, print_: str | None,
) -> Job:
    now = utcnow()
    settings = get_settings()
    fifo = settings.dispatch == "fifo"
    job_id = new_id("job")
    queue_deadline = now + timedelta(seconds=spec.queue_deadline)
    deadline = now + timedelta(seconds=spec.absolute_deadline)
    return Job(
        id=job_id,
        client_id=client.id,
        idempotency_key=idempotency_key,
        request_fingerprint=print_,
        model=spec.id,
        family=spec.family,
        kind=spec.kind,
        input=job_input,
        meta=body.metadata,
        webhook_url=webhook_url,
        # The subscription is fixed now: the job's own list (`[]` opts out), else the client's.
        webhook_events=list(client.webhook_events or []) if body.webhook_events is None else list(body.webhook_events),
        parent_job_id=job_input.get("remix_of") or job_input.get("parent_job_id"),
        storage_prefix=f"{client.id}/{job_id}/{secrets.token_urlsafe(12)}",
        status=JobStatus.QUEUED.value,
        priority=PRIORITIES.index(body.priority),
        progress=0,
        cost=spec.price or None,
        # FIFO: the slot comes with the job, and `due_at` is when the sweeper nudges again.
        # Fair: `due_at` is when the job may be dispatched (now).
        slot_at=now if fifo else None,
        due_at=now + settings.queue_nudge_after if fifo else now,
        queue_deadline_at=queue_deadline,
        deadline_at=deadline,
        timeout_at=min(queue_deadline, deadline),
        created_at=now,
        updated_at=now,
        status_changed_at=now,
        progress_at=now,
    )


def get_owned(session: Session, client: Client, job_id: str) -> Job:
    job = repo.get_for_client(session, client.id, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


def cancel(session: Session, client: Client, job_id: str) -> Job:
    job = get_owned(session, client, job_id)
    if job.status in TERMINAL:
        raise Conflict(f"job {job_id} is already {job.status}", code="job_terminal")
    moved = fail(
        session, job_id, expected=ACTIVE, to=JobStatus.CANCELED, now=utcnow(), code="canceled",
        message="canceled by the caller", source=ErrorSource.CANCELED,
    )
    now_job = repo.get(session, job_id)
    assert now_job is not None  # a job is never deleted while a request holds it
    if not moved:
        raise Conflict(f"job {job_id} is already {now_job.status}", code="job_terminal")
    return now_job
