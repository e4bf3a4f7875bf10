"""Consistent snapshots of the database, and bringing one back (``telecircle backup|restore``).

SQLite: the online backup API copies every page in one step under one read transaction
(WAL mode: the server's writers go on meanwhile), into a single self-contained file in
rollback-journal mode. PostgreSQL: ``pg_dump`` (custom format, one MVCC snapshot) and
``pg_restore`` from Debian's ``postgresql-client``, connected with the URL's host, port,
user and database; a password in the URL goes to the tools through their environment,
never their command line. Nothing here logs or prints what the database holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Literal

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.engine.url import URL

from telecircle.errors import TelecircleError
from telecircle.storage.database import POSTGRESQL_DRIVER, SQLITE_DRIVER, open_database

DatabaseKind = Literal["sqlite", "postgresql"]
SNAPSHOT_FILE: dict[DatabaseKind, str] = {
    "sqlite": "telecircle.db",
    "postgresql": "telecircle.pgdump",
}
# The PostgreSQL tools must neither prompt nor hang on an unreachable server; a dump of
# a clinic's database takes seconds, so an hour means something is wrong.
PG_CONNECT_TIMEOUT = 10
PG_TOOL_TIMEOUT = 3600.0
_HASH_CHUNK = 1 << 20
_PG_TOOLS_MISSING = (
    "is not installed: install the PostgreSQL client tools "
    "(Debian: apt-get install postgresql-client), of the server's major version or newer"
)


class SnapshotError(TelecircleError):
    """Taking or restoring a snapshot failed; the message says what and what to do."""

    code = "snapshot"
    http_status = 500


def database_kind(url: str) -> DatabaseKind:
    """``"sqlite"`` or ``"postgresql"`` for a supported SQLAlchemy URL."""
    driver = make_url(url).drivername
    if driver == SQLITE_DRIVER:
        return "sqlite"
    if driver == POSTGRESQL_DRIVER:
        return "postgresql"
    raise SnapshotError(f"unsupported database URL scheme {driver!r}")


def sqlite_path(url: str) -> Path:
    """The database file of a ``sqlite+aiosqlite:///PATH`` URL (not in-memory)."""
    database = make_url(url).database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        raise SnapshotError("an in-memory or URI-named SQLite database cannot be backed up")
    return Path(database)


def sqlite_url(path: Path) -> str:
    return f"{SQLITE_DRIVER}:///{path}"


def sha256_of(path: Path) -> str:
    """The SHA-256 of the file's bytes, as hex."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def write_sqlite_snapshot(source: Path, target: Path) -> str | None:
    """Copy the live database ``source`` into the new file ``target`` (mode 0600) and
    return the snapshot's schema revision (None if it was never migrated).

    Blocking: run it in a thread. Safe while the server writes. ``target`` must not
    exist. The copy is checked with ``PRAGMA integrity_check`` and fsynced. Raises
    :class:`SnapshotError` if ``source`` is not there or the copy is damaged.
    """
    if not source.is_file():
        raise SnapshotError(
            f"There is no database at {source}: nothing to back up. Check "
            "TELECIRCLE_DATA_DIR (or TELECIRCLE_DATABASE_URL)."
        )
    _create_empty_private(target)
    # mode=rw: never create an empty database where the live one was expected.
    live = sqlite3.connect(f"file:{source}?mode=rw", uri=True, isolation_level=None)
    try:
        live.execute("PRAGMA busy_timeout=5000")
        copy = sqlite3.connect(target, isolation_level=None)
        try:
            # pages=-1: every page in one step, so the copy is one consistent snapshot.
            live.backup(copy, pages=-1)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            _check_integrity(copy, target)
            revision = _revision(copy)
        finally:
            copy.close()
    finally:
        live.close()
    _fsync(target)
    return revision


def read_sqlite_revision(path: Path) -> str | None:
    """The schema revision of the SQLite file ``path``, read without changing it."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        return _revision(connection)
    finally:
        connection.close()


def settle_sqlite_file(path: Path) -> None:
    """Fold the write-ahead log back into ``path`` so the file alone holds everything
    (before it is linked into place). Blocking."""
    connection = sqlite3.connect(f"file:{path}?mode=rw", uri=True, isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=DELETE")
    finally:
        connection.close()
    _fsync(path)


async def postgres_revision(url: str) -> str | None:
    """The schema revision of the PostgreSQL database (None if never migrated)."""
    db = await open_database(url)
    try:
        async with db.read() as connection:
            exists = await connection.execute(text("SELECT to_regclass('alembic_version')"))
            if exists.scalar_one() is None:
                return None
            rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
            return rows.scalar_one_or_none()
    finally:
        await db.close()


async def postgres_relation_count(url: str) -> int:
    """How many tables, views and sequences the database holds outside the system
    schemas: 0 for a fresh database."""
    db = await open_database(url)
    try:
        async with db.read() as connection:
            rows = await connection.execute(
                text(
                    "SELECT count(*) FROM pg_catalog.pg_class c "
                    "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') "
                    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
                    "AND n.nspname NOT LIKE 'pg_toast%'"
                )
            )
            return int(rows.scalar_one())
    finally:
        await db.close()


async def write_postgres_snapshot(url: str, target: Path) -> None:
    """``pg_dump`` the database at ``url`` into the new file ``target`` (custom format,
    mode 0600). Raises :class:`SnapshotError` with the tool's complaint on failure."""
    _create_empty_private(target)
    await _run_pg_tool(
        "pg_dump", ["--format=custom", "--no-password", f"--file={target}"], make_url(url)
    )
    _fsync(target)


async def restore_postgres_snapshot(url: str, source: Path) -> None:
    """``pg_restore`` ``source`` into the (empty) database at ``url``, in one
    transaction, owned by the URL's user whoever owned the original objects."""
    await _run_pg_tool(
        "pg_restore",
        [
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            "--no-password",
            str(source),
        ],
        make_url(url),
    )


async def _run_pg_tool(tool: str, arguments: list[str], url: URL) -> None:
    executable = shutil.which(tool)
    if executable is None:
        raise SnapshotError(f"{tool} {_PG_TOOLS_MISSING}.")
    process = await asyncio.create_subprocess_exec(
        executable,
        f"--dbname={_conninfo(url)}",
        *arguments,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=_pg_environment(url),
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), PG_TOOL_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise SnapshotError(f"{tool} did not finish within {PG_TOOL_TIMEOUT:.0f} s.") from None
    if process.returncode != 0:
        complaint = stderr.decode("utf-8", errors="replace").strip()[-2000:]
        raise SnapshotError(f"{tool} failed (exit {process.returncode}): {complaint}")


def _conninfo(url: URL) -> str:
    """A libpq connection string for the URL's host, port, user and database (the
    password goes through the environment instead, out of the process list)."""
    parts = {"dbname": url.database or ""}
    host = url.host or _query_value(url, "host")
    if host:
        parts["host"] = host
    if url.port:
        parts["port"] = str(url.port)
    if url.username:
        parts["user"] = url.username
    ssl = _query_value(url, "sslmode") or _query_value(url, "ssl")
    if ssl:
        parts["sslmode"] = ssl
    return " ".join(f"{key}={_quote(value)}" for key, value in parts.items())


def _pg_environment(url: URL) -> dict[str, str]:
    environment = dict(os.environ)
    environment["PGCONNECT_TIMEOUT"] = str(PG_CONNECT_TIMEOUT)
    if url.password is not None:
        environment["PGPASSWORD"] = str(url.password)
    return environment


def _query_value(url: URL, name: str) -> str | None:
    value = url.query.get(name)
    if isinstance(value, tuple):
        value = value[-1] if value else None
    return value


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def _revision(connection: sqlite3.Connection) -> str | None:
    found = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
    ).fetchone()
    if found is None:
        return None
    row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    return None if row is None else str(row[0])


def _check_integrity(connection: sqlite3.Connection, path: Path) -> None:
    rows = connection.execute("PRAGMA integrity_check").fetchall()
    if [tuple(row) for row in rows] != [("ok",)]:
        raise SnapshotError(
            f"The snapshot {path} failed SQLite's integrity check; the live database may be "
            "damaged. Run `sqlite3 DATABASE 'PRAGMA integrity_check'` on it."
        )


def _create_empty_private(target: Path) -> None:
    """Claim the new name ``target`` as an empty owner-only file (never replacing one or
    following a symbolic link) before a tool fills it."""
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    os.close(fd)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
