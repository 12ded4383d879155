"""progress index by bot

Revision ID: b7f1a2c30007
Revises: b7f1a2c30006
Create Date: 2026-12-07 07:00:00.000000

The follow-up of a bulletin shows each bot's share of it (counts by state, people
reached, "Đã nhận" taps): the bot joins the grouping of the follow-up's counts, so
ix_deliveries_progress gains bot_id after area_id and the counts are still read from
the index alone. Still partial (rows that left `pending`), so fan-out does not pay for
it; rebuilding it reads only those rows. A "Đã nhận" tap records the bot it came through
(acknowledgements.bot_id, indexed with the bulletin), so each bot's taps are counted from
an index too; taps recorded before stay unattributed.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'b7f1a2c30007'
down_revision: str | None = 'b7f1a2c30006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _progress_index(columns: list[str]) -> None:
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_progress')
        batch_op.create_index(
            'ix_deliveries_progress',
            columns,
            unique=False,
            sqlite_where=sa.text("state != 'pending'"),
            postgresql_where=sa.text("state != 'pending'"),
        )


def upgrade() -> None:
    _progress_index(['run_id', 'area_id', 'bot_id', 'state', 'reason', 'sent_at'])
    op.add_column('acknowledgements', sa.Column('bot_id', sa.Integer(), nullable=True))
    op.create_index(
        'ix_acknowledgements_bulletin_bot', 'acknowledgements', ['bulletin_id', 'bot_id'],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index('ix_acknowledgements_bulletin_bot', table_name='acknowledgements')
    op.drop_column('acknowledgements', 'bot_id')
    _progress_index(['run_id', 'area_id', 'state', 'reason', 'sent_at'])
