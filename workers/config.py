"""Celery settings that differ from the defaults, each with its reason."""

from __future__ import annotations

from kombu import Exchange, Queue

from app.core.settings import Settings

QUEUES = ("submit", "poll", "collect", "webhooks", "maintenance")


def celery_config(settings: Settings) -> dict:
    tick = settings.poll_tick.total_seconds()
    sweep = settings.sweep_interval.total_seconds()
    webhook_tick = settings.webhook_tick.total_seconds()
    expiry = settings.artifact_expiry_tick.total_seconds()
    return {
        "broker_url": settings.broker_url,
        # Tasks return nothing anyone waits for: Postgres holds every outcome.
        "task_ignore_result": True,
        "result_backend": None,
        # JSON only: no pickle from the broker.
        "task_serializer": "json",
        "accept_content": ["json"],
        "timezone": "UTC",
        "enable_utc": True,
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
        # No task uses countdowns, so an unacknowledged (prefetched) message is redelivered
        # after 5 minutes rather than the default hour.
        "broker_transport_options": _transport_options(settings),
        # The API publishes inside a request: fail fast and leave it to the sweeper.
        "task_publish_retry": True,
        "task_publish_retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
        "broker_connection_timeout": 2,
        "broker_connection_retry_on_startup": True,
        # Soft limit first so a task can clean up; the hard limit kills a wedged process.
        "task_soft_time_limit": 1800,
        "task_time_limit": 1900,
        # Flower and exporters need task events.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        # structlog owns the log format.
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        # Each queue with its own exchange and key: queues that share the default binding
        # would each receive a copy of every message.
        "task_queues": [Queue(name, Exchange(name, type="direct"), routing_key=name) for name in QUEUES],
        "task_default_queue": "maintenance",
        "task_routes": {
            "cometjobs.submit_job": {"queue": "submit"},
            "cometjobs.poll_due": {"queue": "poll"},
            "cometjobs.late_check": {"queue": "poll"},
            "cometjobs.collect_job": {"queue": "collect"},
            "cometjobs.deliver_webhook": {"queue": "webhooks"},
            "cometjobs.deliver_due": {"queue": "webhooks"},
            "cometjobs.sweep": {"queue": "maintenance"},
            "cometjobs.maintenance.*": {"queue": "maintenance"},
        },
        "beat_schedule": {
            # Each entry expires about one interval later: a backlog of stale ticks is useless.
            "poll-due": {"task": "cometjobs.poll_due", "schedule": tick, "options": {"expires": max(1.0, tick)}},
            "deliver-due": {
                "task": "cometjobs.deliver_due", "schedule": webhook_tick,
                "options": {"expires": max(1.0, webhook_tick)},
            },
            "sweep": {"task": "cometjobs.sweep", "schedule": sweep, "options": {"expires": max(1.0, sweep)}},
            "expire-artifacts": {
                "task": "cometjobs.maintenance.expire_artifacts", "schedule": expiry,
                "options": {"expires": max(1.0, expiry)},
            },
        },
        "beat_schedule_filename": str(settings.data_dir.resolve() / "celerybeat-schedule"),
        "worker_concurrency": settings.worker_concurrency,
    }


def _transport_options(settings: Settings) -> dict:
    if settings.broker_url.startswith("sqla+"):
        # kombu's SQLAlchemy transport hands these to create_engine().
        return {}
    options = {
        "visibility_timeout": 300,
        "socket_connect_timeout": 1,
        "socket_timeout": 10,
        "retry_on_timeout": True,
    }
    if settings.broker_key_prefix:
        options["global_keyprefix"] = settings.broker_key_prefix
    return options
