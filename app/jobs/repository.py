"""All SQL about jobs and their timeline."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import (
    ColumnElement,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import Session

from app.core.db import NOW, affected, table, upsert_into
from app.jobs.models import IN_FLIGHT_SQL, Job, JobPoll, TimelineEvent, UpstreamLimit
from app.jobs.states import ACTIVE, JobEvent, JobStatus, Timeline

jobs = table(Job)
events = table(TimelineEvent)
polls = table(JobPoll)


_OWNED = select(Job).where(Job.id == bindparam("job_id"), Job.client_id == bindparam("client_id"))


def get_for_client(session: Session, client_id: str, job_id: str) -> Job | None:
    return session.scalar(_OWNED, {"job_id": job_id, "client_id": client_id})


def get(session: Session, job_id: str) -> Job | None:
    return session.get(Job, job_id, populate_existing=True)


def get_by_idempotency_key(session: Session, client_id: str, key: str) -> Job | None:
    return session.scalar(select(Job).where(Job.client_id == client_id, Job.idempotency_key == key))


def list_for_client(
    session: Session,
    client_id: str,
    *,
    status: str | None,
    model: str | None,
    limit: int,
    before_id: str | None,
) -> Sequence[Job]:
    query = select(Job).where(Job.client_id == client_id)
    if status:
        query = query.where(Job.status == status)
    if model:
        query = query.where(Job.model == model)
    if before_id:
        query = query.where(Job.id < before_id)
    return session.scalars(query.order_by(Job.id.desc()).limit(limit)).all()


def status_since(session: Session, job_id: str) -> tuple[str, datetime] | None:
    row = session.execute(select(Job.status, Job.status_changed_at).where(Job.id == job_id)).first()
    return (row[0], row[1]) if row else None


def guarded_update(
    session: Session,
    job_id: str,
    expected: Iterable[JobStatus],
    values: dict[str, Any],
    *,
    lease_token: str | None = None,
    due_is_set: bool = False,
    where: Iterable[ColumnElement[bool]] = (),
) -> bool:
    """`UPDATE jobs ... WHERE id = :id AND status IN (:expected)`; True if this call won."""
    conditions = [Job.id == job_id, Job.status.in_([s.value for s in expected]), *where]
    if lease_token is not None:
        conditions.append(Job.lease_token == lease_token)
    if due_is_set:
        conditions.append(Job.due_at.is_not(None))
    result = session.execute(
        update(Job).where(*conditions).values(**values).execution_options(synchronize_session=False)
    )
    return affected(result) == 1


def _new_job_statement() -> Any:
    """INSERT a job (every column a bound parameter) skipping a conflicting idempotency
    key, then its first event from the row it returns: built once, compiled once."""
    new_job = (
        pg_insert(jobs).values({c.name: bindparam(f"j_{c.name}", type_=c.type) for c in jobs.columns})
        .on_conflict_do_nothing(index_elements=[jobs.c.client_id, jobs.c.idempotency_key])
        .returning(jobs.c.id)
        .cte("new_job")
    )
    fields = ["type", "status", "message", "data", "created_at"]
    return insert(events).from_select(
        ["job_id", *fields],
        select(new_job.c.id, *(bindparam(f"e_{name}", type_=events.c[name].type) for name in fields)),
    ).returning(events.c.job_id)


_NEW_JOB = _new_job_statement()
_ATTRIBUTE_OF = {attr.columns[0].name: attr.key for attr in Job.__mapper__.column_attrs}


def _default(column: Any) -> Any:
    default = column.default
    if default is None:
        return None
    # Callable defaults (utcnow, dict, list) take SQLAlchemy's execution context; none reads it.
    return default.arg(None) if default.is_callable else default.arg


def _row_values(job: Job) -> dict[str, Any]:
    """Every column's value for a transient job: what it was given, else the column's default."""
    given = vars(job)
    return {
        column.name: given[_ATTRIBUTE_OF[column.name]] if _ATTRIBUTE_OF[column.name] in given else _default(column)
        for column in jobs.columns
    }


def insert_new(session: Session, job: Job, message: str) -> bool:
    """Insert a new (transient) job and its first timeline event; False when the client
    already has a job with this idempotency key. On Postgres it is one statement (the
    insert skips a conflicting key instead of failing, and the event follows the row
    it returns); elsewhere two, and a conflict raises IntegrityError."""
    values = _row_values(job)
    event = {"type": Timeline.STATUS.value, "status": job.status, "message": message, "data": {},
             "created_at": job.created_at}
    if session.get_bind().dialect.name != "postgresql":
        session.execute(insert(jobs), values)
        session.execute(insert(events), {"job_id": job.id, **event})
        return True
    params = {f"j_{name}": value for name, value in values.items()} | {f"e_{k}": v for k, v in event.items()}
    return session.execute(_NEW_JOB, params).scalar() is not None


def add_event(
    session: Session,
    job_id: str,
    type_: str,
    now: datetime,
    *,
    status: str | None = None,
    message: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    session.execute(
        insert(TimelineEvent).values(
            job_id=job_id, type=type_, status=status, message=message, data=data or {}, created_at=now
        )
    )


def add_events(session: Session, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(TimelineEvent), rows)


def last_event_at(session: Session, job_id: str, type_: str) -> datetime | None:
    return session.scalar(
        select(func.max(TimelineEvent.created_at)).where(TimelineEvent.job_id == job_id, TimelineEvent.type == type_)
    )


def events_for(session: Session, job_id: str, after_id: int | None, limit: int) -> Sequence[TimelineEvent]:
    query = select(TimelineEvent).where(TimelineEvent.job_id == job_id)
    if after_id is not None:
        query = query.where(TimelineEvent.id > after_id)
    return session.scalars(query.order_by(TimelineEvent.id).limit(limit)).all()


POLL_JOB_COLUMNS = (
    Job.id, Job.model, Job.family, Job.upstream_id, Job.progress, Job.deadline_at, Job.upstream_status,
    Job.progress_at,
)


@dataclass(frozen=True)
class PollRow:
    """A claimed poll: the job's fields the poller reads, with its schedule's."""

    id: str
    model: str
    family: str
    upstream_id: str | None
    progress: int
    deadline_at: datetime | None
    upstream_status: str | None
    progress_at: datetime
    poll_count: int
    poll_errors: int
    claimed_due_at: datetime | None
    stall_at: datetime


def backed_off(now: datetime, base: timedelta, steps: int = 6) -> Any:
    """`now + base * 2^(nudges + 1)` (at most 2^steps), row by row: each nudge of the same
    job waits twice as long as the one before, so a backlog of messages nobody consumes
    yet does not grow by one per job per sweep."""
    return case(*((Job.nudges == n, now + base * 2 ** (n + 1)) for n in range(steps - 1)),
                else_=now + base * 2**steps)


def schedule_polls(session: Session, job_id: str, due_at: datetime, stall_at: datetime) -> None:
    """The job is running: its first poll is due at `due_at`."""
    session.execute(insert(polls).values(job_id=job_id, due_at=due_at, stall_at=stall_at, poll_count=0, poll_errors=0))


def end_polls(session: Session, job_id: str) -> int | None:
    """The job left `running`: nothing to poll any more. Returns how many polls its run
    took, or None if it had no schedule."""
    return session.scalar(delete(polls).where(polls.c.job_id == job_id).returning(polls.c.poll_count))


def poll_schedule(session: Session, job_id: str) -> JobPoll | None:
    return session.get(JobPoll, job_id, populate_existing=True)


# Built once: a statement's construction costs more CPU than an idle round's query.
_CLAIM_POLLS = (
    update(polls)
    .where(
        polls.c.job_id.in_(
            select(polls.c.job_id).where(polls.c.due_at <= NOW).order_by(polls.c.due_at)
            .limit(bindparam("limit")).with_for_update(skip_locked=True).scalar_subquery()
        ),
        polls.c.due_at <= NOW,
    )
    .values(claimed_due_at=polls.c.due_at, due_at=bindparam("lease_until"), poll_count=polls.c.poll_count + 1)
    .returning(polls.c.job_id, polls.c.claimed_due_at, polls.c.stall_at, polls.c.poll_count, polls.c.poll_errors)
)


def claim_due_polls(session: Session, now: datetime, lease_until: datetime, limit: int) -> list[PollRow]:
    """Claim up to `limit` running jobs whose poll is due, pushing each schedule's `due_at`
    to the lease.

    Postgres: the inner SELECT takes row locks with SKIP LOCKED, so concurrent pollers
    claim disjoint sets. SQLite serialises writers, and the outer `due_at <= now`
    re-check makes a second claimer see the moved lease. A schedule left behind by a
    job that is no longer running is removed on the way.
    """
    claimed = {
        row.job_id: row for row in session.execute(_CLAIM_POLLS, {"now": now, "lease_until": lease_until, "limit": limit})
    }
    if not claimed:
        return []
    running = session.execute(
        select(*POLL_JOB_COLUMNS).where(Job.id.in_(list(claimed)), Job.status == JobStatus.RUNNING.value)
    ).all()
    rows = [PollRow(**job._asdict(), poll_count=claimed[job.id].poll_count, poll_errors=claimed[job.id].poll_errors,
                    claimed_due_at=claimed[job.id].claimed_due_at, stall_at=claimed[job.id].stall_at)
            for job in running]
    left_behind = set(claimed) - {row.id for row in rows}
    if left_behind:
        session.execute(delete(polls).where(polls.c.job_id.in_(left_behind)))
    return rows


def apply_poll_updates(session: Session, schedules: list[dict[str, Any]], changes: list[dict[str, Any]]) -> None:
    """Write back still-running poll results: every schedule in one executemany, and the
    jobs whose progress or upstream status changed in another (guarded by status). The
    job rows' columns written here are in no index, so these are HOT updates."""
    if schedules:
        session.execute(
            update(polls).where(polls.c.job_id == bindparam("b_id")).values(
                due_at=bindparam("b_due_at"), poll_errors=bindparam("b_poll_errors"), stall_at=bindparam("b_stall_at"),
            ),
            schedules,
        )
    if changes:
        session.execute(
            update(jobs).where(jobs.c.id == bindparam("b_id"), jobs.c.status == JobStatus.RUNNING.value).values(
                progress=bindparam("b_progress"), upstream_status=bindparam("b_upstream_status"),
                progress_at=bindparam("b_progress_at"), updated_at=bindparam("b_updated_at"),
            ),
            changes,
        )


@dataclass(frozen=True)
class Due:
    """Active jobs in `statuses` whose `column` instant has passed (and `where` holds): what
    a maintenance step claims, and what the sweep's probe asks about first."""

    statuses: tuple[JobStatus, ...]
    column: Any
    where: tuple[ColumnElement[bool], ...] = ()

    def clauses(self, now: Any) -> list[ColumnElement[bool]]:
        return [Job.status.in_([s.value for s in self.statuses]), self.column <= now, *self.where]

    def any(self, now: Any) -> ColumnElement[bool]:
        return select(Job.id).where(*self.clauses(now)).exists()


def claim_ids(session: Session, due: Due, now: datetime, limit: int, values: dict[str, Any]) -> list[str]:
    """Claim up to `limit` of the jobs `due` names, oldest instant first, applying `values`."""
    ids = (
        select(Job.id)
        .where(*due.clauses(now))
        .order_by(due.column)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    stmt = (
        update(Job)
        .where(Job.id.in_(ids), *due.clauses(now))
        .values(**values)
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    )
    return list(session.scalars(stmt))


class Probe:
    """Named EXISTS questions asked in one round trip (built once, with `NOW` for the instant)."""

    def __init__(self, questions: dict[str, ColumnElement[bool]]) -> None:
        self.statement = select(*(question.label(name) for name, question in questions.items()))

    def ask(self, session: Session, now: datetime) -> set[str]:
        """The names of the questions that hold at `now`."""
        row = session.execute(self.statement, {"now": now}).one()
        return {name for name, held in row._mapping.items() if held}


_IN_FLIGHT = (
    select(Job.model, func.count()).where(text(IN_FLIGHT_SQL)).group_by(Job.model)
)


_PENDING_SUBMITS = select(func.count()).select_from(Job).where(text(IN_FLIGHT_SQL), Job.status != JobStatus.RUNNING.value)


def pending_submits(session: Session) -> int:
    """Jobs granted a slot whose create call has not happened yet (queued with a slot, or
    submitting): the work handed to the workers and not done."""
    return session.scalar(_PENDING_SUBMITS) or 0


def in_flight_counts(session: Session) -> dict[str, int]:
    """Upstream slots held, per model (served by the partial index ix_jobs_in_flight)."""
    return {model: count for model, count in session.execute(_IN_FLIGHT)}


# The clients with jobs waiting for a slot, found by skipping through the partial index
# (one probe per client, not one row per waiting job), each with its first jobs.
_WAITING_PG = text("""
WITH RECURSIVE waiting AS (
    (SELECT client_id FROM jobs WHERE status = 'queued' AND slot_at IS NULL ORDER BY client_id LIMIT 1)
    UNION ALL
    SELECT (SELECT j.client_id FROM jobs j
            WHERE j.status = 'queued' AND j.slot_at IS NULL AND j.client_id > w.client_id
            ORDER BY j.client_id LIMIT 1)
    FROM waiting w WHERE w.client_id IS NOT NULL
)
SELECT c.id AS client_id, c.weight, c.fair_vtime, j.id, j.model, j.family, j.priority, j.created_at, j.due_at
FROM waiting w
JOIN clients c ON c.id = w.client_id
CROSS JOIN LATERAL (
    SELECT id, model, family, priority, created_at, due_at FROM jobs
    WHERE client_id = w.client_id AND status = 'queued' AND slot_at IS NULL
      AND (due_at IS NULL OR due_at <= :now)
    ORDER BY priority, id
    LIMIT :per_client
) j
""")


_WAITING = (Job.status == JobStatus.QUEUED.value) & Job.slot_at.is_(None)


def ensure_upstream_limit(session: Session, model: str, now: datetime) -> None:
    """The model's learned-limit row, made (with nothing learned) unless it exists."""
    session.execute(upsert_into(session, UpstreamLimit).values(model=model, concurrency=None, updated_at=now)
                    .on_conflict_do_nothing(index_elements=[UpstreamLimit.model]))


_ANY_WAITING = select(
    select(Job.id).where(_WAITING, Job.due_at.is_(None) | (Job.due_at <= NOW)).exists()
)


def any_waiting(session: Session, now: datetime) -> bool:
    """Whether any job is due for a slot (the dispatcher's probe, on ix_jobs_waiting)."""
    return bool(session.scalar(_ANY_WAITING, {"now": now}))


def waiting_candidates(session: Session, now: datetime, per_client: int) -> list[Any]:
    """Jobs due for a slot: each waiting client's first `per_client`, by priority then age."""
    if session.get_bind().dialect.name == "postgresql":
        return list(session.execute(_WAITING_PG, {"now": now, "per_client": per_client}))
    from app.clients.models import Client

    due = Job.due_at.is_(None) | (Job.due_at <= now)
    rows = []
    for client_id in session.scalars(select(Job.client_id).where(_WAITING).distinct()):
        client = session.get(Client, client_id)
        for job in session.execute(
            select(Job.id, Job.model, Job.family, Job.priority, Job.created_at, Job.due_at)
            .where(_WAITING, due, Job.client_id == client_id).order_by(Job.priority, Job.id).limit(per_client)
        ):
            rows.append(SimpleNamespace(
                client_id=client_id, weight=client.weight if client else 1,
                fair_vtime=client.fair_vtime if client else 0.0, **job._asdict(),
            ))
    return rows


def grant_slots(session: Session, job_ids: list[str], now: datetime, nudge_at: datetime) -> set[str]:
    """Give these waiting jobs their slot; the ids that were still waiting."""
    if not job_ids:
        return set()
    granted = session.scalars(
        update(Job)
        .where(Job.id.in_(job_ids), Job.status == JobStatus.QUEUED.value, Job.slot_at.is_(None))
        .values(slot_at=now, due_at=nudge_at, nudges=0, updated_at=now)
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    )
    return set(granted)


def set_client_vtimes(session: Session, vtimes: dict[str, float]) -> None:
    from app.clients.models import Client

    if vtimes:
        session.execute(
            update(table(Client)).where(table(Client).c.id == bindparam("b_id"))
            .values(fair_vtime=bindparam("b_vtime")),
            [{"b_id": client_id, "b_vtime": vtime} for client_id, vtime in vtimes.items()],
        )


def claim_collect(session: Session, job_id: str, token: str, now: datetime, lease_until: datetime) -> bool:
    """Take the collecting job's lease: free, or expired (its collector died)."""
    result = session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            Job.status == JobStatus.COLLECTING.value,
            or_(Job.lease_token.is_(None), Job.due_at <= now),
        )
        .values(lease_token=token, due_at=lease_until, collect_attempts=Job.collect_attempts + 1, updated_at=now,
                nudges=0)
        .execution_options(synchronize_session=False)
    )
    return affected(result) == 1


def extend_lease(session: Session, job_id: str, status: JobStatus, token: str, lease_until: datetime) -> bool:
    return guarded_update(session, job_id, [status], {"due_at": lease_until}, lease_token=token)


def release_lease(
    session: Session, job_id: str, status: JobStatus, token: str, now: datetime, due: datetime
) -> bool:
    """Give the lease up; the sweeper nudges the job again at `due`."""
    return guarded_update(
        session, job_id, [status], {"lease_token": None, "due_at": due, "updated_at": now}, lease_token=token
    )


# Active jobs past their deadline (a submit in flight is judged by its lease instead).
TIMED_OUT = Due(tuple(s for s in ACTIVE if s is not JobStatus.SUBMITTING), Job.timeout_at)


def due_timeouts(session: Session, now: datetime, limit: int) -> Sequence[Job]:
    return session.scalars(
        select(Job)
        .where(*TIMED_OUT.clauses(now))
        .order_by(Job.timeout_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()


def progress_subscribers(session: Session, job_ids: list[str]) -> list[str]:
    """Which of these running jobs have a webhook and want `job.progress` (the job's own
    event list, else its client's)."""
    from app.clients.models import Client

    if not job_ids:
        return []
    rows = session.execute(
        select(Job.id, Job.webhook_events, Client.webhook_events)
        .join(Client, Client.id == Job.client_id)
        .where(Job.id.in_(job_ids), Job.status == JobStatus.RUNNING.value, Job.webhook_url.is_not(None))
    ).all()
    return [job_id for job_id, own, default in rows if JobEvent.PROGRESS in (own or default or [])]


def _stalled_clauses(now: Any) -> list[ColumnElement[bool]]:
    return [Job.status == JobStatus.RUNNING.value, JobPoll.stall_at <= now]


def stalled(session: Session, now: datetime, limit: int) -> Sequence[Job]:
    """Running jobs whose stall deadline passed (no progress in time), locked."""
    return session.scalars(
        select(Job)
        .join(JobPoll, JobPoll.job_id == Job.id)
        .where(*_stalled_clauses(now))
        .order_by(JobPoll.stall_at)
        .limit(limit)
        .with_for_update(of=Job, skip_locked=True)
    ).all()


def any_stalled(now: Any) -> ColumnElement[bool]:
    return select(Job.id).join(JobPoll, JobPoll.job_id == Job.id).where(*_stalled_clauses(now)).exists()


def count_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(Job.status, func.count()).where(Job.status.in_([s.value for s in ACTIVE])).group_by(Job.status)
    )
    return {status: count for status, count in rows}


__all__ = [
    "add_event", "add_events", "any_stalled", "any_waiting", "apply_poll_updates",
    "claim_due_polls", "claim_ids", "count_by_status", "Due", "due_timeouts", "end_polls",
    "ensure_upstream_limit", "events_for", "get", "get_by_idempotency_key", "get_for_client",
    "guarded_update", "list_for_client", "poll_schedule", "PollRow", "Probe",
    "schedule_polls", "stalled", "status_since", "TIMED_OUT",
]
