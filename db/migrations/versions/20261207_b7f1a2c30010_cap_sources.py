"""cap sources

Revision ID: b7f1a2c30010
Revises: b7f1a2c30009
Create Date: 2026-12-07 16:00:00.000000

CAP feeds an administrator configures (`cap_sources`, polled by the scheduler role), and
every CAP message seen from them once per (sender, identifier) (`cap_imports`): the draft
bulletin it became, or why nothing was created.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.types


revision: str = 'b7f1a2c30010'
down_revision: str | None = 'b7f1a2c30009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('cap_sources',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('poll_seconds', sa.Integer(), server_default='300', nullable=False),
    sa.Column('default_area_id', sa.Integer(), nullable=True),
    sa.Column('created_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_polled_at', db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_success_at', db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('etag', sa.String(length=255), nullable=True),
    sa.Column('last_modified', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['default_area_id'], ['areas.id'], name=op.f('fk_cap_sources_default_area_id_areas')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cap_sources')),
    sa.UniqueConstraint('name', name=op.f('uq_cap_sources_name'))
    )
    op.create_table('cap_imports',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('source_id', sa.Integer(), nullable=True),
    sa.Column('sender', sa.String(length=255), nullable=False),
    sa.Column('identifier', sa.String(length=255), nullable=False),
    sa.Column('sent', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('msg_type', sa.String(length=16), nullable=False),
    sa.Column('status', sa.Enum('drafted', 'withdrawn', 'noted', 'skipped', name='capimportstatus', native_enum=False, length=24), nullable=False),
    sa.Column('bulletin_id', sa.Integer(), nullable=True),
    sa.Column('references_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('imported_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['bulletin_id'], ['bulletins.id'], name=op.f('fk_cap_imports_bulletin_id_bulletins')),
    sa.ForeignKeyConstraint(['references_id'], ['cap_imports.id'], name=op.f('fk_cap_imports_references_id_cap_imports')),
    sa.ForeignKeyConstraint(['source_id'], ['cap_sources.id'], name=op.f('fk_cap_imports_source_id_cap_sources'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cap_imports')),
    sa.UniqueConstraint('sender', 'identifier', name=op.f('uq_cap_imports_sender_identifier'))
    )
    with op.batch_alter_table('cap_imports', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cap_imports_bulletin_id'), ['bulletin_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_cap_imports_source_id'), ['source_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('cap_imports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cap_imports_source_id'))
        batch_op.drop_index(batch_op.f('ix_cap_imports_bulletin_id'))

    op.drop_table('cap_imports')
    op.drop_table('cap_sources')
