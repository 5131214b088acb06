"""Storage tuning for the hot tables (Postgres only)

The poller rewrites every running job's row each poll and the webhook sender
each delivery's row each attempt. Free space on each page (fillfactor) lets
updates that touch no indexed column stay on the page (HOT), and vacuuming
after 2% churn instead of 20% keeps the (status, due_at) index lean.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 21:40:00
"""
from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("jobs", "webhook_deliveries")
TUNING = "fillfactor = 80, autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} SET ({TUNING})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(
            f"ALTER TABLE {table} RESET (fillfactor, autovacuum_vacuum_scale_factor, autovacuum_analyze_scale_factor)"
        )
