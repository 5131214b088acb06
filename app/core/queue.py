"""Celery messages are nudges, published only after the transaction commits.

`enqueue(session, ...)` buffers a task on the session; the buffer is sent when
the session commits and dropped when it rolls back. A message that fails to
publish is logged and left to the sweeper: the row in the database already
says what must happen next.
"""

from __future__ import annotations

from typing import Any

import structlog
from sqlalchemy import event
from sqlalchemy.orm import Session

log = structlog.get_logger(__name__)
_KEY = "cometjobs_pending_tasks"


def enqueue(session: Session, task_name: str, *args: Any) -> None:
    session.info.setdefault(_KEY, []).append((task_name, args))


def send_now(task_name: str, *args: Any) -> bool:
    from workers.celery_app import app as celery_app

    try:
        celery_app.send_task(task_name, args=list(args))
        return True
    except Exception as exc:  # broker down: the sweeper re-drives from the database
        log.warning("publish_failed", task=task_name, error=repr(exc))
        return False


@event.listens_for(Session, "after_commit")
def _publish_after_commit(session: Session) -> None:
    pending = session.info.pop(_KEY, None)
    for task_name, args in pending or ():
        send_now(task_name, *args)


@event.listens_for(Session, "after_rollback")
def _drop_after_rollback(session: Session) -> None:
    session.info.pop(_KEY, None)
