"""Retention: when a stored result expires, and deleting results (expired, or by an admin).

An artifact row outlives its object: deleting stamps `deleted_at`, so the job
keeps listing the artifact (with no URL) and the timeline says why it went.
Objects are deleted before the rows are stamped, inside the rows' lock; a crash
in between leaves the rows unstamped and the next run deletes again (a no-op).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

import structlog
from sqlalchemy.orm import Session

from app.artifacts import repository
from app.artifacts.models import Artifact
from app.clients.models import Client
from app.core import metrics
from app.core.clock import utcnow
from app.core.db import session_scope
from app.core.settings import get_settings
from app.jobs import repository as jobs_repo
from app.jobs.states import Timeline
from app.storage.backends import StorageError, get_storage

log = structlog.get_logger(__name__)


def expiry_for(client: Client | None, now: datetime) -> datetime | None:
    """When results stored now expire: the client's `retention_days`, else the default."""
    if client is not None and client.retention_days:
        return now + timedelta(days=client.retention_days)
    default = get_settings().artifact_retention
    return now + default if default > timedelta(0) else None


def _delete(session: Session, artifacts: Sequence[Artifact], now: datetime, reason: str) -> list[Artifact]:
    """Delete the objects and stamp their rows; the artifacts deleted (a failed one stays as it was)."""
    if not artifacts:
        return []
    storage = get_storage()
    failed = set(storage.delete_many([a.storage_key for a in artifacts]))
    if failed:
        metrics.STORAGE_ERRORS.labels(backend=storage.scheme, operation="delete").inc(len(failed))
    deleted = [a for a in artifacts if a.storage_key not in failed]
    by_job: dict[str, list[str]] = defaultdict(list)
    for artifact in deleted:
        artifact.deleted_at = now
        by_job[artifact.job_id].append(artifact.name)
    for job_id, names in by_job.items():
        jobs_repo.add_event(
            session, job_id, Timeline.ARTIFACTS_DELETED, now,
            message=f"deleted {', '.join(names)} ({reason})", data={"names": names, "reason": reason},
        )
    session.flush()
    return deleted


def delete_job_artifacts(session: Session, job_id: str, reason: str = "admin") -> list[str]:
    """Delete every stored result of a job now; the names deleted (none if already gone)."""
    artifacts = repository.live_for_job_locked(session, job_id)
    deleted = _delete(session, artifacts, utcnow(), reason)
    if len(deleted) < len(artifacts):
        raise StorageError(f"could not delete {len(artifacts) - len(deleted)} stored object(s) of job {job_id}")
    return [a.name for a in deleted]


def expire_due(max_batches: int = 20) -> dict[str, int]:
    """Delete expired results, a batch per transaction; several runners may share the work."""
    settings = get_settings()
    expired = 0
    for _ in range(max_batches):
        now = utcnow()
        with session_scope() as session:
            batch = repository.claim_expired(session, now, settings.artifact_expiry_batch_size)
            deleted = _delete(session, batch, now, "retention")
        expired += len(deleted)
        if len(batch) < settings.artifact_expiry_batch_size or not deleted:
            break
    aborted = get_storage().abort_abandoned_uploads(settings.abandoned_upload_age)
    if expired or aborted:
        log.info("artifacts_expired", expired=expired, abandoned_uploads_aborted=aborted)
    return {"expired": expired, "abandoned_uploads_aborted": aborted}
