"""open_database: SQLite durability settings, folder creation, transactions, close()."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from sqlalchemy import text

from telecircle.storage.database import open_database
from telecircle.storage.errors import DatabaseSetupError


def sqlite_url(folder: Path) -> str:
    return f"sqlite+aiosqlite:///{folder / 'data' / 'telecircle.db'}"


async def test_sqlite_pragmas_are_in_effect_on_every_connection(tmp_path: Path) -> None:
    db = await open_database(sqlite_url(tmp_path))
    try:
        # Two connections at once: the pool must set the pragmas on each of them.
        async with db.read() as first, db.read() as second:
            for conn in (first, second):
                assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
                assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == 2
                assert (await conn.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
                assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 5000
                assert (await conn.exec_driver_sql("PRAGMA secure_delete")).scalar() == 1
    finally:
        await db.close()


async def test_sqlite_folder_and_file_are_private(tmp_path: Path) -> None:
    db = await open_database(sqlite_url(tmp_path))
    await db.close()
    folder = tmp_path / "data"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "telecircle.db").stat().st_mode) == 0o600


async def test_write_commits_and_survives_reopening(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    db = await open_database(url)
    async with db.write() as conn:
        await conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        await conn.exec_driver_sql("INSERT INTO t VALUES (1)")
    await db.close()
    again = await open_database(url)
    try:
        async with again.read() as conn:
            assert (await conn.execute(text("SELECT x FROM t"))).scalar() == 1
    finally:
        await again.close()


async def test_write_rolls_back_on_error(tmp_path: Path) -> None:
    db = await open_database(sqlite_url(tmp_path))
    try:
        async with db.write() as conn:
            await conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        with pytest.raises(RuntimeError):
            async with db.write() as conn:
                await conn.exec_driver_sql("INSERT INTO t VALUES (1)")
                raise RuntimeError("boom")
        async with db.read() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 0
    finally:
        await db.close()


async def test_sqlite_foreign_keys_are_enforced(tmp_path: Path) -> None:
    db = await open_database(sqlite_url(tmp_path))
    try:
        async with db.write() as conn:
            await conn.exec_driver_sql("CREATE TABLE p (id INTEGER PRIMARY KEY)")
            await conn.exec_driver_sql("CREATE TABLE c (p INTEGER REFERENCES p(id))")
        with pytest.raises(Exception, match="FOREIGN KEY"):
            async with db.write() as conn:
                await conn.exec_driver_sql("INSERT INTO c VALUES (42)")
    finally:
        await db.close()


async def test_close_is_idempotent(db_url: str) -> None:
    db = await open_database(db_url)
    await db.close()
    await db.close()
    assert db.closed


async def test_dialect_names_the_backend(db_url: str) -> None:
    db = await open_database(db_url)
    try:
        assert db.dialect == db_url.split("+", 1)[0]
    finally:
        await db.close()


async def test_unsupported_url_is_refused() -> None:
    with pytest.raises(DatabaseSetupError, match="unsupported"):
        await open_database("mysql+aiomysql://localhost/x")
