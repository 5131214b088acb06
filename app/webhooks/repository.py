"""All SQL about webhook deliveries and their attempts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    and_,
    bindparam,
    case,
    exists,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session, aliased

from app.core.db import NOW, AnyRow, affected, table
from app.webhooks.models import WebhookAttempt, WebhookDelivery
from app.webhooks.schemas import DeliveryState, WebhookStateOut

PENDING, DELIVERED, DEAD, FAILED, CANCELED, DISABLED, SUPERSEDED = (
    "pending", "delivered", "dead", "failed", "canceled", "disabled", "superseded",
)
REDELIVERABLE = (DELIVERED, DEAD, FAILED, CANCELED, DISABLED, SUPERSEDED)
# No longer attempted after an attempt: the job's next delivery may go.
SETTLED = (DELIVERED, DEAD, FAILED, DISABLED)

CLAIM_COLUMNS = (
    WebhookDelivery.id, WebhookDelivery.job_id, WebhookDelivery.client_id, WebhookDelivery.url,
    WebhookDelivery.payload, WebhookDelivery.attempts, WebhookDelivery.event_type,
)
_table = table(WebhookDelivery)


def next_seq(session: Session, job_id: str) -> int:
    current = session.scalar(select(func.max(WebhookDelivery.seq)).where(WebhookDelivery.job_id == job_id))
    return (current or 0) + 1


def insert_delivery(session: Session, values: dict[str, Any]) -> None:
    session.execute(insert(WebhookDelivery).values(**values))


def claim(
    session: Session, now: datetime, lease_until: datetime, limit: int, delivery_id: str | None = None
) -> Sequence[AnyRow]:
    """Claim due deliveries, in order per job: one waits while an earlier one is pending.

    The claim pushes `next_attempt_at` to `lease_until`, which doubles as the
    claim's token: only the claimer that set it may record the outcome.
    """
    if delivery_id is None:
        return session.execute(_CLAIM_DUE, {"now": now, "lease_until": lease_until, "limit": limit}).all()
    return session.execute(_CLAIM_ONE, {"now": now, "lease_until": lease_until, "delivery_id": delivery_id}).all()


def _claim_statement(one: bool) -> Any:
    earlier = aliased(WebhookDelivery)
    blocked = exists().where(
        earlier.job_id == WebhookDelivery.job_id,
        earlier.seq < WebhookDelivery.seq,
        earlier.status == PENDING,
    )
    due = select(WebhookDelivery.id).where(
        WebhookDelivery.status == PENDING, WebhookDelivery.next_attempt_at <= NOW, ~blocked
    )
    if one:  # one row by its key: no order to walk (the plan stays a primary-key lookup)
        due = due.where(WebhookDelivery.id == bindparam("delivery_id")).with_for_update(skip_locked=True)
    else:
        due = due.order_by(WebhookDelivery.next_attempt_at).limit(bindparam("limit")).with_for_update(skip_locked=True)
    return (
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id.in_(due.scalar_subquery()),
            WebhookDelivery.status == PENDING,
            WebhookDelivery.next_attempt_at <= NOW,
        )
        .values(next_attempt_at=bindparam("lease_until"), attempts=WebhookDelivery.attempts + 1, updated_at=NOW)
        .returning(*CLAIM_COLUMNS)
        .execution_options(synchronize_session=False)
    )


# Built once: a statement's construction costs more CPU than an idle tick's query.
_CLAIM_DUE, _CLAIM_ONE = _claim_statement(one=False), _claim_statement(one=True)


def finish_many(session: Session, rows: list[dict[str, Any]], now: datetime) -> set[str]:
    """Record outcomes in one executemany; returns the ids whose claim still held.

    Each row carries `id`, `attempt` and `lease` (the claim) and the new `status`,
    `next`, `code`, `error` and `delivered`; a delivery that moved on meanwhile
    (canceled, redelivered, lease lost) is left alone.
    """
    if not rows:
        return set()
    stamp = WebhookDelivery.next_attempt_at.type
    stmt = (
        update(_table)
        .where(
            _table.c.id == bindparam("b_id"),
            _table.c.status == PENDING,
            _table.c.attempts == bindparam("b_attempt"),
            _table.c.next_attempt_at == bindparam("b_lease", type_=stamp),
        )
        .values(
            status=bindparam("b_status"),
            next_attempt_at=bindparam("b_next", type_=stamp),
            last_status_code=bindparam("b_code"),
            last_error=bindparam("b_error"),
            delivered_at=bindparam("b_delivered", type_=stamp),
            updated_at=bindparam("b_now", type_=stamp),
        )
    )
    params = [{f"b_{key}": value for key, value in row.items()} | {"b_now": now} for row in rows]
    ids = {row["id"] for row in rows}
    if affected(session.execute(stmt, params)) == len(rows):
        return ids
    # Rare: some claim was lost. Ours are exactly the rows stamped with this `now`.
    return set(session.scalars(
        select(WebhookDelivery.id).where(WebhookDelivery.id.in_(ids), WebhookDelivery.updated_at == now)
    ))


_RECORD_PG = text("""
WITH v AS (
    SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS v(
        id text, attempt int, lease timestamptz, status text, next timestamptz, code int, error text,
        delivered timestamptz, attempt_id text, started_at timestamptz, latency_ms int, body text)
), attempts AS (
    INSERT INTO webhook_attempts
        (id, delivery_id, attempt, started_at, status_code, latency_ms, response_body, error)
    SELECT attempt_id, id, attempt, started_at, code, latency_ms, body, error FROM v
)
UPDATE webhook_deliveries AS d
SET status = v.status, next_attempt_at = v.next, last_status_code = v.code,
    last_error = v.error, delivered_at = v.delivered, updated_at = :now
FROM v
WHERE d.id = v.id AND d.status = 'pending' AND d.attempts = v.attempt AND d.next_attempt_at = v.lease
RETURNING d.id
""")


def _json_default(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()  # microseconds and offset: the lease compares exactly
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


_OUTCOME_KEYS = ("id", "attempt", "lease", "status", "next", "code", "error", "delivered")


def record_outcomes(session: Session, rows: list[dict[str, Any]], now: datetime) -> set[str]:
    """Store one attempt per row and move each delivery on; returns the ids whose
    claim still held (see `finish_many`: a delivery that moved on is left alone, its
    attempt is still kept). A row carries the claim (`id`, `attempt`, `lease`), the
    outcome (`status`, `next`, `code`, `error`, `delivered`) and the attempt
    (`attempt_id`, `started_at`, `latency_ms`, `body`).

    On Postgres it is one statement over the batch passed as one JSON document
    (serialised in C); the generic way, an INSERT and then an UPDATE per row, cost the
    worker noticeably more Python time per batch (`make bench-webhooks`, README)."""
    if not rows:
        return set()
    if session.get_bind().dialect.name != "postgresql":
        add_attempts(session, [
            {"id": r["attempt_id"], "delivery_id": r["id"], "attempt": r["attempt"], "started_at": r["started_at"],
             "status_code": r["code"], "latency_ms": r["latency_ms"], "response_body": r["body"],
             "error": r["error"]}
            for r in rows
        ])
        return finish_many(session, [{key: r[key] for key in _OUTCOME_KEYS} for r in rows], now)
    document = json.dumps(rows, default=_json_default, separators=(",", ":"))
    return set(session.execute(_RECORD_PG, {"rows": document, "now": now}).scalars())


def release(session: Session, rows: list[dict[str, Any]], now: datetime) -> int:
    """Hand back claimed deliveries never sent: due again, the claim's attempt undone."""
    if not rows:
        return 0
    stamp = WebhookDelivery.next_attempt_at.type
    stmt = (
        update(_table)
        .where(
            _table.c.id == bindparam("b_id"),
            _table.c.status == PENDING,
            _table.c.attempts == bindparam("b_attempt"),
            _table.c.next_attempt_at == bindparam("b_lease", type_=stamp),
        )
        .values(attempts=_table.c.attempts - 1, next_attempt_at=bindparam("b_now", type_=stamp))
    )
    params = [{"b_id": r["id"], "b_attempt": r["attempt"], "b_lease": r["lease"], "b_now": now} for r in rows]
    return affected(session.execute(stmt, params))


def add_attempts(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(table(WebhookAttempt)), rows)


def next_pending_for_jobs(session: Session, job_ids: Iterable[str]) -> list[str]:
    """The first pending delivery of each job that has one and is due now or sooner."""
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


def _stop_pending(session: Session, status: str, now: datetime, *conditions: Any) -> int:
    result = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.status == PENDING, *conditions)
        .values(status=status, next_attempt_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return affected(result)


def cancel_pending(session: Session, job_id: str, event_types: Iterable[str], now: datetime) -> int:
    return _stop_pending(
        session, CANCELED, now, WebhookDelivery.job_id == job_id, WebhookDelivery.event_type.in_(list(event_types))
    )


def supersede_unsent(session: Session, job_id: str, event_type: str, now: datetime) -> int:
    """A newer snapshot (job.progress) replaces older ones that were never sent."""
    return _stop_pending(
        session, SUPERSEDED, now, WebhookDelivery.job_id == job_id, WebhookDelivery.event_type == event_type,
        WebhookDelivery.attempts == 0,
    )


def disable_pending_for_url(session: Session, client_id: str, url: str, now: datetime) -> int:
    """After a 410, nothing more goes to that URL: pending deliveries not in flight stop too."""
    return _stop_pending(
        session, DISABLED, now, WebhookDelivery.client_id == client_id, WebhookDelivery.url == url,
        WebhookDelivery.next_attempt_at <= now,
    )


def last_created(session: Session, job_ids: Iterable[str], event_type: str) -> dict[str, datetime]:
    ids = list(job_ids)
    if not ids:
        return {}
    rows = session.execute(
        select(WebhookDelivery.job_id, func.max(WebhookDelivery.created_at))
        .where(WebhookDelivery.job_id.in_(ids), WebhookDelivery.event_type == event_type)
        .group_by(WebhookDelivery.job_id)
    ).all()
    return {job_id: at for job_id, at in rows}


def for_job(
    session: Session, job_id: str, *, after_seq: int | None = None, limit: int | None = None
) -> Sequence[WebhookDelivery]:
    query = select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
    if after_seq is not None:
        query = query.where(WebhookDelivery.seq > after_seq)
    return session.scalars(query.order_by(WebhookDelivery.seq).limit(limit)).all()


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


def delivery_state(d: WebhookDelivery) -> DeliveryState:
    return state_of(d.status, d.attempts, d.last_error)


def state_of(status: str, attempts: int, last_error: str | None) -> DeliveryState:
    """`status`, except `retrying` while a failed delivery waits for its next attempt."""
    if status == PENDING and attempts > 0 and last_error is not None:
        return "retrying"
    return cast(DeliveryState, status)


def _state_of_jobs() -> Any:
    """Built once: every job view reads it, and building the subquery's columns costs more
    than running it."""
    pick = (
        select(
            WebhookDelivery.job_id,
            func.coalesce(
                func.min(case((WebhookDelivery.status == PENDING, WebhookDelivery.seq))),
                func.max(case((WebhookDelivery.status != SUPERSEDED, WebhookDelivery.seq))),
            ).label("seq"),
        )
        .where(WebhookDelivery.job_id.in_(bindparam("ids", expanding=True)))
        .group_by(WebhookDelivery.job_id)
        .subquery()
    )
    return select(WebhookDelivery).join(
        pick, and_(WebhookDelivery.job_id == pick.c.job_id, WebhookDelivery.seq == pick.c.seq)
    )


_STATE_OF_JOBS = _state_of_jobs()


def webhook_state(session: Session, job_ids: Iterable[str]) -> dict[str, WebhookStateOut]:
    """Per job, the delivery that matters now: the first one still pending (everything
    after it waits for it), else the latest (usually the terminal event)."""
    ids = list(job_ids)
    if not ids:
        return {}
    rows = session.scalars(_STATE_OF_JOBS, {"ids": ids})
    out = {}
    for d in rows:
        out[d.job_id] = WebhookStateOut(
            state=delivery_state(d),
            event_type=d.event_type,
            attempts=d.attempts,
            next_attempt_at=d.next_attempt_at if d.status == PENDING else None,
            last_status_code=d.last_status_code,
            last_error=d.last_error,
        )
    return out


def dead_between(
    session: Session, start: datetime, end: datetime, client_id: str | None, limit: int | None = None
) -> list[str]:
    query = select(WebhookDelivery.id).where(
        WebhookDelivery.status == DEAD,
        WebhookDelivery.created_at >= start,
        WebhookDelivery.created_at < end,
    )
    if client_id:
        query = query.where(WebhookDelivery.client_id == client_id)
    return list(session.scalars(query.order_by(WebhookDelivery.created_at).limit(limit)))


def reopen(session: Session, delivery_ids: Iterable[str], now: datetime) -> list[str]:
    """Make finished deliveries due now; a pending one (waiting or in flight) is left alone."""
    ids = list(delivery_ids)
    if not ids:
        return []
    result = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids), WebhookDelivery.status.in_(REDELIVERABLE))
        .values(status=PENDING, next_attempt_at=now, last_error=None, last_status_code=None,
                delivered_at=None, updated_at=now)
        .returning(WebhookDelivery.id)
        .execution_options(synchronize_session=False)
    )
    return list(result.scalars())


def targets(session: Session, delivery_ids: Iterable[str]) -> Sequence[AnyRow]:
    ids = list(delivery_ids)
    if not ids:
        return []
    return session.execute(
        select(WebhookDelivery.id, WebhookDelivery.client_id, WebhookDelivery.url, WebhookDelivery.status)
        .where(WebhookDelivery.id.in_(ids))
    ).all()
