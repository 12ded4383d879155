"""sign-in throttles and session generation

Revision ID: b7f1a2c30004
Revises: b7f1a2c30003
Create Date: 2026-12-06 07:10:00.000000

Signing out ends a session on the server: each official's session generation is signed
into the cookie and raised at sign-out. Failed sign-ins slow down per client, per client
and name, and per name with growing delays (login_throttles) instead of the hard
per-account lock, which let anyone lock any official out.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.types


revision: str = 'b7f1a2c30004'
down_revision: str | None = 'b7f1a2c30003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('login_throttles',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('last_failure_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('wait_until', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_login_throttles'))
    )
    with op.batch_alter_table('login_throttles', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_login_throttles_last_failure_at'), ['last_failure_at'], unique=False)

    # Plain ALTER TABLE, not batch mode: a SQLite rebuild of officials (DROP, rename) fails
    # on the foreign keys from bulletins, audit entries and inbox replies. SQLite has had
    # DROP COLUMN since 3.35.
    op.add_column('officials', sa.Column('session_generation', sa.Integer(), server_default='0', nullable=False))
    op.drop_column('officials', 'locked_until')
    op.drop_column('officials', 'failed_logins')


def downgrade() -> None:
    op.add_column('officials', sa.Column('failed_logins', sa.Integer(), server_default='0', nullable=False))
    op.add_column('officials', sa.Column('locked_until', db.types.UTCDateTime(timezone=True), nullable=True))
    op.drop_column('officials', 'session_generation')

    with op.batch_alter_table('login_throttles', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_login_throttles_last_failure_at'))

    op.drop_table('login_throttles')
