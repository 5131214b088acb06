"""Volume: a running job's poll schedule moves to its own narrow table (job_polls), so a
poll that learns nothing new leaves the job's row alone and one that does is a HOT
update; maintenance indexes hold live rows only (due, timeouts, live states, pending
and dead deliveries, unexpired artifacts); indexes for listing by model, retention by
completion time, and uploads by age.

Stop the workers and the scheduler before upgrading: the poll columns leave `jobs`.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 07:00:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE_SQL = "status IN ('queued', 'submitting', 'running', 'collecting')"
POLL_COLUMNS = ("poll_count", "poll_errors", "claimed_due_at", "stall_deadline_at")


def _partial(sql: str) -> dict[str, sa.TextClause]:
    return {"postgresql_where": sa.text(sql), "sqlite_where": sa.text(sql)}


def upgrade() -> None:
    op.create_table(
        "job_polls",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stall_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("poll_count", sa.Integer(), nullable=False),
        sa.Column("poll_errors", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_polls_job_id_jobs"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_job_polls")),
    )
    op.create_index("ix_job_polls_due_at", "job_polls", ["due_at"])
    op.create_index("ix_job_polls_stall_at", "job_polls", ["stall_at"])
    # Running jobs keep their schedule; their own timeout becomes the absolute deadline alone.
    op.execute(
        "INSERT INTO job_polls (job_id, due_at, claimed_due_at, stall_at, poll_count, poll_errors) "
        "SELECT id, COALESCE(due_at, CURRENT_TIMESTAMP), claimed_due_at, "
        "COALESCE(stall_deadline_at, timeout_at, CURRENT_TIMESTAMP), poll_count, poll_errors "
        "FROM jobs WHERE status = 'running'"
    )
    op.execute("UPDATE jobs SET due_at = NULL, timeout_at = deadline_at WHERE status = 'running'")

    op.drop_index("ix_jobs_status_due_at", table_name="jobs")
    op.drop_index("ix_jobs_status_timeout_at", table_name="jobs")
    for column in POLL_COLUMNS:  # in no index any more: a plain DROP COLUMN, SQLite (3.35+) too
        op.drop_column("jobs", column)
    op.create_index("ix_jobs_due", "jobs", ["status", "due_at"], **_partial("due_at IS NOT NULL"))
    op.create_index("ix_jobs_timeout", "jobs", ["timeout_at"], **_partial("timeout_at IS NOT NULL"))
    op.create_index("ix_jobs_live", "jobs", ["status", "status_changed_at"], **_partial(LIVE_SQL))
    op.create_index("ix_jobs_completed_at", "jobs", ["completed_at"], **_partial("completed_at IS NOT NULL"))
    op.create_index("ix_jobs_client_id_model_id", "jobs", ["client_id", "model", "id"])

    op.drop_index("ix_webhook_deliveries_status_next_attempt_at", table_name="webhook_deliveries")
    op.create_index("ix_webhook_deliveries_pending", "webhook_deliveries", ["next_attempt_at"],
                    **_partial("status = 'pending'"))
    op.create_index("ix_webhook_deliveries_dead", "webhook_deliveries", ["created_at"], **_partial("status = 'dead'"))

    op.drop_index("ix_artifacts_expires_at", table_name="artifacts")
    op.create_index("ix_artifacts_expires_at", "artifacts", ["expires_at"],
                    **_partial("deleted_at IS NULL AND expires_at IS NOT NULL"))
    op.create_index("ix_uploads_created_at", "uploads", ["created_at"])
    if op.get_bind().dialect.name == "postgresql":
        # A poll rewrites its schedule row every few seconds: keep room on each page.
        op.execute("ALTER TABLE job_polls SET (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.02, "
                   "autovacuum_analyze_scale_factor = 0.02)")


def downgrade() -> None:
    op.drop_index("ix_uploads_created_at", table_name="uploads")
    op.drop_index("ix_artifacts_expires_at", table_name="artifacts")
    op.create_index("ix_artifacts_expires_at", "artifacts", ["expires_at"])
    op.drop_index("ix_webhook_deliveries_dead", table_name="webhook_deliveries")
    op.drop_index("ix_webhook_deliveries_pending", table_name="webhook_deliveries")
    op.create_index("ix_webhook_deliveries_status_next_attempt_at", "webhook_deliveries", ["status", "next_attempt_at"])
    for name in ("ix_jobs_client_id_model_id", "ix_jobs_completed_at", "ix_jobs_live", "ix_jobs_timeout", "ix_jobs_due"):
        op.drop_index(name, table_name="jobs")
    op.add_column("jobs", sa.Column("poll_count", sa.Integer(), server_default="0", nullable=False))
    op.add_column("jobs", sa.Column("poll_errors", sa.Integer(), server_default="0", nullable=False))
    op.add_column("jobs", sa.Column("claimed_due_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("stall_deadline_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE jobs SET due_at = (SELECT due_at FROM job_polls WHERE job_id = jobs.id), "
        "poll_count = (SELECT poll_count FROM job_polls WHERE job_id = jobs.id), "
        "poll_errors = (SELECT poll_errors FROM job_polls WHERE job_id = jobs.id), "
        "stall_deadline_at = (SELECT stall_at FROM job_polls WHERE job_id = jobs.id), "
        "timeout_at = (SELECT CASE WHEN jobs.deadline_at IS NULL OR stall_at < jobs.deadline_at "
        "THEN stall_at ELSE jobs.deadline_at END FROM job_polls WHERE job_id = jobs.id) "
        "WHERE status = 'running'"
    )
    op.create_index("ix_jobs_status_timeout_at", "jobs", ["status", "timeout_at"])
    op.create_index("ix_jobs_status_due_at", "jobs", ["status", "due_at"])
    op.drop_index("ix_job_polls_stall_at", table_name="job_polls")
    op.drop_index("ix_job_polls_due_at", table_name="job_polls")
    op.drop_table("job_polls")
