"""The console's reads: aggregates for the overview, the filtered jobs list, a job's
deliveries, the clients table. Every change the console makes goes through the domains'
services instead (cancel, redeliver)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String, cast, func, or_, select
from sqlalchemy.orm import Session

from app.clients.models import Client
from app.jobs.models import Job, JobPoll, TimelineEvent
from app.jobs.states import ACTIVE, TERMINAL
from app.webhooks.models import WebhookAttempt, WebhookDelivery

ACTIVE_STATES = ("queued", "submitting", "running", "collecting")
TERMINAL_STATES = ("succeeded", "failed", "timed_out", "canceled")
assert set(ACTIVE_STATES) == {s.value for s in ACTIVE} and set(TERMINAL_STATES) == {s.value for s in TERMINAL}
RECENT = timedelta(hours=24)
PAGE = 50


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _iso(value: datetime | None) -> str | None:
    aware = _aware(value)
    return aware.isoformat() if aware else None


def _age(now: datetime, since: datetime | None) -> float | None:
    since = _aware(since)
    return None if since is None else max(0.0, (now - since).total_seconds())


def overview(session: Session, now: datetime) -> dict[str, Any]:
    """Jobs by model and state (active now, finished in the last 24 h), the oldest queued
    job, the webhook backlog and the last 24 h's failures by code."""
    since = now - RECENT
    by_model: dict[str, dict[str, int]] = defaultdict(dict)
    for model, status, count in session.execute(
        select(Job.model, Job.status, func.count()).where(Job.status.in_(ACTIVE_STATES)).group_by(Job.model, Job.status)
    ):
        by_model[model][status] = count
    for model, status, count in session.execute(
        select(Job.model, Job.status, func.count())
        .where(Job.status.in_(TERMINAL_STATES), Job.completed_at >= since)
        .group_by(Job.model, Job.status)
    ):
        by_model[model][status] = count
    totals = {state: sum(row.get(state, 0) for row in by_model.values()) for state in (*ACTIVE_STATES, *TERMINAL_STATES)}
    oldest_queued = session.scalar(select(func.min(Job.status_changed_at)).where(Job.status == "queued"))
    pending, oldest_pending = session.execute(
        select(func.count(), func.min(WebhookDelivery.created_at)).where(WebhookDelivery.status == "pending")
    ).one()
    dead = session.scalar(
        select(func.count()).where(WebhookDelivery.status == "dead", WebhookDelivery.updated_at >= since)
    )
    failures = [
        {"code": code or "unknown", "source": source or "unknown", "count": count,
         "last": _iso(last)}
        for code, source, count, last in session.execute(
            select(Job.error_code, Job.error_source, func.count(), func.max(Job.completed_at))
            .where(Job.status.in_(("failed", "timed_out")), Job.completed_at >= since)
            .group_by(Job.error_code, Job.error_source)
            .order_by(func.count().desc(), Job.error_code)
            .limit(20)
        )
    ]
    return {
        "jobs": {model: dict(states) for model, states in sorted(by_model.items())},
        "totals": totals,
        "oldest_queued_seconds": _age(now, oldest_queued),
        "webhooks": {
            "pending": pending or 0, "oldest_pending_seconds": _age(now, oldest_pending), "dead_24h": dead or 0,
        },
        "failures": failures,
    }


@dataclass
class JobFilter:
    client: str | None = None
    model: str | None = None
    status: str | None = None
    code: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    q: str | None = None
    before: str | None = None

    def as_query(self) -> dict[str, str]:
        """The filter as query parameters (the next page's link keeps it)."""
        out = {
            "client": self.client, "model": self.model, "status": self.status, "code": self.code, "q": self.q,
            "since": self.since.strftime("%Y-%m-%dT%H:%M") if self.since else None,
            "until": self.until.strftime("%Y-%m-%dT%H:%M") if self.until else None,
        }
        return {k: v for k, v in out.items() if v}


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def jobs(session: Session, wanted: JobFilter) -> tuple[list[tuple[Job, str]], str | None]:
    """A page of jobs (newest first) with their client's name, and the next page's cursor.
    `q` matches a job id or upstream id exactly, or any text in the job's metadata."""
    query = select(Job, Client.name).join(Client, Client.id == Job.client_id)
    if wanted.client:
        query = query.where(or_(Client.id == wanted.client, Client.name == wanted.client))
    if wanted.model:
        query = query.where(Job.model == wanted.model)
    if wanted.status:
        query = query.where(Job.status == wanted.status)
    if wanted.code:
        query = query.where(Job.error_code == wanted.code)
    if wanted.since:
        query = query.where(Job.created_at >= wanted.since)
    if wanted.until:
        query = query.where(Job.created_at < wanted.until)
    if wanted.q:
        text = wanted.q.strip()
        query = query.where(or_(
            Job.id == text, Job.upstream_id == text,
            cast(Job.meta, String).ilike(_like(text), escape="\\"),
        ))
    if wanted.before:
        query = query.where(Job.id < wanted.before)
    rows = [(job, name) for job, name in session.execute(query.order_by(Job.id.desc()).limit(PAGE + 1))]
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return rows, rows[-1][0].id if more else None


def models(session: Session) -> list[str]:
    return list(session.scalars(select(Job.model).distinct().order_by(Job.model)))


def timeline(session: Session, job_id: str, limit: int = 500) -> list[TimelineEvent]:
    return list(session.scalars(
        select(TimelineEvent).where(TimelineEvent.job_id == job_id).order_by(TimelineEvent.id).limit(limit)
    ))


def polls(session: Session, job_id: str, events: list[TimelineEvent]) -> tuple[int, int | None] | None:
    """(polls, failed in a row): the live schedule's while the job runs; afterwards the
    count the status event that ended its run recorded; None if it never ran."""
    live = session.get(JobPoll, job_id)
    if live is not None:
        return live.poll_count, live.poll_errors
    ended = [e.data["polls"] for e in events if e.data and "polls" in e.data]
    return (int(ended[-1]), None) if ended else None


def deliveries(session: Session, job_id: str) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
    """Every delivery of the job, each with every attempt, in order."""
    rows = list(session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.job_id == job_id).order_by(WebhookDelivery.seq)
    ))
    attempts: dict[str, list[WebhookAttempt]] = defaultdict(list)
    for attempt in session.scalars(
        select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_([d.id for d in rows]))
        .order_by(WebhookAttempt.started_at, WebhookAttempt.attempt)
    ):
        attempts[attempt.delivery_id].append(attempt)
    return [(d, attempts[d.id]) for d in rows]


def clients(session: Session, now: datetime) -> list[dict[str, Any]]:
    """Every client with its jobs in flight, its jobs of the last 24 h and its webhook backlog."""
    since = now - RECENT
    active = dict(session.execute(
        select(Job.client_id, func.count()).where(Job.status.in_(ACTIVE_STATES)).group_by(Job.client_id)
    ).all())
    recent: dict[str, dict[str, int]] = defaultdict(dict)
    for client_id, status, count in session.execute(
        select(Job.client_id, Job.status, func.count()).where(Job.created_at >= since)
        .group_by(Job.client_id, Job.status)
    ):
        recent[client_id][status] = count
    pending = dict(session.execute(
        select(WebhookDelivery.client_id, func.count()).where(WebhookDelivery.status == "pending")
        .group_by(WebhookDelivery.client_id)
    ).all())
    out = []
    for client in session.scalars(select(Client).order_by(Client.name, Client.created_at)):
        out.append({
            "client": client, "active": active.get(client.id, 0), "recent": recent.get(client.id, {}),
            "pending_webhooks": pending.get(client.id, 0),
        })
    return out
