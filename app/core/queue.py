"""Celery messages are nudges, published only after the transaction commits.

`enqueue(session, task, ...)` buffers a message on the session (`db.on_commit`);
it is sent when the session commits and dropped when it rolls back. A message
that fails to publish is logged and left to the sweeper: the row in the
database already says what must happen next.

Nothing here knows the worker: the process installs a `Publisher` at startup
(the worker its own Celery app, the API and the CLI a producer-only one, tests a
recording one).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Sequence
from functools import partial
from typing import Any, Protocol

import structlog
from sqlalchemy.orm import Session

from app.core.db import on_commit
from app.core.settings import Settings, get_settings
from app.core.tasks import ROUTES, TaskName

log = structlog.get_logger(__name__)


class Publisher(Protocol):
    def publish(self, task: TaskName, args: Sequence[Any]) -> None:
        """Hand one message to the broker; raise if it could not be sent."""


class CeleryPublisher:
    """Publishes through a Celery app's `send_task` (its routes pick the queue).

    Declaring the queue (Celery re-declares it on each message, and kombu copies the
    entities to check its cache: 0.2 ms of CPU) happens once a minute per queue, which
    re-binds it after a broker restart."""

    REDECLARE_EVERY = 60.0

    def __init__(self, celery_app: Any) -> None:
        self.celery_app = celery_app
        self._declared: dict[str, float] = {}

    def publish(self, task: TaskName, args: Sequence[Any]) -> None:
        queue = ROUTES[task].value
        now = time.monotonic()
        fresh = now - self._declared.get(queue, -self.REDECLARE_EVERY) < self.REDECLARE_EVERY
        options: dict[str, Any] = {"declare": []} if fresh else {}
        self.celery_app.send_task(task.value, args=list(args), **options)
        if not fresh:
            self._declared[queue] = now


class RedisPublisher:
    """Publishes to a Redis broker with one LPUSH per message: the Celery message is built
    by Celery itself (`amqp.as_task_v2`, protocol 2), wrapped in the envelope kombu's
    Redis transport reads, and pushed straight onto the task's queue (kombu's anonymous
    exchange: the routing key is the queue). `send_task` costs about 0.5 ms of CPU per
    message through kombu's producer, connection and declaration machinery; this costs
    about 0.15 ms, on the API's hot path (measured in `make bench-api`'s profile).
    `tests/test_queue.py` checks the envelope against kombu's own."""

    def __init__(self, celery_app: Any, settings: Settings) -> None:
        import redis
        from celery.utils.nodenames import anon_nodename

        self.amqp = celery_app.amqp
        self.origin = anon_nodename()
        self.prefix = settings.broker_key_prefix
        # Fail fast like the Celery publisher did: a broker that is down costs a request
        # at most a couple of seconds, and the sweeper re-drives what was not sent.
        self.redis = redis.Redis.from_url(settings.broker_url, socket_connect_timeout=1, socket_timeout=2)

    def envelope(self, task: TaskName, args: Sequence[Any]) -> tuple[str, dict[str, Any]]:
        """The queue key and the message, as kombu's Redis transport stores them."""
        task_id = str(uuid.uuid4())
        message = self.amqp.as_task_v2(
            task_id, task.value, list(args), {}, argsrepr=repr(list(args)), kwargsrepr="{}", origin=self.origin,
        )
        queue = ROUTES[task].value
        body = base64.b64encode(json.dumps(message.body).encode()).decode()
        properties = {
            **message.properties, "delivery_mode": 2, "priority": 0, "body_encoding": "base64",
            "delivery_info": {"exchange": "", "routing_key": queue}, "delivery_tag": str(uuid.uuid4()),
        }
        return self.prefix + queue, {
            "body": body, "content-encoding": "utf-8", "content-type": "application/json",
            "headers": message.headers, "properties": properties,
        }

    def publish(self, task: TaskName, args: Sequence[Any]) -> None:
        key, message = self.envelope(task, args)
        self.redis.lpush(key, json.dumps(message))

    def waiting(self, task: TaskName) -> int:
        """Messages waiting in the task's queue (one LLEN)."""
        return int(self.redis.llen(self.prefix + ROUTES[task].value))


def producer(settings: Settings | None = None) -> Publisher:
    """A publisher for processes that run no tasks (the API, the CLI, the scheduler)."""
    from celery import Celery

    from app.core.broker import broker_config

    settings = settings or get_settings()
    celery_app = Celery("cometjobs", set_as_current=False)
    celery_app.conf.update(broker_config(settings))
    if settings.broker_url.startswith(("redis://", "rediss://")):
        return RedisPublisher(celery_app, settings)
    return CeleryPublisher(celery_app)


_installed: list[Publisher] = []


def install(publisher: Publisher | None) -> Publisher | None:
    """Make `publisher` the process's publisher (None: none); returns the one it replaces."""
    previous = _installed[0] if _installed else None
    _installed[:] = [publisher] if publisher is not None else []
    return previous


def installed() -> Publisher | None:
    return _installed[0] if _installed else None


def waiting(task: TaskName) -> int | None:
    """Messages waiting in the task's queue, when the broker can say (Redis); else None."""
    publisher = installed()
    count = getattr(publisher, "waiting", None)
    if count is None:
        return None
    try:
        return int(count(task))
    except Exception:  # broker down: unknown
        return None


def send_now(task: TaskName, *args: Any) -> bool:
    publisher = installed()
    if publisher is None:
        raise RuntimeError("no publisher installed: the process must call app.core.queue.install() at startup")
    try:
        publisher.publish(task, args)
        return True
    except Exception as exc:  # broker down: the sweeper re-drives from the database
        log.warning("publish_failed", task=task.value, error=repr(exc))
        return False


def enqueue(session: Session, task: TaskName, *args: Any) -> None:
    on_commit(session, partial(send_now, task, *args))


__all__ = ["CeleryPublisher", "Publisher", "RedisPublisher", "enqueue", "install", "installed", "producer", "send_now",
           "waiting"]
