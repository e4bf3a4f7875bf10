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


async def test_upgrading_to_0002_ends_seats_that_had_ended(db_url: str) -> None:
    from sqlalchemy import text

    await upgrade(db_url, "0001")
    db = await open_database(db_url)
    try:
        async with db.write() as conn:
            await conn.execute(
                text(
                    "INSERT INTO rooms (id, code, name, participant_limit, created_at) "
                    "VALUES ('r1', 'c1', 'Group', 8, '2026-01-01 10:00:00+00:00')"
                )
            )
            await conn.execute(
                text(
                    "INSERT INTO sessions (id, room_id, status, started_at) "
                    "VALUES ('s1', 'r1', 'open', '2026-01-01 10:00:00+00:00')"
                )
            )
            for pid in ("p_gone", "p_here"):
                await conn.execute(
                    text(
                        "INSERT INTO participants (id, session_id, display_name, "
                        "first_joined_at) VALUES (:pid, 's1', 'X', '2026-01-01 10:00:00+00:00')"
                    ),
                    {"pid": pid},
                )
            await conn.execute(
                text(
                    "INSERT INTO attendance (session_id, participant_id, joined_at, left_at, "
                    "leave_reason) VALUES ('s1', 'p_gone', '2026-01-01 10:00:00+00:00', "
                    "'2026-01-01 10:30:00+00:00', 'left'), "
                    "('s1', 'p_here', '2026-01-01 10:00:00+00:00', NULL, NULL)"
                )
            )
    finally:
        await db.close()
    await upgrade(db_url)
    db = await open_database(db_url)
    try:
        async with db.read() as conn:
            rows = dict(
                (
                    await conn.execute(
                        text("SELECT id, left_at IS NOT NULL FROM participants ORDER BY id")
                    )
                ).all()
            )
        assert rows == {"p_gone": True, "p_here": False}
    finally:
        await db.close()
