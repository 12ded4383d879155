"""answers and pending events

Revision ID: b7f1a2c30005
Revises: b7f1a2c30004
Create Date: 2026-12-07 00:56:47.199667

A bot's answers to people are stored with the conversation turn they answer and sent
through the bot's outbox, so a crash or a run of 429s loses none; what finally fails
stays in `answers`, with its reason, for operators. What people send is kept in
`pending_events` from its arrival until its turn is taken, so a crash between the
platform's receipt and the turn loses nothing either.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.types


revision: str = 'b7f1a2c30005'
down_revision: str | None = 'b7f1a2c30004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('answers',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('bot_id', sa.Integer(), nullable=False),
    sa.Column('chat_id', sa.String(length=64), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('state', sa.Enum('pending', 'failed', name='answerstate', native_enum=False, length=24), nullable=False),
    sa.Column('holder', sa.String(length=120), nullable=True),
    sa.Column('reason', sa.String(length=120), nullable=True),
    sa.Column('created_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('failed_at', db.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['bot_id'], ['bots.id'], name=op.f('fk_answers_bot_id_bots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_answers'))
    )
    with op.batch_alter_table('answers', schema=None) as batch_op:
        batch_op.create_index('ix_answers_waiting', ['bot_id', 'state', 'holder'], unique=False)

    op.create_table('pending_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('bot_id', sa.Integer(), nullable=False),
    sa.Column('update_key', sa.String(length=80), nullable=False),
    sa.Column('event', sa.JSON(), nullable=False),
    sa.Column('holder', sa.String(length=120), nullable=True),
    sa.Column('received_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['bot_id'], ['bots.id'], name=op.f('fk_pending_events_bot_id_bots')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pending_events')),
    sa.UniqueConstraint('bot_id', 'update_key', name=op.f('uq_pending_events_bot_id_update_key'))
    )


def downgrade() -> None:
    op.drop_table('pending_events')
    with op.batch_alter_table('answers', schema=None) as batch_op:
        batch_op.drop_index('ix_answers_waiting')

    op.drop_table('answers')
