"""The packaged Alembic migrations on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

import telecircle
from telecircle.storage.database import open_database
from telecircle.storage.migrations import (
    MIGRATIONS_DIR,
    alembic_config,
    current_revision,
    head_revision,
    upgrade,
)
from telecircle.storage.tables import Base

TABLES = {
    "rooms",
    "sessions",
    "participants",
    "attendance",
    "events",
    "users",
    "login_sessions",
    "account_links",
    "org_settings",
    "agreement_versions",
    "room_clinicians",
    "scheduled_sessions",
    "invites",
    "patient_passes",
    "consents",
    "audit_log",
    "audit_head",
}


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def _differences(conn: Connection) -> list[object]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _downgrade_to_base(conn: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = conn
    command.downgrade(config, "base")


async def test_upgrade_creates_every_table_and_records_head(db_url: str) -> None:
    assert await current_revision(db_url) is None
    await upgrade(db_url)
    assert await current_revision(db_url) == head_revision()
    db = await open_database(db_url)
    try:
        async with db.read() as conn:
            assert await conn.run_sync(_tables) >= TABLES | {"alembic_version"}
    finally:
        await db.close()


async def test_upgrade_twice_is_a_no_op(db_url: str) -> None:
    await upgrade(db_url)
    await upgrade(db_url)
    assert await current_revision(db_url) == head_revision()


async def test_models_match_the_migrated_schema(db_url: str) -> None:
    await upgrade(db_url)
    db = await open_database(db_url)
    try:
        async with db.read() as conn:
            assert await conn.run_sync(_differences) == []
    finally:
        await db.close()


async def test_downgrade_to_base_and_back(db_url: str) -> None:
    await upgrade(db_url)
    db = await open_database(db_url)
    try:
        async with db.write() as conn:
            await conn.run_sync(_downgrade_to_base)
        async with db.read() as conn:
            assert not (await conn.run_sync(_tables)) & TABLES
    finally:
        await db.close()
    await upgrade(db_url)
    assert await current_revision(db_url) == head_revision()


def test_migrations_ship_inside_the_package() -> None:
    package = Path(telecircle.__file__).resolve().parent
    assert MIGRATIONS_DIR.is_relative_to(package)
    assert (MIGRATIONS_DIR / "env.py").is_file()
    assert any((MIGRATIONS_DIR / "versions").glob("*.py"))
