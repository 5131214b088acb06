"""Retention of rows: finished jobs (with their timeline, deliveries, attempts and
artifact rows), uploads and daily spend, deleted once they are old enough.

- A finished job goes COMETJOBS_JOB_RETENTION after it finished, once none of its
  results is still stored: results keep their own retention (COMETJOBS_ARTIFACT_RETENTION
  or the client's `retention_days`), and a job whose result may still be downloaded keeps
  its row. Its children go with it (ON DELETE CASCADE). Afterwards its id answers 404.
- An upload goes COMETJOBS_UPLOAD_RETENTION after it was made: the object first, then the
  row (an object that could not be deleted keeps its row, and the next round tries again).
- Daily spend rows older than SPEND_HISTORY go; budgets only read today's.

Work is done in batches, one transaction each, oldest first, with `FOR UPDATE SKIP LOCKED`
so runners never wait on each other; a round stops after `max_batches` and reports
`budget_spent` so the scheduler runs it again at once.
"""

from __future__ import annotations

from datetime import timedelta

import structlog
from sqlalchemy import delete, exists, select

from app.artifacts.models import Artifact, Upload
from app.clients.models import ClientSpend
from app.core import metrics
from app.core.clock import utcnow
from app.core.db import affected, session_scope
from app.core.settings import get_settings
from app.jobs.models import Job
from app.jobs.states import TERMINAL
from app.storage.backends import get_storage

log = structlog.get_logger(__name__)
SPEND_HISTORY = timedelta(days=35)


def _purge_jobs_batch(older_than: timedelta, limit: int) -> int:
    cutoff = utcnow() - older_than
    stored = exists().where(Artifact.job_id == Job.id, Artifact.deleted_at.is_(None))
    with session_scope() as session:
        ids = list(session.scalars(
            select(Job.id)
            .where(Job.completed_at < cutoff, Job.status.in_([s.value for s in TERMINAL]), ~stored)
            .order_by(Job.completed_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ))
        if ids:
            session.execute(delete(Job).where(Job.id.in_(ids)).execution_options(synchronize_session=False))
    return len(ids)


def _purge_uploads_batch(older_than: timedelta, limit: int) -> tuple[int, int]:
    """(deleted, whose object could not be deleted)."""
    cutoff = utcnow() - older_than
    with session_scope() as session:
        rows = session.execute(
            select(Upload.id, Upload.storage_key).where(Upload.created_at < cutoff)
            .order_by(Upload.created_at).limit(limit).with_for_update(skip_locked=True)
        ).all()
        if not rows:
            return 0, 0
        storage = get_storage()
        failed = set(storage.delete_many([key for _id, key in rows]))
        if failed:
            metrics.STORAGE_ERRORS.labels(backend=storage.scheme, operation="delete").inc(len(failed))
        gone = [upload_id for upload_id, key in rows if key not in failed]
        if gone:
            session.execute(delete(Upload).where(Upload.id.in_(gone)).execution_options(synchronize_session=False))
    return len(gone), len(failed)


def purge_due(max_batches: int = 20) -> dict[str, int]:
    """One retention round; see the module's docstring."""
    settings = get_settings()
    limit = settings.retention_batch_size
    stats = {"jobs": 0, "uploads": 0, "spend_days": 0, "budget_spent": 0}
    batches = 0
    if settings.job_retention > timedelta(0):
        while batches < max_batches:
            deleted = _purge_jobs_batch(settings.job_retention, limit)
            batches += 1
            stats["jobs"] += deleted
            if deleted < limit:
                break
        else:
            stats["budget_spent"] = 1
    if settings.upload_retention > timedelta(0):
        while batches < max_batches:
            deleted, failed = _purge_uploads_batch(settings.upload_retention, limit)
            batches += 1
            stats["uploads"] += deleted
            if deleted + failed < limit or not deleted:
                break
        else:
            stats["budget_spent"] = 1
    with session_scope() as session:
        stats["spend_days"] = affected(session.execute(
            delete(ClientSpend).where(ClientSpend.day < (utcnow() - SPEND_HISTORY).date())
        ))
    for kind in ("jobs", "uploads", "spend_days"):
        if stats[kind]:
            metrics.RETENTION_DELETED.labels(kind=kind).inc(stats[kind])
    if stats["jobs"] or stats["uploads"]:
        log.info("retention_purged", **stats)
    return stats


__all__ = ["SPEND_HISTORY", "purge_due"]
