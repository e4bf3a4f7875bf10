"""Database fixtures for storage tests, written so they can move to tests/conftest.py.

``db_url`` yields the URL of an empty database, once per backend: SQLite in the test's
``tmp_path`` and PostgreSQL in a database created for the test and dropped after it.
PostgreSQL tests are skipped, with the reason, when the server is not reachable (or
fail, if ``TELECIRCLE_TEST_REQUIRE_POSTGRES=1``). Set
``TELECIRCLE_TEST_POSTGRES_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/test``)
to an existing database the test user may CREATE DATABASE from.

``database`` yields an open :class:`Database` migrated to the newest revision. For a
test that takes it, ``db_url``'s database is a copy of one migrated once per test
session (tests/database_template.py for SQLite; for PostgreSQL, a database made with
CREATE DATABASE ... TEMPLATE): migrating each from nothing took about 0.3 s a test.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import NoReturn

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy.engine import make_url

from telecircle.storage.database import Database, open_database
from telecircle.storage.migrations import upgrade
from tests import database_template

POSTGRES_DSN_VARIABLE = "TELECIRCLE_TEST_POSTGRES_DSN"
# Set to 1 (e.g. in CI) to make an unusable PostgreSQL fail the tests instead of skipping.
REQUIRE_POSTGRES_VARIABLE = "TELECIRCLE_TEST_REQUIRE_POSTGRES"
DEFAULT_POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"
CONNECT_TIMEOUT = 3.0


def postgres_admin_dsn() -> str:
    return os.environ.get(POSTGRES_DSN_VARIABLE, DEFAULT_POSTGRES_DSN)


def skip_postgres(reason: str) -> NoReturn:
    if os.environ.get(REQUIRE_POSTGRES_VARIABLE) == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def sqlite_url(folder: Path) -> str:
    # A folder that does not exist yet: open_database must create it.
    return f"sqlite+aiosqlite:///{folder / 'data' / 'telecircle.db'}"


@pytest.fixture(scope="session")
def postgres_unreachable() -> str | None:
    """None when PostgreSQL's port accepts connections, else why not (checked once)."""
    url = make_url(postgres_admin_dsn())
    host, port = url.host or "127.0.0.1", url.port or 5432
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
            return None
    except OSError as exc:
        return f"PostgreSQL not reachable at {host}:{port}: {exc}"


def postgres_url(name: str) -> str:
    """The URL of the database ``name`` on the test server."""
    return (
        make_url(postgres_admin_dsn())
        .set(drivername="postgresql+asyncpg", database=name)
        .render_as_string(hide_password=False)
    )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def db_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    postgres_unreachable: str | None,
    postgres_template: database_template.PostgresTemplate,
) -> AsyncIterator[str]:
    """The URL of an empty database on each supported backend; for a test that also
    takes ``database``, one at the newest revision already (a copy of the template)."""
    at_newest_revision = "database" in request.fixturenames
    if request.param == "sqlite":
        url = sqlite_url(tmp_path)
        if at_newest_revision:
            database_template.create_at_newest_revision(url)
        yield url
        return
    if postgres_unreachable is not None:
        skip_postgres(postgres_unreachable)
    admin_url = make_url(postgres_admin_dsn())
    where = f"{admin_url.host}:{admin_url.port or 5432}"
    try:
        admin = await asyncpg.connect(postgres_admin_dsn(), timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        skip_postgres(f"PostgreSQL not reachable at {where}: {exc}")
    except asyncpg.PostgresError as exc:
        skip_postgres(f"PostgreSQL at {where} refused the test connection: {exc}")
    name = f"telecircle_test_{secrets.token_hex(6)}"
    try:
        if at_newest_revision:
            template = await postgres_template.name_for(postgres_admin_dsn(), postgres_url)
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield postgres_url(name)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def database(db_url: str) -> AsyncIterator[Database]:
    """An open database at the newest schema revision."""
    await upgrade(db_url)  # a copy of the template already: this checks it is at the head
    db = await open_database(db_url)
    try:
        yield db
    finally:
        await db.close()
