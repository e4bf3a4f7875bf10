"""``telecircle audit verify`` as an administrator runs it."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from telecircle.cli import main
from telecircle.config import load_settings
from telecircle.crypto.server_key import AUDIT_HEAD, load_or_create_server_key
from telecircle.storage import audit_store, migrations
from telecircle.storage.database import open_database


def fill_log(data: Path, count: int) -> None:
    settings = load_settings(data_dir=data)
    key = load_or_create_server_key(settings.effective_server_key_file).derive(AUDIT_HEAD)

    async def fill() -> None:
        await migrations.upgrade(settings.effective_database_url)
        db = await open_database(settings.effective_database_url)
        try:
            for n in range(1, count + 1):
                await audit_store.append_entry(
                    db,
                    at=1_764_000_000.0 + n,
                    actor="u_1",
                    action="login",
                    target=None,
                    address="192.0.2.1",
                    details={"n": n},
                    key=key,
                )
        finally:
            await db.close()

    asyncio.run(fill())


def test_an_intact_log_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    fill_log(data, 5)
    assert main(["--data-dir", str(data), "audit", "verify"]) == 0
    assert capsys.readouterr().out.strip() == "Audit log intact: 5 entries, head at seq 5."


def test_an_empty_log_verifies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    load_or_create_server_key(data / "server.key")
    assert main(["--data-dir", str(data), "audit", "verify"]) == 0
    assert "intact: 0 entries" in capsys.readouterr().out


def test_tampering_is_reported_with_the_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    fill_log(data, 5)
    with sqlite3.connect(data / "telecircle.db") as conn:
        conn.execute("UPDATE audit_log SET actor = 'u_2' WHERE seq = 3")
        conn.execute("DELETE FROM audit_log WHERE seq = 5")
    conn.close()
    assert main(["--data-dir", str(data), "audit", "verify"]) == 1
    out = capsys.readouterr().out
    assert "entry 3 was changed" in out
    assert "entries were removed from the end" in out
    assert "FAILED" in out


def test_a_missing_key_is_an_error_and_is_not_created(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    fill_log(data, 2)
    key_file = data / "server.key"
    key_file.unlink()
    assert main(["--data-dir", str(data), "audit", "verify"]) == 2
    assert str(key_file) in capsys.readouterr().err
    assert not key_file.exists()


def test_an_unsafe_key_file_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    fill_log(data, 1)
    (data / "server.key").chmod(0o644)
    assert main(["--data-dir", str(data), "audit", "verify"]) == 2
    assert "chmod 600" in capsys.readouterr().err


def test_a_different_key_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    fill_log(data, 2)
    (data / "server.key").unlink()
    load_or_create_server_key(data / "server.key")  # a new key: as if the old one were lost
    assert main(["--data-dir", str(data), "audit", "verify"]) == 1
    assert "the key is different" in capsys.readouterr().out
