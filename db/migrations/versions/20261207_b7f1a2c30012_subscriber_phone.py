"""subscriber phone

Revision ID: b7f1a2c30012
Revises: b7f1a2c30011
Create Date: 2026-12-07 15:10:00.000000

A person's mobile (`subscribers.phone`, 84xxxxxxxxx) and when they consented to its use
for urgent bulletins by ZNS or SMS (`subscribers.phone_consent_at`); /xoa blanks both.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.types


revision: str = 'b7f1a2c30012'
down_revision: str | None = 'b7f1a2c30011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('phone', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('phone_consent_at', db.types.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.drop_column('phone_consent_at')
        batch_op.drop_column('phone')
