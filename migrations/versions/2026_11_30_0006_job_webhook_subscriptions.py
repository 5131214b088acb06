"""Job webhook subscriptions are fixed at submit: a job's `webhook_events` now holds the
list it was submitted with (its own, `[]` for none, else its client's at that moment)
instead of `[]` meaning "whatever the client's list is when the event fires". Jobs still
live get their client's current list, which is what they would have used.

Finished jobs keep `[]`: what they inherited is not known. The downgrade leaves the
lists as they are (the older code reads a non-empty list as the job's own, the same
subscription).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 07:10:00
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = "('queued', 'submitting', 'running', 'collecting')"


def upgrade() -> None:
    empty = "CAST('[]' AS jsonb)" if op.get_bind().dialect.name == "postgresql" else "'[]'"
    op.execute(sa.text(
        "UPDATE jobs SET webhook_events = "
        "(SELECT clients.webhook_events FROM clients WHERE clients.id = jobs.client_id) "
        f"WHERE jobs.status IN {LIVE} AND jobs.webhook_events = {empty} "
        f"AND EXISTS (SELECT 1 FROM clients WHERE clients.id = jobs.client_id AND clients.webhook_events <> {empty})"
    ))


def downgrade() -> None:
    pass
