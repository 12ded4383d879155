"""document search index

Revision ID: 5d0c3a7e91b4
Revises: e9a7e95b5a12
Create Date: 2026-11-26 09:00:00.000000

The documents library's search index, kept outside the ORM models: an FTS5 virtual table on
SQLite, a table with folded tsvectors (head: title, number, summary; tsv: everything) and
GIN indexes on PostgreSQL. The text in it is folded
in Python (db.text.fold: no diacritics, đ → d), so both backends match the same way. The
Alembic comparison skips tables named document_search* (db/schema.py include_name).
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from db.text import fold


revision: str = '5d0c3a7e91b4'
down_revision: str | None = 'e9a7e95b5a12'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of broadcasts.library's DDL as of this revision.
SQLITE_DDL = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS document_search USING fts5("
    "title, number, summary, body, "
    "tokenize = 'unicode61 remove_diacritics 0', prefix = '2 3')",
)
POSTGRESQL_DDL = (
    "CREATE TABLE IF NOT EXISTS document_search ("
    "document_id INTEGER PRIMARY KEY REFERENCES documents (id) ON DELETE CASCADE, "
    "number TEXT NOT NULL DEFAULT '', "
    "head TSVECTOR NOT NULL, "
    "tsv TSVECTOR NOT NULL)",
    "CREATE INDEX IF NOT EXISTS document_search_head ON document_search USING gin (head)",
    "CREATE INDEX IF NOT EXISTS document_search_tsv ON document_search USING gin (tsv)",
    "CREATE INDEX IF NOT EXISTS document_search_number "
    "ON document_search (number text_pattern_ops)",
)
_WORD = re.compile(r"[^\W_]+")


def _words(value: str | None) -> str:
    return " ".join(_WORD.findall(fold(value or "")))


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    for statement in SQLITE_DDL if sqlite else POSTGRESQL_DDL:
        op.execute(statement)
    # Index what is already there: the newest row of each number, and every unnumbered one.
    rows = bind.execute(
        sa.text(
            "SELECT id, title, number, summary, body FROM documents d WHERE NOT EXISTS ("
            "SELECT 1 FROM documents n WHERE n.number = d.number AND n.id > d.id)"
        )
    ).all()
    for row in rows:
        values = {
            "id": row.id,
            "title": _words(row.title),
            "number": fold(row.number or ""),
            "number_words": _words(row.number),
            "summary": _words(row.summary),
            "body": _words(row.body),
        }
        if sqlite:
            bind.execute(
                sa.text(
                    "INSERT INTO document_search (rowid, title, number, summary, body) "
                    "VALUES (:id, :title, :number, :summary, :body)"
                ),
                values,
            )
        else:
            bind.execute(
                sa.text(
                    "INSERT INTO document_search (document_id, number, head, tsv) "
                    "SELECT :id, :number, h.head, "
                    "h.head || setweight(to_tsvector('simple', :body), 'D') "
                    "FROM (SELECT setweight(to_tsvector('simple', :title), 'A') || "
                    "setweight(to_tsvector('simple', :number_words), 'A') || "
                    "setweight(to_tsvector('simple', :summary), 'B') AS head) h"
                ),
                values,
            )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS document_search")
