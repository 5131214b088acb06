from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import utcnow
from app.core.db import Base, JSONType

# A job holds one of its model's upstream slots from the dispatcher's grant until its upstream
# task is finished (or the job ends). Parenthesised: queries AND it with other conditions.
IN_FLIGHT_SQL = "(status IN ('submitting', 'running') OR (status = 'queued' AND slot_at IS NOT NULL))"
LIVE_SQL = "status IN ('queued', 'submitting', 'running', 'collecting')"


class Job(Base):
    """One generation request and everything the pipeline knows about it.

    `due_at` is when the sweeper should act on a queued, submitting, collecting (or
    late-watched timed-out) job: nudge it, or judge an expired lease. A running job's
    polls are scheduled in its `JobPoll` row instead, so a poll that learns nothing
    new does not write this row, and one that does changes no indexed column here
    (a HOT update). `timeout_at` is the earliest fixed deadline (queue wait, absolute);
    the stall deadline, which moves with progress, is the `JobPoll`'s.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("client_id", "idempotency_key"),
        Index("ix_jobs_client_id_id", "client_id", "id"),
        Index("ix_jobs_client_id_status_id", "client_id", "status", "id"),
        Index("ix_jobs_client_id_model_id", "client_id", "model", "id"),
        Index("ix_jobs_parent_job_id", "parent_job_id"),
        # The maintenance reads, on live rows only, so their cost never grows with history:
        # what the sweeper nudges, what times out, what each state holds (metrics, console).
        Index("ix_jobs_due", "status", "due_at",
              postgresql_where=text("due_at IS NOT NULL"), sqlite_where=text("due_at IS NOT NULL")),
        Index("ix_jobs_timeout", "timeout_at",
              postgresql_where=text("timeout_at IS NOT NULL"), sqlite_where=text("timeout_at IS NOT NULL")),
        Index("ix_jobs_live", "status", "status_changed_at",
              postgresql_where=text(LIVE_SQL), sqlite_where=text(LIVE_SQL)),
        # Retention's walk: the oldest finished jobs first.
        Index("ix_jobs_completed_at", "completed_at",
              postgresql_where=text("completed_at IS NOT NULL"), sqlite_where=text("completed_at IS NOT NULL")),
        # The dispatcher's two reads, on live rows only: who waits for a slot (per client,
        # by priority then age), and what holds one (per model).
        Index("ix_jobs_waiting", "client_id", "priority", "id",
              postgresql_where=text("status = 'queued' AND slot_at IS NULL"),
              sqlite_where=text("status = 'queued' AND slot_at IS NULL")),
        Index("ix_jobs_in_flight", "model",
              postgresql_where=text(IN_FLIGHT_SQL), sqlite_where=text(IN_FLIGHT_SQL)),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))

    model: Mapped[str] = mapped_column(String(120))
    family: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(16))
    input: Mapped[dict[str, Any]]
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_events: Mapped[list[str]] = mapped_column(JSONType, default=list)
    parent_job_id: Mapped[str | None] = mapped_column(String(40))
    storage_prefix: Mapped[str] = mapped_column(String(200))

    status: Mapped[str] = mapped_column(String(16))
    # 0 high, 1 normal, 2 low: the order within its client when slots are scarce.
    priority: Mapped[int] = mapped_column(SmallInteger, default=1, server_default="1")
    # When the dispatcher gave it an upstream slot (it may be submitted from then on), and
    # what it cost its client's daily budget.
    slot_at: Mapped[datetime | None]
    cost: Mapped[float | None] = mapped_column(Float)
    # Nudges the sweeper sent since the job's last step: each waits twice as long.
    nudges: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    progress: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(80))
    error_message: Mapped[str | None] = mapped_column(Text)
    error_source: Mapped[str | None] = mapped_column(String(20))

    upstream_id: Mapped[str | None] = mapped_column(String(200))
    upstream_status: Mapped[str | None] = mapped_column(String(80))
    upstream_payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    submit_attempts: Mapped[int] = mapped_column(Integer, default=0)
    collect_attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_token: Mapped[str | None] = mapped_column(String(40))
    due_at: Mapped[datetime | None]

    queue_deadline_at: Mapped[datetime | None]
    deadline_at: Mapped[datetime | None]
    timeout_at: Mapped[datetime | None]

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    status_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    progress_at: Mapped[datetime] = mapped_column(default=utcnow)
    submitted_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]


class JobPoll(Base):
    """A running job's poll schedule: one row from the job's submit until it leaves
    `running`. Narrow and short-lived, so its indexes hold only what is polled now and
    the churn of a poll every few seconds stays off the wide `jobs` row."""

    __tablename__ = "job_polls"
    __table_args__ = (
        Index("ix_job_polls_due_at", "due_at"),
        Index("ix_job_polls_stall_at", "stall_at"),
    )

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    due_at: Mapped[datetime]
    # The `due_at` a claim found (how late the poll ran), and no progress by `stall_at` times the job out.
    claimed_due_at: Mapped[datetime | None]
    stall_at: Mapped[datetime]
    poll_count: Mapped[int] = mapped_column(Integer, default=0)
    poll_errors: Mapped[int] = mapped_column(Integer, default=0)


class TimelineEvent(Base):
    """The job's timeline: state changes and upstream errors worth keeping."""

    __tablename__ = "job_events"
    __table_args__ = (Index("ix_job_events_job_id_id", "job_id", "id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(40))
    status: Mapped[str | None] = mapped_column(String(16))
    message: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class UpstreamLimit(Base):
    """A model's effective concurrency, learned from the upstream's 429s (AIMD): halved on
    a throttled create, grown by about one per round of successful creates. None: no
    learned limit (only the catalogue's cap applies)."""

    __tablename__ = "upstream_limits"

    model: Mapped[str] = mapped_column(String(120), primary_key=True)
    concurrency: Mapped[float | None] = mapped_column(Float)
    throttled_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class DispatchState(Base):
    """The dispatcher's own numbers that must survive it (the system virtual time)."""

    __tablename__ = "dispatch_state"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[float] = mapped_column(Float, default=0.0)
