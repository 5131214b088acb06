"""The job as callers see it (API responses and webhook payloads)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from app.artifacts import repository as artifacts_repo
from app.artifacts.models import Artifact
from app.artifacts.schemas import ArtifactOut
from app.core.settings import get_settings
from app.jobs.models import Job
from app.jobs.schemas import JobError, JobOut, UpstreamOut
from app.webhooks.repository import webhook_state
from app.webhooks.schemas import WebhookStateOut


def artifact_url(job_id: str, name: str) -> str:
    return f"{get_settings().public_base_url}/v1/jobs/{job_id}/artifacts/{name}"


def to_out(job: Job, artifacts: Sequence[Artifact], webhook: WebhookStateOut | None = None) -> JobOut:
    error = None
    if job.error_code:
        error = JobError(code=job.error_code, message=job.error_message or job.error_code, source=job.error_source)
    return JobOut(
        id=job.id,
        model=job.model,
        family=job.family,
        kind=job.kind,
        status=job.status,
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
        webhook=webhook,
        parent_job_id=job.parent_job_id,
        created_at=job.created_at,
        updated_at=job.updated_at,
        completed_at=job.completed_at,
    )


def load_out(session: Session, job: Job, *, with_webhook: bool = True) -> JobOut:
    artifacts = artifacts_repo.for_jobs(session, [job.id])[job.id]
    state = webhook_state(session, [job.id]).get(job.id) if with_webhook else None
    return to_out(job, artifacts, state)


def load_many(session: Session, jobs: Sequence[Job]) -> list[JobOut]:
    ids = [j.id for j in jobs]
    artifacts = artifacts_repo.for_jobs(session, ids)
    states = webhook_state(session, ids)
    return [to_out(j, artifacts[j.id], states.get(j.id)) for j in jobs]
