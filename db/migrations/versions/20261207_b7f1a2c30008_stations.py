"""stations

Revision ID: b7f1a2c30008
Revises: b7f1a2c30007
Create Date: 2026-12-07 08:00:00.000000

The communes whose loudspeaker stream runs (`stations`, switched on and off by an
administrator), and the urgent runs already put on a commune's stream (`station_plays`),
so a restart or a handover of the station's lease does not play an urgent bulletin twice.
Each station keeps what its stream plays as the driver last saw it (`on_air*`), and
`station_requests` holds the operators' "play now" of a published bulletin.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import db.types


revision: str = 'b7f1a2c30008'
down_revision: str | None = 'b7f1a2c30007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('stations',
    sa.Column('area_id', sa.Integer(), nullable=False),
    sa.Column('enabled', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('created_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('on_air', sa.Enum('urgent', 'programme', 'filler', name='stationonair', native_enum=False, length=24), nullable=True),
    sa.Column('on_air_title', sa.String(length=400), nullable=True),
    sa.Column('on_air_since', db.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['area_id'], ['areas.id'], name=op.f('fk_stations_area_id_areas')),
    sa.PrimaryKeyConstraint('area_id', name=op.f('pk_stations'))
    )
    op.create_table('station_plays',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('area_id', sa.Integer(), nullable=False),
    sa.Column('played_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['area_id'], ['areas.id'], name=op.f('fk_station_plays_area_id_areas')),
    sa.ForeignKeyConstraint(['run_id'], ['broadcast_runs.id'], name=op.f('fk_station_plays_run_id_broadcast_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'area_id', name=op.f('pk_station_plays'))
    )
    op.create_table('station_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('area_id', sa.Integer(), nullable=False),
    sa.Column('bulletin_id', sa.Integer(), nullable=False),
    sa.Column('requested_by_id', sa.Integer(), nullable=True),
    sa.Column('requested_at', db.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('state', sa.Enum('pending', 'played', 'dropped', name='stationrequeststate', native_enum=False, length=24), nullable=False),
    sa.Column('played_at', db.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reason', sa.String(length=40), nullable=True),
    sa.ForeignKeyConstraint(['area_id'], ['areas.id'], name=op.f('fk_station_requests_area_id_areas')),
    sa.ForeignKeyConstraint(['bulletin_id'], ['bulletins.id'], name=op.f('fk_station_requests_bulletin_id_bulletins'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['requested_by_id'], ['officials.id'], name=op.f('fk_station_requests_requested_by_id_officials')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_station_requests'))
    )
    with op.batch_alter_table('station_requests', schema=None) as batch_op:
        batch_op.create_index('ix_station_requests_area_requested', ['area_id', 'requested_at'], unique=False)
        batch_op.create_index('ix_station_requests_pending', ['requested_at'], unique=False, sqlite_where=sa.text("state = 'pending'"), postgresql_where=sa.text("state = 'pending'"))


def downgrade() -> None:
    with op.batch_alter_table('station_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_station_requests_pending', sqlite_where=sa.text("state = 'pending'"), postgresql_where=sa.text("state = 'pending'"))
        batch_op.drop_index('ix_station_requests_area_requested')
    op.drop_table('station_requests')
    op.drop_table('station_plays')
    op.drop_table('stations')
