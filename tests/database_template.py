"""New SQLite databases at the newest schema revision, copied from one migrated template.

Migrating a new database from nothing runs every revision's DDL through alembic, about
0.4 s here, and the suite's servers and database fixtures make hundreds of them. The
migrations still run in full: once per test process into the template, and from
nothing (up, down, up again) in tests/storage/test_migrations.py, which takes empty
databases. A new database is then an exact copy of the template's file, created as
:func:`telecircle.storage.database.open_database` creates one (mode 0600, in a folder
of mode 0700 if the folder is new). A database that exists already is left to the
real migrations, so a server started on older data still upgrades it itself.

For PostgreSQL, :class:`PostgresTemplate` is the database that the ``db_url`` fixture
of tests/storage/conftest.py copies (CREATE DATABASE ... TEMPLATE) for tests that take
a database at the newest revision.
"""

from __future__ import annotations

import asyncio
import functools
import os
import secrets
import sqlite3
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url

from telecircle.storage import migrations
from telecircle.storage.database import SQLITE_DRIVER


@functools.cache
def _template_bytes() -> bytes:
    """The file of a SQLite database migrated to the newest revision (made once per test
    process, on a thread of its own: callers may be inside an event loop or outside any)."""
    with tempfile.TemporaryDirectory(prefix="telecircle-template-") as folder:
        path = Path(folder) / "template.db"
        migrating = threading.Thread(
            target=asyncio.run, args=(migrations.upgrade(f"{SQLITE_DRIVER}:///{path}"),)
        )
        migrating.start()
        migrating.join()
        # Everything in the main file: nothing left behind in a write-ahead log.
        with sqlite3.connect(path) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        connection.close()
        return path.read_bytes()


def create_at_newest_revision(url: str) -> bool:
    """Create the database at ``url`` as a copy of the template, if it is a SQLite file
    that does not exist yet (True); otherwise leave it as it is (False)."""
    parsed = make_url(url)
    if parsed.drivername != SQLITE_DRIVER or not parsed.database:
        return False
    path = Path(parsed.database)
    if path.exists() or parsed.database.startswith("file:") or parsed.database == ":memory:":
        return False
    template = _template_bytes()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(descriptor, "wb") as copy:
        copy.write(template)
    return True


async def upgrade(url: str) -> None:
    """:func:`telecircle.storage.migrations.upgrade`, quicker for a new SQLite file."""
    if not create_at_newest_revision(url):
        await migrations.upgrade(url)


class PostgresTemplate:
    """A PostgreSQL database migrated to the newest revision, made on first use and
    dropped by :meth:`drop` (at the end of the test session)."""

    CONNECT_TIMEOUT = 3.0

    def __init__(self) -> None:
        self.name: str | None = None
        self.admin_dsn = ""

    async def name_for(self, admin_dsn: str, url_of: Callable[[str], str]) -> str:
        """The template's name, made with the server at ``admin_dsn`` if it is not yet
        (``url_of(name)``: the URL of database ``name`` there, to migrate it)."""
        if self.name is None:
            name = f"telecircle_template_{secrets.token_hex(6)}"
            admin = await asyncpg.connect(admin_dsn, timeout=self.CONNECT_TIMEOUT)
            try:
                await admin.execute(f'CREATE DATABASE "{name}"')
            finally:
                await admin.close()
            self.name, self.admin_dsn = name, admin_dsn
            await migrations.upgrade(url_of(name))
        return self.name

    def drop(self) -> None:
        if self.name is None:
            return

        async def drop(name: str) -> None:
            admin = await asyncpg.connect(self.admin_dsn, timeout=self.CONNECT_TIMEOUT)
            try:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()

        # On a thread of its own: no event loop of the tests' is running or reused.
        dropper = threading.Thread(target=asyncio.run, args=(drop(self.name),))
        dropper.start()
        dropper.join()
