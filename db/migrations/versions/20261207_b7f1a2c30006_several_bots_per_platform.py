"""several bots per platform

Revision ID: b7f1a2c30006
Revises: b7f1a2c30005
Create Date: 2026-12-07 06:30:00.000000

A deployment registers more than one bot per platform (for example one per province):
each bot keeps its token sealed in the database, its poster link and the province it
serves. Each platform's first bot ("default") keeps taking its token from the
environment.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'b7f1a2c30006'
down_revision: str | None = 'b7f1a2c30005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE, not batch mode: a SQLite rebuild of bots fails on the foreign keys
    # that point at it (chat addresses, answers, uploads). SQLite takes the reference inline.
    op.add_column('bots', sa.Column('token_sealed', sa.Text(), nullable=True))
    op.add_column('bots', sa.Column('link', sa.String(length=255), nullable=True))
    if op.get_bind().dialect.name == 'sqlite':
        op.execute(
            'ALTER TABLE bots ADD COLUMN area_id INTEGER '
            'CONSTRAINT fk_bots_area_id_areas REFERENCES areas (id)'
        )
    else:
        op.add_column('bots', sa.Column('area_id', sa.Integer(), nullable=True))
        op.create_foreign_key(op.f('fk_bots_area_id_areas'), 'bots', 'areas', ['area_id'], ['id'])


def downgrade() -> None:
    if op.get_bind().dialect.name != 'sqlite':
        op.drop_constraint(op.f('fk_bots_area_id_areas'), 'bots', type_='foreignkey')
    op.drop_column('bots', 'area_id')
    op.drop_column('bots', 'link')
    op.drop_column('bots', 'token_sealed')
