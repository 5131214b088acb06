"""Celery settings that differ from the defaults, each with its reason. The broker,
routing and publish settings are shared with every publisher (`app/core/broker.py`)."""

from __future__ import annotations

from typing import Any

from app.core.broker import broker_config
from app.core.settings import Settings
from app.core.tasks import TaskName


def celery_config(settings: Settings) -> dict[str, Any]:
    tick = settings.poll_tick.total_seconds()
    sweep = settings.sweep_interval.total_seconds()
    webhook_tick = settings.webhook_tick.total_seconds()
    expiry = settings.artifact_expiry_tick.total_seconds()
    return {
        **broker_config(settings),
        # A message is a nudge, acknowledged on receipt: if a worker dies mid-task, the sweeper
        # re-drives the job from Postgres within one sweep. Late acks would only add redelivery
        # an hour (or a visibility timeout) later, and acking on a connection lost meanwhile is
        # where kombu crashes the worker (see workers/patches.py).
        "task_acks_late": False,
        # A crash-looping task must not be requeued forever; the sweeper re-drives from the
        # database instead, bounded by per-job attempt counters.
        "task_reject_on_worker_lost": False,
        # Running tasks are not cancelled when the broker connection drops: a submit in the
        # middle of its create call must finish and record the upstream id.
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # One message at a time per process: long downloads must not hold short tasks hostage.
        "worker_prefetch_multiplier": 1,
        # Soft limit first so a task can clean up; the hard limit kills a wedged process.
        "task_soft_time_limit": 1800,
        "task_time_limit": 1900,
        # Flower and exporters need task events.
        "worker_send_task_events": True,
        # structlog owns the log format.
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "beat_schedule": {
            # Each entry expires about one interval later: a backlog of stale ticks is useless.
            "poll-due": _tick(TaskName.POLL_DUE, tick),
            "deliver-due": _tick(TaskName.DELIVER_DUE, webhook_tick),
            "sweep": _tick(TaskName.SWEEP, sweep),
            "expire-artifacts": _tick(TaskName.EXPIRE_ARTIFACTS, expiry),
        },
        "beat_schedule_filename": str(settings.data_dir.resolve() / "celerybeat-schedule"),
        "worker_concurrency": settings.worker_concurrency,
    }


def _tick(task: TaskName, seconds: float) -> dict[str, Any]:
    return {"task": task.value, "schedule": seconds, "options": {"expires": max(1.0, seconds)}}
