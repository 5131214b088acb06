"""The job as callers see it (API responses and webhook payloads)."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

from sqlalchemy import bindparam, case, func, literal_column, select, true
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.orm import Session

from app.artifacts import repository as artifacts_repo
from app.artifacts.models import Artifact
from app.artifacts.schemas import ArtifactOut
from app.core.db import table
from app.core.settings import get_settings
from app.jobs.models import Job
from app.jobs.schemas import JobError, JobOut, UpstreamOut
from app.jobs.states import PRIORITIES
from app.webhooks import repository as webhook_repo
from app.webhooks.models import WebhookDelivery
from app.webhooks.repository import webhook_state
from app.webhooks.schemas import WebhookStateOut


def artifact_url(job_id: str, name: str) -> str:
    return f"{get_settings().public_base_url}/v1/jobs/{job_id}/artifacts/{name}"


def to_out(job: Any, artifacts: Sequence[Any], webhook: WebhookStateOut | None = None) -> JobOut:
    """The caller's view of a job: `job` and each artifact are read by attribute (an ORM
    row, or a Core row whose columns carry the attribute names)."""
    error = None
    if job.error_code:
        error = JobError(code=job.error_code, message=job.error_message or job.error_code, source=job.error_source)
    return JobOut(
        id=job.id,
        model=job.model,
        family=job.family,
        kind=job.kind,
        status=job.status,
        priority=PRIORITIES[job.priority] if job.priority is not None else "normal",
        progress=job.progress,
        input=job.input,
        metadata=job.meta or {},
        error=error,
        artifacts=[
            ArtifactOut(
                name=a.name,
                content_type=a.content_type,
                size_bytes=a.size_bytes,
                sha256=a.sha256,
                url=None if a.deleted_at else artifact_url(job.id, a.name),
                expires_at=a.expires_at,
                deleted_at=a.deleted_at,
            )
            for a in artifacts
        ],
        upstream=UpstreamOut(id=job.upstream_id, status=job.upstream_status),
        webhook_events=list(job.webhook_events or []),
        webhook=webhook,
        parent_job_id=job.parent_job_id,
        created_at=job.created_at,
        updated_at=job.updated_at,
        completed_at=job.completed_at,
    )


def view_owned(session: Session, client_id: str, job_id: str) -> JobOut | None:
    """The client's job as `GET /v1/jobs/{id}` shows it, or None if it has no such job.
    On Postgres one statement reads the job, its artifacts and its webhook state."""
    if session.get_bind().dialect.name != "postgresql":
        from app.jobs.repository import get_for_client

        job = get_for_client(session, client_id, job_id)
        return None if job is None else load_out(session, job)
    row = session.execute(_OWNED_VIEW, {"job_id": job_id, "client_id": client_id}).first()
    return None if row is None else _row_out(row)


def list_owned(
    session: Session, client_id: str, *, status: str | None, model: str | None, limit: int, before_id: str | None,
) -> list[JobOut]:
    """The client's jobs as `GET /v1/jobs` lists them, newest first. On Postgres one
    statement reads the page with each job's artifacts and webhook state, and only the
    columns a caller sees (not the upstream's payload, leases or fingerprints)."""
    if session.get_bind().dialect.name != "postgresql":
        from app.jobs.repository import list_for_client

        return load_many(session, list_for_client(
            session, client_id, status=status, model=model, limit=limit, before_id=before_id))
    jobs = _VIEW_JOBS
    query = _VIEW.where(jobs.c.client_id == client_id)
    if status:
        query = query.where(jobs.c.status == status)
    if model:
        query = query.where(jobs.c.model == model)
    if before_id:
        query = query.where(jobs.c.id < before_id)
    return [_row_out(row) for row in session.execute(query.order_by(jobs.c.id.desc()).limit(limit))]


def _row_out(row: Any) -> JobOut:
    webhook = None
    if row.w_status is not None:
        webhook = WebhookStateOut(
            state=webhook_repo.state_of(row.w_status, row.w_attempts, row.w_last_error),
            event_type=row.w_event_type, attempts=row.w_attempts,
            next_attempt_at=row.w_next_attempt_at if row.w_status == webhook_repo.PENDING else None,
            last_status_code=row.w_last_status_code, last_error=row.w_last_error,
        )
    artifacts = [SimpleNamespace(**a) for a in row.artifacts]
    return to_out(row, artifacts, webhook)


# What `to_out` reads of a job: a view never loads the upstream's payload, leases or fingerprints.
_VIEW_ATTRIBUTES = (
    "id", "model", "family", "kind", "status", "priority", "progress", "input", "meta", "error_code",
    "error_message", "error_source", "upstream_id", "upstream_status", "webhook_events", "parent_job_id",
    "created_at", "updated_at", "completed_at",
)
_VIEW_JOBS = table(Job)


def _view() -> Any:
    """Jobs (the caller's columns), each with its artifacts as a JSON array and its
    current webhook delivery: filters, order and limit are added per use."""
    jobs = _VIEW_JOBS
    stored, deliveries = table(Artifact), table(WebhookDelivery)
    pairs: list[Any] = []
    for name in ("name", "content_type", "size_bytes", "sha256", "expires_at", "deleted_at"):
        pairs += [literal_column(f"'{name}'"), stored.c[name]]
    artifact = func.json_build_object(*pairs)
    artifacts = (
        select(func.coalesce(func.json_agg(aggregate_order_by(artifact, stored.c.created_at)),
                             literal_column("'[]'::json")).label("artifacts"))
        .where(stored.c.job_id == jobs.c.id)
        .lateral("a")
    )
    # The delivery that matters now: the first still pending, else the latest (as
    # webhooks.repository.webhook_state picks it for lists).
    pending = deliveries.c.status == webhook_repo.PENDING
    webhook = (
        select(*(deliveries.c[name].label(f"w_{name}") for name in (
            "status", "event_type", "attempts", "next_attempt_at", "last_status_code", "last_error")))
        .where(deliveries.c.job_id == jobs.c.id, deliveries.c.status != webhook_repo.SUPERSEDED)
        .order_by(pending.desc(), case((pending, deliveries.c.seq)).asc(), deliveries.c.seq.desc())
        .limit(1)
        .lateral("w")
    )
    attributes = Job.__mapper__.column_attrs
    columns = [jobs.c[attributes[name].columns[0].name].label(name) for name in _VIEW_ATTRIBUTES]
    return (
        select(*columns, artifacts.c.artifacts, *webhook.c)
        .select_from(jobs.outerjoin(artifacts, true()).outerjoin(webhook, true()))
    )


_VIEW = _view()
_OWNED_VIEW = _VIEW.where(_VIEW_JOBS.c.id == bindparam("job_id"), _VIEW_JOBS.c.client_id == bindparam("client_id"))


def load_out(session: Session, job: Job, *, with_webhook: bool = True) -> JobOut:
    artifacts = artifacts_repo.for_jobs(session, [job.id])[job.id]
    state = webhook_state(session, [job.id]).get(job.id) if with_webhook else None
    return to_out(job, artifacts, state)


def load_many(session: Session, jobs: Sequence[Job]) -> list[JobOut]:
    ids = [j.id for j in jobs]
    artifacts = artifacts_repo.for_jobs(session, ids)
    states = webhook_state(session, ids)
    return [to_out(j, artifacts[j.id], states.get(j.id)) for j in jobs]
