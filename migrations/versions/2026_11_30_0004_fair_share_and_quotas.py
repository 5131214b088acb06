"""Fair share and quotas: client weights and limits, job priorities and upstream slots,
learned upstream concurrency, daily spend, and the dispatcher's two partial indexes
(who waits for a slot, what holds one).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 06:02:24.184112
"""
from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('dispatch_state',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_dispatch_state'))
    )
    op.create_table('upstream_limits',
    sa.Column('model', sa.String(length=120), nullable=False),
    sa.Column('concurrency', sa.Float(), nullable=True),
    sa.Column('throttled_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('model', name=op.f('pk_upstream_limits'))
    )
    op.create_table('client_spend',
    sa.Column('client_id', sa.String(length=40), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('spent', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['client_id'], ['clients.id'], name=op.f('fk_client_spend_client_id_clients'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('client_id', 'day', name=op.f('pk_client_spend'))
    )
    op.add_column('clients', sa.Column('weight', sa.Integer(), server_default='1', nullable=False))
    op.add_column('clients', sa.Column('max_queued', sa.Integer(), nullable=True))
    op.add_column('clients', sa.Column('rate_per_minute', sa.Float(), nullable=True))
    op.add_column('clients', sa.Column('rate_burst', sa.Integer(), nullable=True))
    op.add_column('clients', sa.Column('daily_budget', sa.Float(), nullable=True))
    op.add_column('clients', sa.Column('fair_vtime', sa.Float(), server_default='0', nullable=False))
    op.add_column('jobs', sa.Column('priority', sa.SmallInteger(), server_default='1', nullable=False))
    op.add_column('jobs', sa.Column('slot_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('jobs', sa.Column('cost', sa.Float(), nullable=True))
    op.add_column('jobs', sa.Column('nudges', sa.Integer(), server_default='0', nullable=False))
    op.create_index('ix_jobs_in_flight', 'jobs', ['model'], unique=False, postgresql_where=sa.text("status IN ('submitting', 'running') OR (status = 'queued' AND slot_at IS NOT NULL)"), sqlite_where=sa.text("status IN ('submitting', 'running') OR (status = 'queued' AND slot_at IS NOT NULL)"))
    op.create_index('ix_jobs_waiting', 'jobs', ['client_id', 'priority', 'id'], unique=False, postgresql_where=sa.text("status = 'queued' AND slot_at IS NULL"), sqlite_where=sa.text("status = 'queued' AND slot_at IS NULL"))


def downgrade() -> None:
    op.drop_index('ix_jobs_waiting', table_name='jobs', postgresql_where=sa.text("status = 'queued' AND slot_at IS NULL"), sqlite_where=sa.text("status = 'queued' AND slot_at IS NULL"))
    op.drop_index('ix_jobs_in_flight', table_name='jobs', postgresql_where=sa.text("status IN ('submitting', 'running') OR (status = 'queued' AND slot_at IS NOT NULL)"), sqlite_where=sa.text("status IN ('submitting', 'running') OR (status = 'queued' AND slot_at IS NOT NULL)"))
    op.drop_column('jobs', 'nudges')
    op.drop_column('jobs', 'cost')
    op.drop_column('jobs', 'slot_at')
    op.drop_column('jobs', 'priority')
    op.drop_column('clients', 'fair_vtime')
    op.drop_column('clients', 'daily_budget')
    op.drop_column('clients', 'rate_burst')
    op.drop_column('clients', 'rate_per_minute')
    op.drop_column('clients', 'max_queued')
    op.drop_column('clients', 'weight')
    op.drop_table('client_spend')
    op.drop_table('upstream_limits')
    op.drop_table('dispatch_state')
