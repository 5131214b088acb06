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

from collections.abc import Sequence
from functools import partial
from typing import Any, Protocol

import structlog
from sqlalchemy.orm import Session

from app.core.db import on_commit
from app.core.settings import Settings, get_settings
from app.core.tasks import TaskName

log = structlog.get_logger(__name__)


class Publisher(Protocol):
    def publish(self, task: TaskName, args: Sequence[Any]) -> None:
        """Hand one message to the broker; raise if it could not be sent."""


class CeleryPublisher:
    """Publishes through a Celery app's `send_task` (its routes pick the queue)."""

    def __init__(self, celery_app: Any) -> None:
        self.celery_app = celery_app

    def publish(self, task: TaskName, args: Sequence[Any]) -> None:
        self.celery_app.send_task(task.value, args=list(args))


def producer(settings: Settings | None = None) -> CeleryPublisher:
    """A publisher for processes that run no tasks (the API, the CLI)."""
    from celery import Celery

    from app.core.broker import broker_config

    celery_app = Celery("cometjobs", set_as_current=False)
    celery_app.conf.update(broker_config(settings or get_settings()))
    return CeleryPublisher(celery_app)


_installed: list[Publisher] = []


def install(publisher: Publisher | None) -> Publisher | None:
    """Make `publisher` the process's publisher (None: none); returns the one it replaces."""
    previous = _installed[0] if _installed else None
    _installed[:] = [publisher] if publisher is not None else []
    return previous


def installed() -> Publisher | None:
    return _installed[0] if _installed else None


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


__all__ = ["CeleryPublisher", "Publisher", "enqueue", "install", "installed", "producer", "send_now"]
