"""follow-up and follower indexes

Revision ID: b7f1a2c30002
Revises: b7f1a2c30001
Create Date: 2026-11-30 08:40:00.000000

Covering indexes for the dashboard at 100,000 subscribers: the follow-up of a bulletin
(counts by run, area, state and reason, and sent times for the chart; partial, holding
only deliveries that left `pending`, so fan-out does not pay for it) and "who follows
these areas" (subscriber counts, recipient previews). The second replaces the single-
column index on subscriptions.area_id, of which it is an extension.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'b7f1a2c30002'
down_revision: str | None = 'b7f1a2c30001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index(
            'ix_deliveries_progress',
            ['run_id', 'area_id', 'state', 'reason', 'sent_at'],
            unique=False,
            sqlite_where=sa.text("state != 'pending'"),
            postgresql_where=sa.text("state != 'pending'"),
        )
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.create_index(
            'ix_subscriptions_area_subscriber', ['area_id', 'subscriber_id'], unique=False
        )
        batch_op.drop_index('ix_subscriptions_area_id')


def downgrade() -> None:
    with op.batch_alter_table('subscriptions', schema=None) as batch_op:
        batch_op.create_index('ix_subscriptions_area_id', ['area_id'], unique=False)
        batch_op.drop_index('ix_subscriptions_area_subscriber')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_progress')
