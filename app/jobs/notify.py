"""A job's status or progress changed: say so to whoever waits on it (the API's long-poll
and event stream), in the same transaction as the change. Postgres delivers a NOTIFY
only when its transaction commits, and drops it on rollback, so a waiter never hears of
a change that did not happen, nor reads the row before the change is visible."""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import text
from sqlalchemy.orm import Session

CHANNEL = "cometjobs_jobs"
_ONE = text("SELECT pg_notify(:channel, :job_id)")
_MANY = text("SELECT pg_notify(:channel, job_id) FROM unnest(CAST(:job_ids AS text[])) AS job_id")


def job_changed(session: Session, job_ids: Collection[str]) -> None:
    """Nothing on SQLite (embedded dev): its waiters re-read on a short interval instead."""
    if not job_ids or session.get_bind().dialect.name != "postgresql":
        return
    if len(job_ids) == 1:
        session.execute(_ONE, {"channel": CHANNEL, "job_id": next(iter(job_ids))})
    else:
        session.execute(_MANY, {"channel": CHANNEL, "job_ids": list(job_ids)})
