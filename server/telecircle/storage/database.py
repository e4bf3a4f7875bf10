"""Opening the database: one :class:`Database` per process, owned by the application.

Supported URLs: ``sqlite+aiosqlite:///PATH`` (the default) and
``postgresql+asyncpg://USER@HOST:PORT/NAME``.

SQLite guarantees, set on every new connection: ``journal_mode=WAL``,
``synchronous=FULL`` (a committed transaction survives a crash or power loss),
``foreign_keys=ON``, ``busy_timeout=5000`` ms and ``secure_delete=ON``. SQLAlchemy, not
the sqlite3 module, emits ``BEGIN``: write transactions start with ``BEGIN IMMEDIATE`` so
they queue on the database's write lock (waiting up to the busy timeout) instead of
failing when two of them overlap; read transactions start with a deferred ``BEGIN`` and
read one consistent snapshot.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.engine.url import URL
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from telecircle.logs import quiet_third_party_loggers
from telecircle.storage.errors import DatabaseSetupError

SQLITE_DRIVER = "sqlite+aiosqlite"
POSTGRESQL_DRIVER = "postgresql+asyncpg"
SQLITE_BUSY_TIMEOUT_MS = 5000

# Execution option marking a connection whose transaction only reads.
_READ_ONLY = "telecircle_read_only"

_SQLITE_PRAGMAS = (
    "PRAGMA foreign_keys=ON",
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
    "PRAGMA synchronous=FULL",
    "PRAGMA secure_delete=ON",
)


class Database:
    """An async engine plus a session factory.

    ``write()`` and ``read()`` hand out a connection inside one transaction;
    ``sessionmaker`` makes ORM sessions (their transactions count as writes on SQLite).
    ``close()`` disposes of the engine's connections and may be called more than once.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessionmaker: async_sessionmaker[AsyncSession] = async_sessionmaker(
            engine, expire_on_commit=False
        )
        self._closed = False

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.engine.dialect.name

    @property
    def closed(self) -> bool:
        return self._closed

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a write transaction, committed (durably) when the block exits.

        An exception inside the block rolls the transaction back and propagates.
        """
        async with self.engine.begin() as connection:
            yield connection

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction that only reads; rolled back on exit."""
        async with self.engine.connect() as connection:
            await connection.execution_options(**{_READ_ONLY: True})
            await connection.begin()
            # Closing the connection rolls the transaction back.
            yield connection

    async def close(self) -> None:
        """Dispose of every pooled connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self.engine.dispose()


async def open_database(url: str, **engine_options: Any) -> Database:
    """Create the engine for ``url`` and check that a connection can be made.

    For SQLite the database's folder is created (mode 0700) and a new database file is
    created readable by its owner only. ``engine_options`` go to
    :func:`~sqlalchemy.ext.asyncio.create_async_engine`. Raises
    :class:`DatabaseSetupError` for an unsupported URL or when SQLite cannot use WAL;
    driver errors (unreachable server, bad credentials) propagate unchanged.
    """
    parsed = make_url(url)
    driver = parsed.drivername
    # Query parameters hold names and notes: keep them out of error messages and logs
    # (aiosqlite logs every statement with its parameters at DEBUG).
    engine_options.setdefault("hide_parameters", True)
    quiet_third_party_loggers()
    if driver == SQLITE_DRIVER:
        _prepare_sqlite_file(parsed)
        engine = create_async_engine(parsed, **engine_options)
        _install_sqlite_listeners(engine, in_memory=_is_memory(parsed))
    elif driver == POSTGRESQL_DRIVER:
        engine = create_async_engine(parsed, pool_pre_ping=True, **engine_options)
    else:
        raise DatabaseSetupError(
            f"unsupported database URL scheme {driver!r}: "
            f"use {SQLITE_DRIVER}:///PATH or {POSTGRESQL_DRIVER}://USER@HOST/NAME"
        )
    try:
        async with engine.connect():
            pass
    except BaseException:
        await engine.dispose()
        raise
    return Database(engine)


def _is_memory(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or "mode=memory" in database


def _prepare_sqlite_file(url: URL) -> None:
    database = url.database or ""
    if _is_memory(url) or database.startswith("file:"):
        return
    path = Path(database)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # SQLite gives the -wal and -shm files the database file's permissions.
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


def _install_sqlite_listeners(engine: AsyncEngine, *, in_memory: bool) -> None:
    def on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy emit BEGIN (see on_begin) rather than the sqlite3 module,
        # which would skip it before SELECTs and break read-then-write transactions.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            row = cursor.fetchone()
            mode = str(row[0]).lower() if row else ""
            if mode != "wal" and not in_memory:
                raise DatabaseSetupError(
                    f"SQLite refused WAL journal mode (got {mode!r}); "
                    "put the database on a local file system"
                )
            for pragma in _SQLITE_PRAGMAS:
                cursor.execute(pragma)
        finally:
            cursor.close()

    def on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get(_READ_ONLY):
            connection.exec_driver_sql("BEGIN DEFERRED")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    event.listen(engine.sync_engine, "connect", on_connect)
    event.listen(engine.sync_engine, "begin", on_begin)
