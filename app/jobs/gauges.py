"""Gauges counted by one process: the scheduler's leader recounts them every
`GAUGES_TICK` and exports them, so no scrape runs an aggregate over the jobs table."""

from __future__ import annotations

from sqlalchemy import func, select

from app.clients.models import Client
from app.core import metrics
from app.core.db import session_scope
from app.jobs.models import Job
from app.jobs.states import JobStatus


def refresh() -> dict[str, int]:
    """Jobs waiting for a slot, per client (by name)."""
    with session_scope() as session:
        rows = session.execute(
            select(Client.name, func.count(Job.id))
            .join(Job, Job.client_id == Client.id)
            .where(Job.status == JobStatus.QUEUED.value, Job.slot_at.is_(None))
            .group_by(Client.name)
        ).all()
    seen = set()
    for name, count in rows:
        metrics.QUEUED_JOBS.labels(client=name).set(count)
        seen.add(name)
    for labels in list(metrics.QUEUED_JOBS._metrics):  # clients that no longer wait read 0, not stale
        if labels[0] not in seen:
            metrics.QUEUED_JOBS.labels(client=labels[0]).set(0)
    return {"clients_waiting": len(seen)}
