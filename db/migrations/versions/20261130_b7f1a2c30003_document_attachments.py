"""document attachments and public flag

Revision ID: b7f1a2c30003
Revises: b7f1a2c30002
Create Date: 2026-11-30 08:30:00.000000

Files that come with a document version (the imported original, annexes, images), stored
in the documents' asset store by content hash; and a flag keeping internal documents off
the public library pages (every existing document was imported as public).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.types


revision: str = 'b7f1a2c30003'
down_revision: str | None = 'b7f1a2c30002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('document_attachments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('document_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('media_type', sa.String(length=100), nullable=False),
    sa.Column('size_bytes', sa.BigInteger(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('store_key', sa.String(length=255), nullable=False),
    sa.Column('is_source', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('created_at', db.types.UTCDateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['document_id'], ['documents.id'], name=op.f('fk_document_attachments_document_id_documents'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_document_attachments')),
    sa.UniqueConstraint('document_id', 'name', name=op.f('uq_document_attachments_document_id_name'))
    )
    with op.batch_alter_table('document_attachments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_document_attachments_document_id'), ['document_id'], unique=False)
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('public', sa.Boolean(), server_default=sa.true(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('documents', schema=None) as batch_op:
        batch_op.drop_column('public')
    with op.batch_alter_table('document_attachments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_document_attachments_document_id'))
    op.drop_table('document_attachments')
