"""deliveries without foreign keys; erased chat addresses kept blank

Revision ID: b7f1a2c30001
Revises: 5d0c3a7e91b4
Create Date: 2026-11-30 08:30:00.000000

The four per-row foreign-key checks on deliveries were most of a 1,000,000-row fan-out on
PostgreSQL (db/models.py, Delivery, says why integrity holds without them). /xoa now
blanks a chat address (chat_id NULL) instead of deleting it, so deliveries keep pointing
at an anonymous row and nothing scans deliveries to SET NULL.
"""

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op


revision: str = 'b7f1a2c30001'
down_revision: str | None = '5d0c3a7e91b4'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (constraint, referred table, local column, ON DELETE) as the earlier revisions made them.
DELIVERY_FOREIGN_KEYS = [
    ('fk_deliveries_run_id_broadcast_runs', 'broadcast_runs', 'run_id', 'CASCADE'),
    ('fk_deliveries_chat_address_id_chat_addresses', 'chat_addresses', 'chat_address_id',
     'SET NULL'),
    ('fk_deliveries_bot_id_bots', 'bots', 'bot_id', None),
    ('fk_deliveries_area_id_areas', 'areas', 'area_id', None),
]  # fmt: skip


@contextmanager
def _inbox_links_kept() -> Iterator[None]:
    """Keep inbox_messages.chat_address_id across a SQLite rebuild of chat_addresses.

    Batch mode rebuilds the table (copy, DROP, rename). With foreign keys on, which the
    service's engine sets and PRAGMA cannot turn off inside the migration's transaction,
    the DROP deletes every row first and ON DELETE SET NULL would unlink every inbox
    message from its chat (officials could no longer reply). The links are saved and put
    back; the rebuilt table keeps the ids.
    """
    if op.get_bind().dialect.name != 'sqlite':
        yield
        return
    op.execute(
        'CREATE TEMP TABLE inbox_links AS SELECT id, chat_address_id FROM inbox_messages '
        'WHERE chat_address_id IS NOT NULL'
    )
    yield
    op.execute(
        'UPDATE inbox_messages SET chat_address_id = (SELECT chat_address_id FROM inbox_links '
        'WHERE inbox_links.id = inbox_messages.id) WHERE id IN (SELECT id FROM inbox_links)'
    )
    op.execute('DROP TABLE inbox_links')


def upgrade() -> None:
    # Deliveries first, so the rebuild of chat_addresses below cannot touch them.
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        for name, _, _, _ in DELIVERY_FOREIGN_KEYS:
            batch_op.drop_constraint(name, type_='foreignkey')
    with _inbox_links_kept(), op.batch_alter_table('chat_addresses', schema=None) as batch_op:
        batch_op.alter_column('chat_id', existing_type=sa.String(length=64), nullable=True)


def downgrade() -> None:
    # The old schema cannot hold a blank address: do what the old /xoa did (delete it,
    # its deliveries lose the link) before chat_id is NOT NULL again.
    op.execute(
        'UPDATE deliveries SET chat_address_id = NULL WHERE chat_address_id IN '
        '(SELECT id FROM chat_addresses WHERE chat_id IS NULL)'
    )
    op.execute(
        'UPDATE inbox_messages SET chat_address_id = NULL WHERE chat_address_id IN '
        '(SELECT id FROM chat_addresses WHERE chat_id IS NULL)'
    )
    op.execute('DELETE FROM chat_addresses WHERE chat_id IS NULL')
    with _inbox_links_kept(), op.batch_alter_table('chat_addresses', schema=None) as batch_op:
        batch_op.alter_column('chat_id', existing_type=sa.String(length=64), nullable=False)
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        for name, referred, column, ondelete in DELIVERY_FOREIGN_KEYS:
            batch_op.create_foreign_key(name, referred, [column], ['id'], ondelete=ondelete)
