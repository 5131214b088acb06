from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.clock import utcnow
from app.core.db import Base, JSONType


class Job(Base):
    """One generation request and everything the pipeline knows about it.

    `due_at` is the single "next step is due" instant the workers act on: for a
    running job it is the next poll; for queued, submitting and collecting jobs
    it is when the sweeper should nudge (or judge an expired lease). `timeout_at`
    is the earliest applicable deadline (queue wait, stall, absolute).
    """

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("client_id", "idempotency_key"),
        Index("ix_jobs_client_id_id", "client_id", "id"),
        Index("ix_jobs_client_id_status_id", "client_id", "status", "id"),
        Index("ix_jobs_status_due_at", "status", "due_at"),
        Index("ix_jobs_status_timeout_at", "status", "timeout_at"),
        Index("ix_jobs_parent_job_id", "parent_job_id"),
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
    progress: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(80))
    error_message: Mapped[str | None] = mapped_column(Text)
    error_source: Mapped[str | None] = mapped_column(String(20))

    upstream_id: Mapped[str | None] = mapped_column(String(200))
    upstream_status: Mapped[str | None] = mapped_column(String(80))
    upstream_payload: Mapped[dict[str, Any] | None] = mapped_column(JSONType)

    submit_attempts: Mapped[int] = mapped_column(Integer, default=0)
    collect_attempts: Mapped[int] = mapped_column(Integer, default=0)
    poll_count: Mapped[int] = mapped_column(Integer, default=0)
    poll_errors: Mapped[int] = mapped_column(Integer, default=0)
    lease_token: Mapped[str | None] = mapped_column(String(40))
    due_at: Mapped[datetime | None]
    claimed_due_at: Mapped[datetime | None]

    queue_deadline_at: Mapped[datetime | None]
    stall_deadline_at: Mapped[datetime | None]
    deadline_at: Mapped[datetime | None]
    timeout_at: Mapped[datetime | None]

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    status_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    progress_at: Mapped[datetime] = mapped_column(default=utcnow)
    submitted_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]


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
