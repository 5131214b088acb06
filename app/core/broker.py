"""The broker side of Celery that publishers need: connection, routing and publish
settings (each with its reason). The worker's own settings build on these
(`workers/config.py`); the API publishes through a producer-only Celery app made
from the same dictionary, so both route every task the same way."""

from __future__ import annotations

from typing import Any

from kombu.entity import Exchange, Queue

from app.core.settings import Settings
from app.core.tasks import ROUTES, QueueName


def broker_config(settings: Settings) -> dict[str, Any]:
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
        # No task uses countdowns, so an unacknowledged (prefetched) message is redelivered
        # after 5 minutes rather than the default hour.
        "broker_transport_options": _transport_options(settings),
        # Publishing happens inside a request or a task: fail fast and leave it to the sweeper.
        "task_publish_retry": True,
        "task_publish_retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
        "broker_connection_timeout": 2,
        "broker_connection_retry_on_startup": True,
        # No "task-sent" event: it is a second broker write per message on the API's hot
        # path, and Flower shows each task from the worker's "received" event anyway.
        "task_send_sent_event": False,
        # Each queue with its own exchange and key: queues that share the default binding
        # would each receive a copy of every message.
        "task_queues": [Queue(name.value, Exchange(name.value, type="direct"), routing_key=name.value)
                        for name in QueueName],
        "task_default_queue": QueueName.MAINTENANCE.value,
        "task_routes": {task.value: {"queue": queue.value} for task, queue in ROUTES.items()},
    }


def _transport_options(settings: Settings) -> dict[str, Any]:
    if settings.broker_url.startswith("sqla+"):
        # kombu's SQLAlchemy transport hands these to create_engine().
        return {}
    if settings.broker_url.startswith(("amqp://", "amqps://", "pyamqp://")):
        # RabbitMQ acknowledges each publish (publisher confirms): a message it did not take
        # is a failed send, which the sweeper re-drives, never one silently dropped.
        return {"confirm_publish": True}
    options: dict[str, Any] = {
        "visibility_timeout": 300,
        "socket_connect_timeout": 1,
        "socket_timeout": 10,
        "retry_on_timeout": True,
    }
    if settings.broker_key_prefix:
        options["global_keyprefix"] = settings.broker_key_prefix
    return options

