"""Consistent backups: SQLite's online backup API, pg_dump for PostgreSQL."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

from sqlalchemy.engine import make_url


class BackupError(RuntimeError):
    """The backup could not be written; the message says why."""


def backup(database_url: str, target: Path) -> Path:
    """Write a consistent copy of the database to `target` (a file), atomically.

    SQLite: the online backup API, safe while the service writes (WAL). PostgreSQL:
    `pg_dump --format=custom` (restore with pg_restore); needs pg_dump on PATH.
    """
    url = make_url(database_url)
    target = target.expanduser()
    if target.is_dir():
        raise BackupError(f"{target} is a directory; give a file name")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        if url.get_backend_name() == "sqlite":
            _backup_sqlite(url.database or "", partial)
        elif url.get_backend_name() == "postgresql":
            _backup_postgres(url.set(drivername="postgresql"), partial)
        else:
            raise BackupError(f"no backup method for {url.get_backend_name()}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def _backup_sqlite(path: str, partial: Path) -> None:
    if not path or path == ":memory:" or not Path(path).exists():
        raise BackupError(f"no SQLite database at {path or '(memory)'}")
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    destination = sqlite3.connect(partial)
    try:
        source.backup(destination)
    finally:
        destination.close()
        source.close()


def _backup_postgres(url: object, partial: Path) -> None:
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise BackupError("pg_dump is not installed (apt install postgresql-client)")
    env = dict(os.environ)
    password = url.password  # type: ignore[attr-defined]
    if password:
        # The password goes through the environment, not argv, so it never shows in `ps`.
        env["PGPASSWORD"] = str(password)
    dsn = url.set(password=None).render_as_string()  # type: ignore[attr-defined]
    result = subprocess.run(  # noqa: S603 - fixed executable, no shell
        [pg_dump, "--format=custom", "--no-owner", f"--file={partial}", f"--dbname={dsn}"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BackupError(f"pg_dump failed: {result.stderr.strip()}")
