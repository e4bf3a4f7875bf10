"""The database: reachable, writable, and at the schema the code expects.

Writability is proven by a real write (a probe table made and filled) inside a
transaction that is always rolled back, so nothing stays. A SQLite file that does not
exist is reported, never created.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError

from telecircle.diagnostics.deployment import Deployment
from telecircle.diagnostics.results import CheckResult, ok, problem, reason, warning
from telecircle.storage.database import Database, open_database
from telecircle.storage.migrations import alembic_config, head_revision

NAME = "Database"
TIMEOUT = 15.0
# A table no migration makes; created and filled only inside a rolled-back transaction.
PROBE_STATEMENTS = (
    "CREATE TABLE telecircle_doctor_probe (probe INTEGER)",
    "INSERT INTO telecircle_doctor_probe (probe) VALUES (1)",
)


def describe(exc: BaseException) -> str:
    """One line about a database error: the driver's own words, never the statement."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return reason(exc.orig)
    return reason(exc)


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL, or None (another database, in memory, a file: URI)."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:") or "mode=memory" in database:
        return None
    return Path(database)


async def check_database(deployment: Deployment) -> CheckResult:
    """Open the database, write in a transaction that is rolled back, and compare its
    schema revision with the newest migration."""
    url = deployment.settings.effective_database_url
    path = sqlite_file(url)
    shown = str(path) if path is not None else make_url(url).render_as_string(hide_password=True)
    if path is not None and not path.exists():
        return problem(
            NAME,
            f"{path} does not exist: start Telecircle once (it makes the database), or "
            "point TELECIRCLE_DATA_DIR (or TELECIRCLE_DATABASE_URL) at the existing one",
        )
    try:
        database = await asyncio.wait_for(open_database(url), TIMEOUT)
    except TimeoutError:
        return problem(NAME, f"{shown} did not answer within {TIMEOUT:.0f} s")
    except OSError as exc:
        return problem(
            NAME,
            f"cannot open {shown} for writing ({reason(exc)}): the account Telecircle runs "
            "as must own the database file and its folder, on a writable file system",
        )
    except Exception as exc:  # any driver error: say why, no traceback
        return problem(NAME, f"cannot connect to {shown} ({describe(exc)})")
    try:
        try:
            await asyncio.wait_for(_write_and_roll_back(database), TIMEOUT)
        except TimeoutError:
            return problem(
                NAME,
                f"a write to {shown} did not finish within {TIMEOUT:.0f} s: is another "
                "program holding a lock on it?",
            )
        except Exception as exc:  # any driver error: say why, no traceback
            return problem(
                NAME,
                f"cannot write to {shown} ({describe(exc)}): the account Telecircle runs as "
                "must be able to write the database (and, for SQLite, its folder)",
            )
        try:
            current = await asyncio.wait_for(_revision(database), TIMEOUT)
        except Exception as exc:  # any driver error: say why, no traceback
            return warning(NAME, f"writable; its schema revision cannot be read ({describe(exc)})")
    finally:
        await database.close()
    return _judge_revision(shown, current)


def _judge_revision(shown: str, current: str | None) -> CheckResult:
    head = head_revision()
    if current == head:
        return ok(NAME, f"{shown} is writable; its schema is up to date ({head})")
    if current is None:
        return problem(
            NAME,
            f"{shown} is writable but has no Telecircle tables: run telecircle db upgrade "
            "(or start Telecircle once), or point TELECIRCLE_DATABASE_URL at the right one",
        )
    try:
        ScriptDirectory.from_config(alembic_config()).get_revision(current)
    except CommandError:
        return problem(
            NAME,
            f"{shown} is at schema revision {current}, which this Telecircle does not know: "
            "it was made by a newer Telecircle. Install that version again",
        )
    return warning(
        NAME,
        f"{shown} is writable; its schema ({current}) is behind this Telecircle's ({head}): "
        "run telecircle db upgrade (Telecircle also upgrades it when it starts)",
    )


async def _write_and_roll_back(database: Database) -> None:
    async with database.engine.connect() as connection:
        transaction = await connection.begin()
        try:
            for statement in PROBE_STATEMENTS:
                await connection.execute(text(statement))
        finally:
            await transaction.rollback()


async def _revision(database: Database) -> str | None:
    async with database.read() as connection:
        return await connection.run_sync(_current_revision)


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
