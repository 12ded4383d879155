"""bulletin updates

Revision ID: b7f1a2c30009
Revises: b7f1a2c30008
Create Date: 2026-12-07 14:10:00.000000

A warning can be followed by an update ("tin cập nhật", e.g. a storm's next position):
a new bulletin that supersedes an approved one (bulletins.supersedes_id). Once approved
it goes out like any bulletin, stops the earlier one's repeats, and is published in CAP
as an Update referencing the earlier messages.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'b7f1a2c30009'
down_revision: str | None = 'b7f1a2c30008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('bulletins', schema=None) as batch_op:
        batch_op.add_column(sa.Column('supersedes_id', sa.Integer(), nullable=True))
        batch_op.create_index(
            batch_op.f('ix_bulletins_supersedes_id'), ['supersedes_id'], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f('fk_bulletins_supersedes_id_bulletins'), 'bulletins', ['supersedes_id'],
            ['id'],
        )


def downgrade() -> None:
    with op.batch_alter_table('bulletins', schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f('fk_bulletins_supersedes_id_bulletins'), type_='foreignkey'
        )
        batch_op.drop_index(batch_op.f('ix_bulletins_supersedes_id'))
        batch_op.drop_column('supersedes_id')
