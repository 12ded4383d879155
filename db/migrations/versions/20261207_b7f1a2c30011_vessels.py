"""vessels

Revision ID: b7f1a2c30011
Revises: b7f1a2c30010
Create Date: 2026-12-07 14:48:30.067992

Fishing vessels of the provinces' registries (`vessels`: registration, commune, home port,
a contact phone), the people who sail on or own them (`vessel_members`), and officials'
records that a vessel was told about a bulletin by hand (`vessel_marks`).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.types


revision: str = 'b7f1a2c30011'
down_revision: str | None = 'b7f1a2c30010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('vessels',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('registration', sa.String(length=32), nullable=False),
    sa.Column('registration_key', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=120), server_default='', nullable=False),
    sa.Column('commune_id', sa.Integer(), nullable=False),
    sa.Column('home_port_id', sa.Integer(), nullable=True),
    sa.Column('phone', sa.String(length=16), nullable=True),
    sa.Column('updated_at', db.types.UTCDateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.Column('created_at', db.types.UTCDateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['commune_id'], ['areas.id'], name=op.f('fk_vessels_commune_id_areas')),
    sa.ForeignKeyConstraint(['home_port_id'], ['areas.id'], name=op.f('fk_vessels_home_port_id_areas')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vessels')),
    sa.UniqueConstraint('registration_key', name=op.f('uq_vessels_registration_key'))
    )
    with op.batch_alter_table('vessels', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vessels_commune_id'), ['commune_id'], unique=False)

    op.create_table('vessel_members',
    sa.Column('vessel_id', sa.Integer(), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=False),
    sa.Column('relation', sa.Enum('captain', 'crew', 'owner', 'family', name='vesselrelation', native_enum=False, length=24), nullable=False),
    sa.Column('created_at', db.types.UTCDateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], name=op.f('fk_vessel_members_subscriber_id_subscribers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['vessel_id'], ['vessels.id'], name=op.f('fk_vessel_members_vessel_id_vessels'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('vessel_id', 'subscriber_id', name=op.f('pk_vessel_members'))
    )
    with op.batch_alter_table('vessel_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vessel_members_subscriber_id'), ['subscriber_id'], unique=False)

    op.create_table('vessel_marks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('vessel_id', sa.Integer(), nullable=False),
    sa.Column('bulletin_id', sa.Integer(), nullable=False),
    sa.Column('official_id', sa.Integer(), nullable=True),
    sa.Column('marked_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('method', sa.Enum('radio', 'phone', 'in_person', 'other', name='markmethod', native_enum=False, length=24), nullable=False),
    sa.Column('note', sa.Text(), server_default='', nullable=False),
    sa.ForeignKeyConstraint(['bulletin_id'], ['bulletins.id'], name=op.f('fk_vessel_marks_bulletin_id_bulletins'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['official_id'], ['officials.id'], name=op.f('fk_vessel_marks_official_id_officials')),
    sa.ForeignKeyConstraint(['vessel_id'], ['vessels.id'], name=op.f('fk_vessel_marks_vessel_id_vessels'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_vessel_marks')),
    sa.UniqueConstraint('bulletin_id', 'vessel_id', name=op.f('uq_vessel_marks_bulletin_id_vessel_id'))
    )
    with op.batch_alter_table('vessel_marks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_vessel_marks_vessel_id'), ['vessel_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('vessel_marks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vessel_marks_vessel_id'))

    op.drop_table('vessel_marks')
    with op.batch_alter_table('vessel_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vessel_members_subscriber_id'))

    op.drop_table('vessel_members')
    with op.batch_alter_table('vessels', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_vessels_commune_id'))

    op.drop_table('vessels')
