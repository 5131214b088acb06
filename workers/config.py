"""Celery settings that differ from the defaults, each with its reason. The broker,
routing and publish settings are shared with every publisher (`app/core/broker.py`).
There is no beat schedule: periodic work runs in `cometjobs scheduler`."""

from __future__ import annotations

from typing import Any

from app.core.broker import broker_config
from app.core.settings import Settings


def celery_config(settings: Settings) -> dict[str, Any]:
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
        "worker_concurrency": settings.worker_concurrency,
    }
