"""Thin tasks: take an id, call one service function. Each is idempotent."""

from __future__ import annotations

import structlog

from workers.celery_app import app


def _bind(task_id: str | None, **fields: object) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, **fields)


def _bind_job(task_id: str | None, job_id: str) -> None:
    """Every log line of a job's task names the job and its model, even on an early return."""
    _bind(task_id, job_id=job_id)
    try:
        from sqlalchemy import select

        from app.core.db import session_scope
        from app.jobs.models import Job

        with session_scope() as session:
            model = session.scalar(select(Job.model).where(Job.id == job_id))
    except Exception:  # the task itself will meet (and report) a database that is down
        return
    if model:
        structlog.contextvars.bind_contextvars(model=model)


@app.task(name="cometjobs.submit_job", bind=True)
def submit_job(self, job_id: str) -> str:  # type: ignore[no-untyped-def]
    from app.jobs.submit import submit

    _bind_job(self.request.id, job_id)
    return submit(job_id)


@app.task(name="cometjobs.collect_job", bind=True)
def collect_job(self, job_id: str) -> str:  # type: ignore[no-untyped-def]
    from app.jobs.collector import collect

    _bind_job(self.request.id, job_id)
    return collect(job_id)


@app.task(name="cometjobs.late_check", bind=True)
def late_check(self, job_id: str) -> str:  # type: ignore[no-untyped-def]
    from app.jobs.late_watch import late_check as run

    _bind_job(self.request.id, job_id)
    return run(job_id)


@app.task(name="cometjobs.deliver_webhook", bind=True)
def deliver_webhook(self, delivery_id: str) -> str:  # type: ignore[no-untyped-def]
    from app.webhooks.service import deliver_one

    _bind(self.request.id, delivery_id=delivery_id)
    return deliver_one(delivery_id)


@app.task(name="cometjobs.poll_due", bind=True)
def poll_due(self) -> dict:  # type: ignore[no-untyped-def]
    from app.jobs.poller import poll_due as run

    _bind(self.request.id)
    return run()


@app.task(name="cometjobs.deliver_due", bind=True)
def deliver_due(self) -> dict:  # type: ignore[no-untyped-def]
    from app.webhooks.service import deliver_due as run

    _bind(self.request.id)
    return run()


@app.task(name="cometjobs.sweep", bind=True)
def sweep(self) -> dict:  # type: ignore[no-untyped-def]
    from app.jobs.sweeper import sweep as run

    _bind(self.request.id)
    return run()


@app.task(name="cometjobs.maintenance.expire_artifacts", bind=True)
def expire_artifacts(self) -> dict:  # type: ignore[no-untyped-def]
    from app.storage.retention import expire_due

    _bind(self.request.id)
    return expire_due()
