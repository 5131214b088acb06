"""Thin tasks: take an id, call one service function. Each is idempotent."""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import select

from app.core.db import session_scope
from app.core.tasks import TaskName
from app.jobs import collector, late_watch, submit
from app.jobs.models import Job
from app.webhooks import service as webhooks
from workers.celery_app import app


def _bind(task_id: str | None, **fields: object) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(task_id=task_id, **fields)


def _bind_job(task_id: str | None, job_id: str) -> None:
    """Every log line of a job's task names the job and its model, even on an early return."""
    _bind(task_id, job_id=job_id)
    try:
        with session_scope() as session:
            model = session.scalar(select(Job.model).where(Job.id == job_id))
    except Exception:  # the task itself will meet (and report) a database that is down
        return
    if model:
        structlog.contextvars.bind_contextvars(model=model)


@app.task(name=TaskName.SUBMIT_JOB.value, bind=True)
def submit_job(self: Any, job_id: str) -> str:
    _bind_job(self.request.id, job_id)
    return submit.submit(job_id)


@app.task(name=TaskName.COLLECT_JOB.value, bind=True)
def collect_job(self: Any, job_id: str) -> str:
    _bind_job(self.request.id, job_id)
    return collector.collect(job_id)


@app.task(name=TaskName.LATE_CHECK.value, bind=True)
def late_check(self: Any, job_id: str) -> str:
    _bind_job(self.request.id, job_id)
    return late_watch.late_check(job_id)


@app.task(name=TaskName.DELIVER_WEBHOOK.value, bind=True)
def deliver_webhook(self: Any, delivery_id: str) -> str:
    _bind(self.request.id, delivery_id=delivery_id)
    return webhooks.deliver_one(delivery_id)
