"""phone channels: Zalo Official Account, ZNS, SMS; fallback chains

Revision ID: b7f1a2c30013
Revises: b7f1a2c30012
Create Date: 2026-12-07 17:50:00.000000

Gateways' options (`bots.options`), fallback addresses (`chat_addresses.fallback`), the
fallback step of a delivery (`deliveries.step`) and the index receipts find it by, a
bulletin's chain (`fallback_minutes`, `fallback_platforms`, `zns_template_id`), an
Official Account's rotating tokens (`oauth_tokens`) and ZNS templates (`zns_templates`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.types


revision: str = 'b7f1a2c30013'
down_revision: str | None = 'b7f1a2c30012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'oauth_tokens',
        sa.Column('app_id', sa.String(length=40), nullable=False),
        sa.Column('access_sealed', sa.Text(), nullable=True),
        sa.Column('refresh_sealed', sa.Text(), nullable=False),
        sa.Column('expires_at', db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column('refreshed_at', db.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('app_id', name=op.f('pk_oauth_tokens')),
    )
    op.create_table(
        'zns_templates',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('bot_id', sa.Integer(), nullable=False),
        sa.Column('template_id', sa.String(length=40), nullable=False),
        sa.Column('name', sa.String(length=120), nullable=False),
        sa.Column('params', sa.JSON(), nullable=False),
        sa.Column('price_vnd', sa.Integer(), nullable=False),
        sa.Column('enabled', sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        sa.Column('created_at', db.types.UTCDateTime(timezone=True), server_default=sa.text('CURRENT_TIMESTAMP'), nullable=False),
        sa.ForeignKeyConstraint(['bot_id'], ['bots.id'], name=op.f('fk_zns_templates_bot_id_bots')),
        sa.ForeignKeyConstraint(['created_by_id'], ['officials.id'], name=op.f('fk_zns_templates_created_by_id_officials')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_zns_templates')),
        sa.UniqueConstraint('bot_id', 'template_id', name=op.f('uq_zns_templates_bot_id_template_id')),
    )
    # Plain ADD COLUMNs, no batch: on SQLite a batch rebuilds the table, and dropping the
    # old chat_addresses would set inbox messages' links to it to NULL.
    op.add_column('bots', sa.Column('options', sa.JSON(), server_default='{}', nullable=False))
    op.add_column('chat_addresses', sa.Column('fallback', sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column('deliveries', sa.Column('step', sa.Integer(), server_default='0', nullable=False))
    op.create_index(
        'ix_deliveries_message', 'deliveries', ['bot_id', 'platform_message_id'], unique=False,
        sqlite_where=sa.text('platform_message_id IS NOT NULL'),
        postgresql_where=sa.text('platform_message_id IS NOT NULL'),
    )
    op.add_column('bulletins', sa.Column('fallback_minutes', sa.Integer(), nullable=True))
    op.add_column('bulletins', sa.Column('fallback_platforms', sa.JSON(), server_default='[]', nullable=False))
    op.add_column('bulletins', sa.Column('zns_template_id', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('bulletins', schema=None) as batch_op:
        batch_op.drop_column('zns_template_id')
        batch_op.drop_column('fallback_platforms')
        batch_op.drop_column('fallback_minutes')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_message')
        batch_op.drop_column('step')
    with op.batch_alter_table('chat_addresses', schema=None) as batch_op:
        batch_op.drop_column('fallback')
    with op.batch_alter_table('bots', schema=None) as batch_op:
        batch_op.drop_column('options')
    op.drop_table('zns_templates')
    op.drop_table('oauth_tokens')
