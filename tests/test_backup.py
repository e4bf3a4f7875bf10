"""``telecircle backup`` and ``telecircle restore`` as an administrator runs them.

A real server with sessions and encrypted notes (on SQLite, and on PostgreSQL where it is
reachable) is backed up while it runs, restored onto a fresh data folder (and, for
PostgreSQL, into a fresh database the test creates and drops), and a server started on
the restored copy reads every note back. Also: a backup taken while notes are being
written, each refusal, a damaged backup, and keys that do not fit.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import stat
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy.engine import make_url

from telecircle import backup_commands
from telecircle.cli import main
from telecircle.crypto.key_store import open_key_store
from telecircle.crypto.server_key import load_or_create_server_key
from telecircle.domain.ids import RoomCode, RoomId
from telecircle.domain.notes import NoteBody
from telecircle.storage import accounts_store, migrations, org_store, stores
from telecircle.storage.snapshot import sha256_of
from telecircle.web.keys import AUDIT, NOTES
from tests.conftest import RunningServer, start_server
from tests.storage.conftest import (  # noqa: F401
    CONNECT_TIMEOUT,
    db_url,
    postgres_admin_dsn,
    postgres_unreachable,
    skip_postgres,
)

# Versions of one note written while a backup runs: bounded (below the per-note limit).
MAX_LIVE_WRITES = 1500

Written = dict[tuple[str, str], list[str]]  # (session id, note id) -> text of each version


@dataclass
class Clinic:
    """A populated server: whose notes, in which sessions, with which texts."""

    server: RunningServer
    url: str  # the database URL given ("" for SQLite in the data folder)
    owner_id: str
    room_id: RoomId
    written: Written = field(default_factory=dict)
    saves: int = 0

    @property
    def data_dir(self) -> Path:
        return self.server.settings.data_dir

    @property
    def session_ids(self) -> list[str]:
        return sorted({session for session, _ in self.written})

    async def save(self, session_id: str, note_id: str, text: str) -> None:
        self.saves += 1
        await self.server.app[NOTES].save(
            author_id=self.owner_id,
            session_id=session_id,
            note_id=note_id,
            save_id=f"save-{self.saves:06d}",
            body=NoteBody(text, "topic"),
        )
        self.written.setdefault((session_id, note_id), []).append(text)


async def populate(server: RunningServer, url: str) -> Clinic:
    """A room with an ended session (two notes, one of them with two versions) and an
    open one (one note), plus an audit entry, all through the real services."""
    code = await server.create_room()
    room = await stores.get_room_by_code(server.database, RoomCode(code))
    assert room is not None
    clinicians = await org_store.clinicians_of_room(server.database, RoomId(room.id))
    owner_id = next(user for user, role in clinicians if role == "owner")
    clinic = Clinic(server, url, owner_id, RoomId(room.id))
    first = await stores.open_session(server.database, clinic.room_id, time.time())
    await clinic.save(first.id, "note-first-1", "Ann spoke about her brother. zq7")
    await clinic.save(first.id, "note-first-1", "Ann spoke about her brother; revisit. zq7")
    await clinic.save(first.id, "note-first-2", "Bo was quiet today.")
    await stores.end_session(server.database, first.id, time.time())
    second = await stores.open_session(server.database, clinic.room_id, time.time())
    await clinic.save(second.id, "note-second-1", "Second session: Cy joined late.")
    await server.app[AUDIT].record("login", actor=owner_id)
    return clinic


async def read_notes(server: RunningServer, owner_id: str, session_ids: list[str]) -> Written:
    """Every version of the owner's notes in the sessions, decrypted by the server."""
    reader = await accounts_store.get_user(server.database, owner_id)
    assert reader is not None
    found: Written = {}
    for session_id in session_ids:
        for note in await server.app[NOTES].notes_for_record(reader, session_id):
            texts = []
            for version in note.versions:
                assert version.unreadable is None and version.body is not None, version
                texts.append(version.body.text)
            found[(session_id, note.note_id)] = texts
    return found


@asynccontextmanager
async def running(base: Path, url: str) -> AsyncIterator[RunningServer]:
    server = await start_server(base, database_url=url)
    try:
        yield server
    finally:
        await server.runner.cleanup()


@asynccontextmanager
async def fresh_postgres_database() -> AsyncIterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards."""
    try:
        admin = await asyncpg.connect(postgres_admin_dsn(), timeout=CONNECT_TIMEOUT)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        skip_postgres(f"PostgreSQL not usable for a restore target: {exc}")
    name = f"telecircle_restore_{secrets.token_hex(6)}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = make_url(postgres_admin_dsn()).set(drivername="postgresql+asyncpg", database=name)
            yield url.render_as_string(hide_password=False)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def source_url(db_url: str) -> str:  # noqa: F811
    """The URL to give the server: "" (SQLite in its own data folder) or PostgreSQL's."""
    return "" if db_url.startswith("sqlite") else db_url


@pytest.fixture
async def restore_url(db_url: str) -> AsyncIterator[str]:  # noqa: F811
    """Where a restore goes: SQLite in the fresh data folder, or a fresh PG database."""
    if db_url.startswith("sqlite"):
        yield ""
        return
    async with fresh_postgres_database() as url:
        yield url


@pytest.fixture
async def clinic(tmp_path: Path, db_url: str) -> AsyncIterator[Clinic]:  # noqa: F811
    """A populated server, running, on each backend."""
    if not db_url.startswith("sqlite") and shutil.which("pg_dump") is None:
        skip_postgres("pg_dump not installed: apt-get install postgresql-client")
    async with running(tmp_path / "source", source_url(db_url)) as server:
        yield await populate(server, source_url(db_url))


@dataclass(frozen=True)
class Stopped:
    """A populated SQLite data folder whose server has stopped."""

    data_dir: Path
    url: str = ""


@pytest.fixture(scope="module")
def stopped_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One populated data folder per module (a server started, filled, stopped)."""
    base = tmp_path_factory.mktemp("template")

    async def fill() -> None:
        async with running(base, "") as server:
            await populate(server, "")

    asyncio.run(fill())
    return base / "data"


@pytest.fixture
def stopped_clinic(tmp_path: Path, stopped_template: Path) -> Stopped:
    """A copy of the template data folder (owner-only modes kept), for the refusals."""
    data = tmp_path / "source" / "data"
    shutil.copytree(stopped_template, data)
    return Stopped(data)


async def cli(*args: str) -> int:
    """``telecircle ARGS`` (its own event loop, in a thread)."""
    return await asyncio.to_thread(main, list(args))


def at(data_dir: Path, url: str) -> list[str]:
    return ["--data-dir", str(data_dir), *(["--database-url", url] if url else [])]


async def back_up(clinic: Clinic | Stopped, to: Path, keys_to: Path) -> int:
    return await cli(
        *at(clinic.data_dir, clinic.url), "backup", "--to", str(to), "--keys-to", str(keys_to)
    )


async def restore(data_dir: Path, url: str, source: Path, keys_from: Path) -> int:
    return await cli(
        *at(data_dir, url), "restore", "--from", str(source), "--keys-from", str(keys_from)
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def files_under(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


# ---- backup, restore, read the notes ---------------------------------------------------


async def test_a_backup_restores_onto_a_fresh_data_folder_and_the_notes_read_back(
    tmp_path: Path, clinic: Clinic, restore_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    backup, keys = tmp_path / "backup", tmp_path / "offsite" / "keys"
    assert await back_up(clinic, backup, keys) == 0, capsys.readouterr().err  # server running
    out = capsys.readouterr().out
    assert "Backup" in out and "written" in out and "apart" in out

    kind = "sqlite" if not clinic.url else "postgresql"
    snapshot_file = "telecircle.db" if kind == "sqlite" else "telecircle.pgdump"
    assert files_under(backup) == {snapshot_file, "manifest.json", "README.txt"}
    assert files_under(keys) == {
        "keys",
        "keys/kek-v0001.key",
        "server.key",
        "manifest.json",
        "README.txt",
    }
    assert mode(backup) == mode(keys) == mode(keys / "keys") == 0o700
    for path in [*backup.iterdir(), *keys.rglob("*.key")]:
        assert mode(path) == 0o600, path
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["part"] == "database"
    assert manifest["database"]["kind"] == kind
    assert manifest["database"]["schema_revision"] == migrations.head_revision()
    assert manifest["database"]["sha256"] == sha256_of(backup / snapshot_file)
    assert manifest["taken_at"]
    key_manifest = json.loads((keys / "manifest.json").read_text())
    assert key_manifest["backup_id"] == manifest["backup_id"]
    assert key_manifest["kek_versions"] == [1]
    assert "DATABASE BACKUP (no keys" in (backup / "README.txt").read_text()
    assert "KEYS - SECRET" in (keys / "README.txt").read_text()
    source_keys = clinic.server.settings.effective_key_dir
    assert (keys / "keys/kek-v0001.key").read_bytes() == (
        source_keys / "kek-v0001.key"
    ).read_bytes()
    assert (keys / "server.key").read_bytes() == (clinic.data_dir / "server.key").read_bytes()
    page = await clinic.server.app[AUDIT].page(action=backup_commands.BACKUP_WRITTEN)
    assert [entry.target for entry in page.entries] == [manifest["backup_id"]]

    restored = tmp_path / "restored"
    assert await restore(restored / "data", restore_url, backup, keys) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "All 2 live data keys unwrap with the restored keys" in out
    assert mode(restored / "data" / "keys") == 0o700
    assert mode(restored / "data" / "keys" / "kek-v0001.key") == 0o600
    assert mode(restored / "data" / "server.key") == 0o600

    async with running(restored, restore_url) as server:
        assert await read_notes(server, clinic.owner_id, clinic.session_ids) == clinic.written
        page = await server.app[AUDIT].page(action=backup_commands.BACKUP_RESTORED)
        assert [entry.target for entry in page.entries] == [manifest["backup_id"]]
    assert await cli(*at(restored / "data", restore_url), "audit", "verify") == 0
    assert await cli(*at(restored / "data", restore_url), "keys", "verify") == 0


async def test_a_backup_taken_while_notes_are_written_is_one_consistent_moment(
    tmp_path: Path, clinic: Clinic, restore_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A note gains a version per save while the backup runs: the restored copy holds
    exactly the first k versions, each readable, for some k between the number saved
    when the backup started and the number saved when it ended."""
    session_id = clinic.session_ids[-1]  # the open session
    stop, started = asyncio.Event(), asyncio.Event()

    async def write() -> None:
        for n in range(MAX_LIVE_WRITES):
            if stop.is_set():
                return
            await clinic.save(session_id, "note-live-01", f"live version {n + 1}")
            started.set()

    writer = asyncio.create_task(write())
    try:
        await asyncio.wait_for(started.wait(), 30)
        before = len(clinic.written[(session_id, "note-live-01")])
        code = await back_up(clinic, tmp_path / "backup", tmp_path / "keys")
        after = len(clinic.written[(session_id, "note-live-01")])
    finally:
        stop.set()
        await asyncio.wait_for(writer, 30)
    assert code == 0, capsys.readouterr().err

    restored = tmp_path / "restored"
    assert (
        await restore(restored / "data", restore_url, tmp_path / "backup", tmp_path / "keys") == 0
    )
    async with running(restored, restore_url) as server:
        notes = await read_notes(server, clinic.owner_id, clinic.session_ids)
    live = notes.pop((session_id, "note-live-01"))
    assert before <= len(live) <= after
    assert live == clinic.written[(session_id, "note-live-01")][: len(live)]
    assert notes == {k: v for k, v in clinic.written.items() if k[1] != "note-live-01"}


# ---- backup refusals -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "keys_to"),
    [("backup", "backup"), ("backup", "backup/keys"), ("keys/backup", "keys")],
    ids=["same", "keys-inside", "backup-inside-keys"],
)
async def test_keys_must_be_kept_apart_from_the_database_backup(
    tmp_path: Path,
    stopped_clinic: Stopped,
    capsys: pytest.CaptureFixture[str],
    to: str,
    keys_to: str,
) -> None:
    code = await back_up(stopped_clinic, tmp_path / to, tmp_path / keys_to)
    assert code == 2
    err = capsys.readouterr().err
    assert "Keys must live apart from database backups" in err
    assert not (tmp_path / "backup").exists() and not (tmp_path / "keys").exists()


@pytest.mark.parametrize("full", ["to", "keys_to"])
async def test_a_target_that_is_not_empty_is_refused(
    tmp_path: Path, stopped_clinic: Stopped, capsys: pytest.CaptureFixture[str], full: str
) -> None:
    to, keys_to = tmp_path / "backup", tmp_path / "keys"
    occupied = to if full == "to" else keys_to
    occupied.mkdir()
    (occupied / "older-backup.txt").write_text("kept")
    assert await back_up(stopped_clinic, to, keys_to) == 2
    err = capsys.readouterr().err
    assert f"{occupied} is not empty" in err
    assert files_under(occupied) == {"older-backup.txt"}
    other = keys_to if full == "to" else to
    assert not other.exists()


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("no key folder", "does not exist"),
        ("key file readable by others", "chmod 600"),
        ("key folder open to others", "chmod 700"),
        ("no server key", "server key file"),
        ("server key readable by group", "chmod 600"),
    ],
)
async def test_missing_or_unsafe_key_files_are_refused(
    tmp_path: Path,
    stopped_clinic: Stopped,
    capsys: pytest.CaptureFixture[str],
    damage: str,
    expected: str,
) -> None:
    key_dir, server_key = stopped_clinic.data_dir / "keys", stopped_clinic.data_dir / "server.key"
    if damage == "no key folder":
        shutil.rmtree(key_dir)
    elif damage == "key file readable by others":
        (key_dir / "kek-v0001.key").chmod(0o644)
    elif damage == "key folder open to others":
        key_dir.chmod(0o755)
    elif damage == "no server key":
        server_key.unlink()
    else:
        server_key.chmod(0o640)
    assert await back_up(stopped_clinic, tmp_path / "backup", tmp_path / "keys") == 2
    err = capsys.readouterr().err
    assert "Backup refused" in err and expected in err
    assert not (tmp_path / "backup").exists() and not (tmp_path / "keys").exists()


# ---- restore refusals and failures -----------------------------------------------------


async def test_restore_refuses_a_data_folder_or_database_that_holds_data(
    tmp_path: Path, clinic: Clinic, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await back_up(clinic, tmp_path / "backup", tmp_path / "keys") == 0
    capsys.readouterr()
    # Into the very data folder (and database) it came from, while its server runs.
    assert await restore(clinic.data_dir, clinic.url, tmp_path / "backup", tmp_path / "keys") == 2
    err = capsys.readouterr().err
    assert "Restore refused" in err
    assert "fresh data folder" in err or "fresh database" in err
    if clinic.url:  # PostgreSQL: a fresh data folder, but the database holds tables
        fresh = tmp_path / "fresh" / "data"
        assert await restore(fresh, clinic.url, tmp_path / "backup", tmp_path / "keys") == 2
        err = capsys.readouterr().err
        assert "already holds" in err and "fresh database" in err
        assert not fresh.exists()


async def test_restore_refuses_a_data_folder_that_holds_keys(
    tmp_path: Path, stopped_clinic: Stopped, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await back_up(stopped_clinic, tmp_path / "backup", tmp_path / "keys") == 0
    data = tmp_path / "restored" / "data"
    open_key_store(data / "keys", create=True)
    assert await restore(data, "", tmp_path / "backup", tmp_path / "keys") == 2
    assert "The key folder" in capsys.readouterr().err
    assert not (data / "telecircle.db").exists() and not (data / "server.key").exists()


async def test_a_damaged_backup_fails_its_checksum_and_nothing_is_restored(
    tmp_path: Path, stopped_clinic: Stopped, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await back_up(stopped_clinic, tmp_path / "backup", tmp_path / "keys") == 0
    snapshot = tmp_path / "backup" / "telecircle.db"
    content = bytearray(snapshot.read_bytes())
    content[len(content) // 2] ^= 0x01
    snapshot.write_bytes(bytes(content))
    data = tmp_path / "restored" / "data"
    assert await restore(data, "", tmp_path / "backup", tmp_path / "keys") == 1
    err = capsys.readouterr().err
    assert "Restore FAILED" in err and "checksum" in err
    assert not data.exists() or files_under(data) == set()


async def test_misplaced_or_incomplete_backups_and_open_key_folders_are_refused(
    tmp_path: Path, stopped_clinic: Stopped, capsys: pytest.CaptureFixture[str]
) -> None:
    backup, keys = tmp_path / "backup", tmp_path / "keys"
    assert await back_up(stopped_clinic, backup, keys) == 0
    data = tmp_path / "restored" / "data"
    capsys.readouterr()

    assert await restore(data, "", keys, backup) == 2  # the two folders swapped
    assert "holds the keys part of a backup; it goes with --keys-from" in capsys.readouterr().err

    (keys / "keys").chmod(0o755)  # copied without its permissions
    assert await restore(data, "", backup, keys) == 2
    assert "chmod 700" in capsys.readouterr().err
    (keys / "keys").chmod(0o700)

    (backup / "manifest.json").unlink()  # a backup cut short has no manifest
    assert await restore(data, "", backup, keys) == 2
    assert "cut short" in capsys.readouterr().err
    assert not data.exists() or files_under(data) == set()


async def other_servers_keys(base: Path) -> Path:
    """The keys part of a backup of another (empty) server: keys that fit nothing here."""
    data = base / "data"
    await migrations.upgrade(f"sqlite+aiosqlite:///{data / 'telecircle.db'}")
    open_key_store(data / "keys", create=True)
    load_or_create_server_key(data / "server.key")
    code = await cli(
        "--data-dir", str(data), "backup", "--to", str(base / "db"), "--keys-to", str(base / "keys")
    )
    assert code == 0
    return base / "keys"


def rewrite_key_manifest(keys: Path) -> None:
    """Make the keys folder's manifest agree with its files again (as a careless
    administrator's hand-made mix of two key backups would)."""
    manifest = json.loads((keys / "manifest.json").read_text())
    manifest["files"] = {name: sha256_of(keys / name) for name in manifest["files"]}
    (keys / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("wrong", ["key-encryption keys", "server key"])
async def test_restore_with_the_wrong_keys_fails_clearly(
    tmp_path: Path,
    clinic: Clinic,
    restore_url: str,
    capsys: pytest.CaptureFixture[str],
    wrong: str,
) -> None:
    backup, keys = tmp_path / "backup", tmp_path / "keys"
    assert await back_up(clinic, backup, keys) == 0
    other = await other_servers_keys(tmp_path / "other")
    if wrong == "server key":  # the right key-encryption keys, another server's server.key
        shutil.copy2(other / "server.key", keys / "server.key")
        rewrite_key_manifest(keys)
        other = keys
    capsys.readouterr()
    data = tmp_path / "restored" / "data"
    assert await restore(data, restore_url, backup, other) == 1
    err = capsys.readouterr().err
    assert "Restore FAILED" in err
    if wrong == "server key":
        assert "The audit log does not verify with the server key given" in err
    else:
        assert "The keys do not fit: 2 of 2 live data keys do not unwrap" in err
    # No key file was written, and on SQLite no database either.
    assert not (data / "keys").exists() and not (data / "server.key").exists()
    if restore_url:
        assert "drop it and create it empty again" in err
    else:
        assert not data.exists() or files_under(data) == set()
