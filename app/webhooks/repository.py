"""All SQL about webhook deliveries and their attempts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Row, exists, func, insert, select, update
from sqlalchemy.orm import Session, aliased

from app.jobs.schemas import WebhookStateOut
from app.webhooks.models import WebhookAttempt, WebhookDelivery

PENDING, DELIVERED, DEAD, CANCELED, DISABLED = "pending", "delivered", "dead", "canceled", "disabled"

CLAIM_COLUMNS = (
    WebhookDelivery.id, WebhookDelivery.job_id, WebhookDelivery.client_id, WebhookDelivery.url,
    WebhookDelivery.payload, WebhookDelivery.attempts, WebhookDelivery.event_type,
)


def next_seq(session: Session, job_id: str) -> int:
    current = session.scalar(select(func.max(WebhookDelivery.seq)).where(WebhookDelivery.job_id == job_id))
    return (current or 0) + 1


def insert_delivery(session: Session, values: dict[str, Any]) -> None:
    session.execute(insert(WebhookDelivery).values(**values))


def claim(
    session: Session, now: datetime, lease_until: datetime, limit: int, delivery_id: str | None = None
) -> Sequence[Row[Any]]:
    """Claim due deliveries, in order per job: one waits while an earlier one is pending."""
    earlier = aliased(WebhookDelivery)
    blocked = exists().where(
        earlier.job_id == WebhookDelivery.job_id,
        earlier.seq < WebhookDelivery.seq,
        earlier.status == PENDING,
    )
    due = select(WebhookDelivery.id).where(
        WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= now, ~blocked
    )
    if delivery_id is not None:
        due = due.where(WebhookDelivery.id == delivery_id)
    due = due.order_by(WebhookDelivery.next_attempt_at).limit(limit).with_for_update(skip_locked=True)
    stmt = (
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id.in_(due.scalar_subquery()),
            WebhookDelivery.status == PENDING,
            WebhookDelivery.next_attempt_at <= now,
        )
        .values(next_attempt_at=lease_until, attempts=WebhookDelivery.attempts + 1, updated_at=now)
        .returning(*CLAIM_COLUMNS)
        .execution_options(synchronize_session=False)
    )
    return session.execute(stmt).all()


def finish(session: Session, delivery_id: str, attempt: int, values: dict[str, Any]) -> bool:
    """Record an attempt's outcome, unless the delivery moved on meanwhile (cancel, redeliver)."""
    result = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == PENDING,
            WebhookDelivery.attempts == attempt,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


def add_attempts(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(WebhookAttempt), rows)


def next_pending_for_jobs(session: Session, job_ids: Iterable[str]) -> list[str]:
    ids = list(set(job_ids))
    if not ids:
        return []
    first = (
        select(WebhookDelivery.job_id, func.min(WebhookDelivery.seq).label("seq"))
        .where(WebhookDelivery.job_id.in_(ids), WebhookDelivery.status == PENDING)
        .group_by(WebhookDelivery.job_id)
        .subquery()
    )
    return list(
        session.scalars(
            select(WebhookDelivery.id).join(
                first, (WebhookDelivery.job_id == first.c.job_id) & (WebhookDelivery.seq == first.c.seq)
            )
        )
    )


def cancel_pending(session: Session, job_id: str, event_types: Iterable[str], now: datetime) -> int:
    result = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.job_id == job_id,
            WebhookDelivery.status == PENDING,
            WebhookDelivery.event_type.in_(list(event_types)),
        )
        .values(status=CANCELED, next_attempt_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def for_job(session: Session, job_id: str) -> Sequence[WebhookDelivery]:
    return session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.job_id == job_id).order_by(WebhookDelivery.seq)
    ).all()


def attempts_for(session: Session, delivery_ids: Iterable[str]) -> dict[str, list[WebhookAttempt]]:
    ids = list(delivery_ids)
    out: dict[str, list[WebhookAttempt]] = {i: [] for i in ids}
    if ids:
        rows = session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(ids))
            .order_by(WebhookAttempt.delivery_id, WebhookAttempt.attempt)
        )
        for row in rows:
            out[row.delivery_id].append(row)
    return out


def get(session: Session, delivery_id: str) -> WebhookDelivery | None:
    return session.get(WebhookDelivery, delivery_id, populate_existing=True)


def webhook_state(session: Session, job_ids: Iterable[str]) -> dict[str, WebhookStateOut]:
    """Per job, the state of its latest delivery (usually the terminal event)."""
    ids = list(job_ids)
    if not ids:
        return {}
    latest = (
        select(WebhookDelivery.job_id, func.max(WebhookDelivery.seq).label("seq"))
        .where(WebhookDelivery.job_id.in_(ids))
        .group_by(WebhookDelivery.job_id)
        .subquery()
    )
    rows = session.scalars(
        select(WebhookDelivery).join(
            latest, (WebhookDelivery.job_id == latest.c.job_id) & (WebhookDelivery.seq == latest.c.seq)
        )
    )
    out = {}
    for d in rows:
        state = d.status
        if state == PENDING and d.attempts > 0 and d.last_error is not None:
            state = "retrying"
        out[d.job_id] = WebhookStateOut(
            state=state,
            event_type=d.event_type,
            attempts=d.attempts,
            next_attempt_at=d.next_attempt_at if d.status == PENDING else None,
            last_status_code=d.last_status_code,
            last_error=d.last_error,
        )
    return out


def dead_between(session: Session, start: datetime, end: datetime, client_id: str | None) -> list[str]:
    query = select(WebhookDelivery.id).where(
        WebhookDelivery.status == DEAD,
        WebhookDelivery.created_at >= start,
        WebhookDelivery.created_at < end,
    )
    if client_id:
        query = query.where(WebhookDelivery.client_id == client_id)
    return list(session.scalars(query))


def reopen(session: Session, delivery_ids: Iterable[str], now: datetime) -> int:
    ids = list(delivery_ids)
    if not ids:
        return 0
    result = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids), WebhookDelivery.status != PENDING)
        .values(status=PENDING, next_attempt_at=now, last_error=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount
