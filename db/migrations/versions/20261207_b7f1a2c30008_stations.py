"""stations

Revision ID: b7f1a2c30008
Revises: b7f1a2c30007
Create Date: 2026-12-07 08:00:00.000000

The communes whose loudspeaker stream runs (`stations`, switched on and off by an
administrator), and the urgent runs already put on a commune's stream (`station_plays`),
so a restart or a handover of the station's lease does not play an urgent bulletin twice.
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


def downgrade() -> None:
    op.drop_table('station_plays')
    op.drop_table('stations')
