"""clients.revoked_at: a leaked API key can be revoked (`cometjobs clients revoke`)

Nullable, no default: existing clients stay valid, and adding it rewrites no rows.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 05:45:38
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("clients", sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # Batch mode: SQLite drops a column by copying the table.
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("revoked_at")
