"""``telecircle backup --to DIR --keys-to KEYDIR`` and ``telecircle restore --from DIR
--keys-from KEYDIR``.

A backup is two folders, each owner-only (0700, files 0600) with a ``manifest.json``
(what, when, schema revision, database kind, SHA-256 of every file; written last, so a
backup cut short has none) and a ``README.txt`` saying what the folder is:

- DIR, the database part: a consistent snapshot (``telecircle.db``, SQLite's online
  backup; or ``telecircle.pgdump``, pg_dump's custom format). Notes in it are sealed.
- KEYDIR, the keys part: ``keys/kek-vNNNN.key`` (every key-encryption key version) and
  ``server.key``. They are copied after the snapshot, so a rotation racing the backup
  cannot leave the snapshot with a version the copy lacks (versions are never deleted).

The two must be kept apart — whoever holds both can read every note — so the backup
refuses a KEYDIR that is DIR or inside it (or the other way round).

Restore checks both manifests and every checksum, restores the database into an empty
one (SQLite: beside its final name, linked into place only when all is well), migrates
it, and proves the keys fit — every live data key unwraps with the restored keys and the
audit log verifies with the restored server key — before any key file is written.

Exit codes: 0 done (for restore: and every check passed); 1 a check or a tool failed
(a damaged backup, keys that do not fit, pg_dump's complaint); 2 refused before anything
was written, with what to change.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from telecircle.config import Settings
from telecircle.crypto.key_store import (
    FileKeyStore,
    KeyStore,
    KeyStoreError,
    key_file_name,
    open_key_store,
)
from telecircle.crypto.secret_file import create_secret_file, fsync_folder
from telecircle.crypto.server_key import AUDIT_HEAD, ServerKey, ServerKeyError, load_server_key
from telecircle.errors import TelecircleError
from telecircle.services.audit import AuditAction, AuditLog
from telecircle.services.clock import SystemClock
from telecircle.services.key_rotation import VerifyReport, verify_keys
from telecircle.storage import migrations, snapshot
from telecircle.storage.database import Database, open_database
from telecircle.storage.snapshot import SNAPSHOT_FILE, DatabaseKind, SnapshotError

FORMAT = "telecircle-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
README = "README.txt"
KEY_FOLDER = "keys"
SERVER_KEY = "server.key"
BACKUP_WRITTEN = AuditAction.BACKUP_WRITTEN
BACKUP_RESTORED = AuditAction.BACKUP_RESTORED
_SHA256 = re.compile(r"[0-9a-f]{64}")


class Refused(TelecircleError):
    """Nothing was written: the message says what to change (exit 2)."""

    code = "backup_refused"


class CheckFailed(TelecircleError):
    """The backup is damaged or its keys do not fit (exit 1)."""

    code = "backup_check_failed"


@dataclass(frozen=True, slots=True)
class DatabasePart:
    backup_id: str
    taken_at: str
    kind: DatabaseKind
    schema_revision: str
    sha256: str


@dataclass(frozen=True, slots=True)
class KeysPart:
    backup_id: str
    taken_at: str
    kek_versions: tuple[int, ...]
    sha256: dict[str, str]  # file name (relative to the folder) -> checksum


async def backup(settings: Settings, to: Path, keys_to: Path) -> int:
    """Write the database part to ``to`` and the keys part to ``keys_to``; exit code."""
    try:
        message = await _backup(settings, to, keys_to)
    except (Refused, KeyStoreError, ServerKeyError) as exc:
        print(f"Backup refused: {exc.message}", file=sys.stderr)
        return 2
    except (CheckFailed, SnapshotError) as exc:
        print(f"Backup FAILED: {exc.message}", file=sys.stderr)
        return 1
    print(message)
    return 0


async def restore(settings: Settings, source: Path, keys_from: Path) -> int:
    """Bring the backup in ``source`` and ``keys_from`` into the configured (empty)
    data folder and database, and prove the keys fit; exit code."""
    try:
        message = await _restore(settings, source, keys_from)
    except (Refused, KeyStoreError, ServerKeyError) as exc:
        print(f"Restore refused: {exc.message}", file=sys.stderr)
        return 2
    except (CheckFailed, SnapshotError) as exc:
        print(f"Restore FAILED: {exc.message}", file=sys.stderr)
        return 1
    print(message)
    return 0


# ---- backup ------------------------------------------------------------------------------


async def _backup(settings: Settings, to: Path, keys_to: Path) -> str:
    url = settings.effective_database_url
    kind = snapshot.database_kind(url)
    server_key = _check_backup_sources_and_targets(settings, kind, to, keys_to)
    if kind == "postgresql" and await _postgres_revision_or_refuse(url) is None:
        raise Refused(f"The database {_where(url)} was never set up: nothing to back up.")
    _make_private_folder(to)
    _make_private_folder(keys_to)
    backup_id = secrets.token_hex(8)
    taken_at = _now_iso()
    revision = await _write_snapshot(url, kind, to / SNAPSHOT_FILE[kind])
    keys = open_key_store(settings.effective_key_dir, create=False)  # after the snapshot
    key_sums = _copy_keys(keys, server_key, keys_to)
    _write_text(to / README, _DATABASE_README.format(taken_at=taken_at, backup_id=backup_id))
    _write_text(keys_to / README, _KEYS_README.format(taken_at=taken_at, backup_id=backup_id))
    common = {"format": FORMAT, "format_version": FORMAT_VERSION, "backup_id": backup_id}
    common |= {"taken_at": taken_at, "telecircle_version": _telecircle_version()}
    _write_manifest(
        to,
        common
        | {
            "part": "database",
            "what": "Telecircle database snapshot (no keys: they are kept apart)",
            "database": {
                "kind": kind,
                "file": SNAPSHOT_FILE[kind],
                "schema_revision": revision,
                "sha256": snapshot.sha256_of(to / SNAPSHOT_FILE[kind]),
            },
        },
    )
    _write_manifest(
        keys_to,
        common
        | {
            "part": "keys",
            "what": "Telecircle key-encryption keys and server key (secret: keep apart)",
            "kek_versions": list(keys.versions()),
            "files": key_sums,
        },
    )
    audited = await _record_backup(url, server_key, revision, backup_id, kind, keys.versions())
    return (
        f"Backup {backup_id} written.\n"
        f"  Database snapshot ({kind}, schema revision {revision}): {to / SNAPSHOT_FILE[kind]}\n"
        f"  Keys ({len(keys.versions())} key-encryption key version(s) and the server key): "
        f"{keys_to}\n"
        f"{audited}"
        "Keep the key folder apart from the database backups (another disk, machine or "
        "safe): whoever holds both can read every note, and without the keys the notes in "
        "the snapshot cannot be read."
    )


def _check_backup_sources_and_targets(
    settings: Settings, kind: DatabaseKind, to: Path, keys_to: Path
) -> ServerKey:
    """Refuse targets that are not empty or not apart, and missing or unsafe keys."""
    _check_apart(to, keys_to)
    _check_empty(to, "--to")
    _check_empty(keys_to, "--keys-to")
    open_key_store(settings.effective_key_dir, create=False)  # missing or unsafe: refused
    server_key = load_server_key(settings.effective_server_key_file)
    source = snapshot.sqlite_path(settings.effective_database_url) if kind == "sqlite" else None
    if source is not None and not source.is_file():
        raise Refused(
            f"There is no database at {source}: nothing to back up. Check "
            "TELECIRCLE_DATA_DIR (--data-dir) or TELECIRCLE_DATABASE_URL."
        )
    return server_key


def _check_apart(to: Path, keys_to: Path) -> None:
    data_part, key_part = to.resolve(), keys_to.resolve()
    if key_part == data_part or data_part in key_part.parents:
        where = "the same folder as" if key_part == data_part else "inside"
        raise Refused(
            f"--keys-to {keys_to} is {where} --to {to}. Keys must live apart from database "
            "backups: whoever holds both can read every note. Give --keys-to a folder "
            f"outside {to}, ideally on another disk or machine."
        )
    if key_part in data_part.parents:
        raise Refused(
            f"--to {to} is inside --keys-to {keys_to}. Keys must live apart from database "
            f"backups: give --to a folder outside {keys_to}."
        )


def _check_empty(folder: Path, option: str) -> None:
    if folder.is_symlink():
        raise Refused(f"{option} {folder} is a symbolic link. Give the real folder.")
    if not folder.exists():
        return
    if not folder.is_dir():
        raise Refused(f"{option} {folder} is not a folder. Give a new or empty folder.")
    if any(folder.iterdir()):
        raise Refused(
            f"{option} {folder} is not empty. Give a new or empty folder for each backup "
            "(for example one named by the date): a backup never mixes with another."
        )


def _make_private_folder(folder: Path) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)  # an empty folder given by the administrator, whatever its mode


async def _write_snapshot(url: str, kind: DatabaseKind, target: Path) -> str:
    if kind == "sqlite":
        revision = await asyncio.to_thread(
            snapshot.write_sqlite_snapshot, snapshot.sqlite_path(url), target
        )
    else:
        before = await snapshot.postgres_revision(url)
        await snapshot.write_postgres_snapshot(url, target)
        revision = await snapshot.postgres_revision(url)
        if revision != before:
            raise CheckFailed(
                f"The database was migrated (from {before} to {revision}) while the backup "
                "ran. Run the backup again into new folders."
            )
    if revision is None:
        raise CheckFailed("The database has no schema revision: it was never set up.")
    return revision


def _copy_keys(keys: FileKeyStore, server_key: ServerKey, keys_to: Path) -> dict[str, str]:
    """Copy every KEK version and the server key (0600 files, 0700 folder); their sums."""
    folder = keys_to / KEY_FOLDER
    folder.mkdir(mode=0o700)
    names: list[str] = []
    for kek_version in keys.versions():
        name = f"{KEY_FOLDER}/{key_file_name(kek_version)}"
        create_secret_file(keys_to / name, keys.get(kek_version).secret)
        names.append(name)
    create_secret_file(keys_to / SERVER_KEY, server_key.master)
    names.append(SERVER_KEY)
    return {name: snapshot.sha256_of(keys_to / name) for name in names}


async def _record_backup(
    url: str,
    server_key: ServerKey,
    revision: str,
    backup_id: str,
    kind: DatabaseKind,
    versions: tuple[int, ...],
) -> str:
    """Record ``backup_written`` in the live database's audit log (ids only); a line
    saying so, or why not."""
    if revision != migrations.head_revision():
        return "  (Not in the audit log: the database is at an older schema revision.)\n"
    details: dict[str, str | int] = {
        "database": kind,
        "schema_revision": revision,
        "kek_versions": len(versions),
    }
    await _record(url, server_key, BACKUP_WRITTEN, backup_id, details)
    return "  Recorded in the audit log.\n"


async def _postgres_revision_or_refuse(url: str) -> str | None:
    try:
        return await snapshot.postgres_revision(url)
    except (OSError, SQLAlchemyError) as exc:
        raise Refused(f"Cannot open the database {_where(url)}: {_first_line(exc)}") from None


# ---- restore -----------------------------------------------------------------------------


async def _restore(settings: Settings, source: Path, keys_from: Path) -> str:
    url = settings.effective_database_url
    kind = snapshot.database_kind(url)
    database = _read_database_part(source)
    keys_part = _read_keys_part(keys_from)
    if database.kind != kind:
        raise Refused(
            f"{source} is a backup of a {database.kind} database, but this Telecircle is "
            f"configured for {kind}. Set TELECIRCLE_DATABASE_URL (--database-url) to an "
            f"empty {database.kind} database."
        )
    if database.schema_revision not in _known_revisions():
        raise Refused(
            f"{source} was made at schema revision {database.schema_revision}, which this "
            "Telecircle does not know: it comes from a newer version. Upgrade Telecircle first."
        )
    await _check_restore_targets(settings, kind, url)
    if kind == "postgresql":
        _check_sum(source / SNAPSHOT_FILE[kind], database.sha256)
    for name, expected in keys_part.sha256.items():
        _check_sum(keys_from / name, expected)
    backup_keys = open_key_store(keys_from / KEY_FOLDER, create=False)  # unsafe: refused
    if backup_keys.versions() != keys_part.kek_versions:
        raise CheckFailed(
            f"The key folder {keys_from / KEY_FOLDER} holds versions "
            f"{_listed(backup_keys.versions())}, its manifest lists "
            f"{_listed(keys_part.kek_versions)}. Use the key backup as it was written."
        )
    server_key = load_server_key(keys_from / SERVER_KEY)
    note = ""
    if keys_part.backup_id != database.backup_id:
        note = (
            f"Note: the keys come from another backup ({keys_part.backup_id}, taken "
            f"{keys_part.taken_at}) than the database ({database.backup_id}); they were "
            "checked against it.\n"
        )
    if kind == "sqlite":
        await _restore_sqlite(settings, source, database, backup_keys, server_key)
    else:
        await _restore_postgresql(settings, source, backup_keys, server_key)
    keys = open_key_store(settings.effective_key_dir, create=False)
    async with _opened(url) as db:
        report = await verify_keys(db, keys)
        if not report.ok:
            raise CheckFailed(_keys_do_not_fit(report, f"the restored key folder {keys.folder}"))
        details = {"database": kind, "data_keys_checked": report.checked}
        audit = AuditLog(db, server_key.derive(AUDIT_HEAD), SystemClock())
        await audit.record(BACKUP_RESTORED, actor=None, target=database.backup_id, details=details)
    return (
        f"{note}Restored backup {database.backup_id} (taken {database.taken_at}, schema "
        f"revision {database.schema_revision}) into {_where(url)}; keys into "
        f"{settings.effective_key_dir} and {settings.effective_server_key_file}.\n"
        f"All {report.checked} live data keys unwrap with the restored keys (versions in "
        f"use: {_listed(report.versions_in_use)}; present: {_listed(report.versions_present)}), "
        "and the audit log verifies with the restored server key. Start the server with "
        "these same settings."
    )


_FRESH = (
    "Restore into a fresh data folder: point --data-dir (TELECIRCLE_DATA_DIR) at a new, "
    "empty folder, or move the old one aside first."
)


async def _check_restore_targets(settings: Settings, kind: DatabaseKind, url: str) -> None:
    """Refuse a data folder or database that already holds data."""
    _check_local_targets(settings, kind)
    if kind == "sqlite":
        return
    try:
        relations = await snapshot.postgres_relation_count(url)
    except (OSError, SQLAlchemyError) as exc:
        raise Refused(
            f"Cannot open the database {_where(url)}: {_first_line(exc)}. Create an empty "
            "database for the restore first (e.g. createdb -O USER NAME)."
        ) from None
    if relations:
        raise Refused(
            f"The database {_where(url)} already holds {relations} tables or sequences. "
            "Restore into a fresh database: create an empty one (e.g. createdb -O USER "
            "telecircle_restored) and point --database-url (TELECIRCLE_DATABASE_URL) at it."
        )


def _check_local_targets(settings: Settings, kind: DatabaseKind) -> None:
    if kind == "sqlite":
        path = snapshot.sqlite_path(settings.effective_database_url)
        if any(Path(f"{path}{suffix}").exists() for suffix in ("", "-wal", "-journal")):
            raise Refused(f"A database already exists at {path}. {_FRESH}")
    key_dir = settings.effective_key_dir
    if key_dir.is_symlink() or (
        key_dir.exists() and (not key_dir.is_dir() or any(key_dir.iterdir()))
    ):
        raise Refused(f"The key folder {key_dir} already exists and is not empty. {_FRESH}")
    if os.path.lexists(settings.effective_server_key_file):
        raise Refused(
            f"A server key already exists at {settings.effective_server_key_file}. {_FRESH}"
        )


async def _restore_sqlite(
    settings: Settings,
    source: Path,
    database: DatabasePart,
    backup_keys: KeyStore,
    server_key: ServerKey,
) -> None:
    """Stage the snapshot beside its final name, migrate it and prove the keys on it;
    only then install the keys and link the database into place."""
    final = snapshot.sqlite_path(settings.effective_database_url)
    final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    staged = final.with_name(f".{final.name}.restore-{secrets.token_hex(6)}.tmp")
    try:
        await asyncio.to_thread(_copy_private, source / SNAPSHOT_FILE["sqlite"], staged)
        _check_sum(staged, database.sha256)
        revision = await asyncio.to_thread(snapshot.read_sqlite_revision, staged)
        if revision != database.schema_revision:
            raise CheckFailed(
                f"The snapshot is at schema revision {revision}, its manifest says "
                f"{database.schema_revision}: the backup was altered."
            )
        staged_url = snapshot.sqlite_url(staged)
        await migrations.upgrade(staged_url)
        await _prove(staged_url, backup_keys, server_key, "")
        await asyncio.to_thread(snapshot.settle_sqlite_file, staged)
        _install_keys(settings, backup_keys, server_key)
        try:
            os.link(staged, final)  # never replaces a database that appeared meanwhile
        except FileExistsError:
            raise Refused(f"A database appeared at {final} during the restore.") from None
        fsync_folder(final.parent)
    finally:
        _remove_staged(staged)


def _remove_staged(staged: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{staged}{suffix}").unlink(missing_ok=True)


async def _restore_postgresql(
    settings: Settings, source: Path, backup_keys: KeyStore, server_key: ServerKey
) -> None:
    url = settings.effective_database_url
    await snapshot.restore_postgres_snapshot(url, source / SNAPSHOT_FILE["postgresql"])
    await migrations.upgrade(url)
    left = (
        f" The database {_where(url)} now holds the restored snapshot and no key was "
        "written: drop it and create it empty again before restoring with the right keys."
    )
    await _prove(url, backup_keys, server_key, left)
    _install_keys(settings, backup_keys, server_key)


async def _prove(url: str, keys: KeyStore, server_key: ServerKey, left: str) -> None:
    """Raise :class:`CheckFailed` unless every live data key unwraps with ``keys`` and
    the audit log verifies with ``server_key``. ``left`` says what state remains."""
    async with _opened(url) as db:
        report = await verify_keys(db, keys)
        if not report.ok:
            raise CheckFailed(_keys_do_not_fit(report, "the keys given") + left)
        problems = await AuditLog(db, server_key.derive(AUDIT_HEAD), SystemClock()).verify()
    if problems:
        listed = "; ".join(problem.problem for problem in problems[:5])
        raise CheckFailed(
            "The audit log does not verify with the server key given (a wrong server.key, "
            f"or the backup was altered): {listed}.{left}"
        )


def _install_keys(settings: Settings, keys: KeyStore, server_key: ServerKey) -> None:
    key_dir = settings.effective_key_dir
    key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(key_dir, 0o700)
    for kek_version in keys.versions():
        if not create_secret_file(
            key_dir / key_file_name(kek_version), keys.get(kek_version).secret
        ):
            raise Refused(f"A key file appeared in {key_dir} during the restore.")
    server_file = settings.effective_server_key_file
    server_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not create_secret_file(server_file, server_key.master):
        raise Refused(f"A server key appeared at {server_file} during the restore.")


def _keys_do_not_fit(report: VerifyReport, whose: str) -> str:
    shown = "; ".join(f"session {session}: {why}" for session, why in report.failures[:5])
    return (
        f"The keys do not fit: {len(report.failures)} of {report.checked} live data keys do "
        f"not unwrap with {whose} ({shown}). Use the key backup made with this database "
        "backup (or a later one from the same server)."
    )


# ---- manifests and files -----------------------------------------------------------------


def _read_manifest(folder: Path, part: str, option: str) -> dict[str, Any]:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise Refused(
            f"{option} {folder} has no {MANIFEST}: it is not a Telecircle backup folder, or a "
            "backup that was cut short (the manifest is written last)."
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Refused(f"{path} cannot be read as a backup manifest ({exc}).") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise Refused(f"{path} is not a Telecircle backup manifest.")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise Refused(f"{path} has a backup format this Telecircle does not read.")
    if manifest.get("part") != part:
        other = "--keys-from" if option == "--from" else "--from"
        raise Refused(
            f"{option} {folder} holds the {manifest.get('part')} part of a backup; it goes "
            f"with {other}."
        )
    return manifest


def _read_database_part(folder: Path) -> DatabasePart:
    manifest = _read_manifest(folder, "database", "--from")
    damaged = Refused(f"{folder / MANIFEST} is damaged: its database entry is malformed.")
    entry = manifest.get("database")
    if not isinstance(entry, dict):
        raise damaged
    kind = entry.get("kind")
    if kind not in ("sqlite", "postgresql") or entry.get("file") != SNAPSHOT_FILE[kind]:
        raise damaged
    sha256 = _text(entry, "sha256", damaged)
    if not _SHA256.fullmatch(sha256):
        raise damaged
    return DatabasePart(
        _text(manifest, "backup_id", damaged),
        _text(manifest, "taken_at", damaged),
        kind,
        _text(entry, "schema_revision", damaged),
        sha256,
    )


def _read_keys_part(folder: Path) -> KeysPart:
    manifest = _read_manifest(folder, "keys", "--keys-from")
    damaged = Refused(f"{folder / MANIFEST} is damaged: its list of key files is malformed.")
    versions, files = manifest.get("kek_versions"), manifest.get("files")
    if not isinstance(versions, list) or not all(isinstance(v, int) and v >= 1 for v in versions):
        raise damaged
    expected = {f"{KEY_FOLDER}/{key_file_name(v)}" for v in versions} | {SERVER_KEY}
    if (
        not isinstance(files, dict)
        or set(files) != expected
        or not all(isinstance(v, str) and _SHA256.fullmatch(v) for v in files.values())
    ):
        raise damaged
    return KeysPart(
        _text(manifest, "backup_id", damaged),
        _text(manifest, "taken_at", damaged),
        tuple(sorted(versions)),
        files,
    )


def _text(mapping: dict[str, Any], name: str, damaged: Refused) -> str:
    value = mapping.get(name)
    if not isinstance(value, str) or not value:
        raise damaged
    return value


def _check_sum(path: Path, expected: str) -> None:
    try:
        actual = snapshot.sha256_of(path)
    except FileNotFoundError:
        raise CheckFailed(f"{path} is missing from the backup.") from None
    if actual != expected:
        raise CheckFailed(
            f"{path} does not match the checksum in its manifest: the backup is damaged or "
            "was altered. Use another copy of it."
        )


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    _write_text(folder / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    fsync_folder(folder)


def _write_text(path: Path, content: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())


def _copy_private(source: Path, target: Path) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as out, source.open("rb") as src:
        while chunk := src.read(1 << 20):
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())


# ---- small helpers -----------------------------------------------------------------------


@asynccontextmanager
async def _opened(url: str) -> AsyncIterator[Database]:
    db = await open_database(url)
    try:
        yield db
    finally:
        await db.close()


async def _record(
    url: str, server_key: ServerKey, action: str, target: str, details: dict[str, str | int]
) -> None:
    async with _opened(url) as db:
        audit = AuditLog(db, server_key.derive(AUDIT_HEAD), SystemClock())
        await audit.record(action, actor=None, target=target, details=details)


def _known_revisions() -> set[str]:
    script = ScriptDirectory.from_config(migrations.alembic_config())
    return {revision.revision for revision in script.walk_revisions()}


def _where(url: str) -> str:
    if snapshot.database_kind(url) == "sqlite":
        return str(snapshot.sqlite_path(url))
    parsed = make_url(url)
    return f"{parsed.database} on {parsed.host or 'the local socket'}:{parsed.port or 5432}"


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _listed(versions: tuple[int, ...]) -> str:
    return ", ".join(map(str, versions)) or "none"


def _now_iso() -> str:
    return datetime.fromtimestamp(time.time(), UTC).isoformat(timespec="seconds")


def _telecircle_version() -> str:
    try:
        return version("telecircle")
    except PackageNotFoundError:
        return "unknown"


_DATABASE_README = """\
TELECIRCLE DATABASE BACKUP (no keys in this folder)
===================================================

Backup {backup_id}, taken {taken_at} (UTC).

This folder holds a consistent snapshot of the Telecircle database (telecircle.db for
SQLite, telecircle.pgdump for PostgreSQL) and manifest.json (what, when, schema
revision, SHA-256 checksums). It holds names, attendance and session records: keep it
private. Session notes in it are encrypted; the keys that open them were written to a
separate folder on purpose and must be stored apart from this one. Whoever holds both
can read every note; without the keys the notes cannot be read by anyone.

To restore (into an empty data folder and, for PostgreSQL, an empty database):

    telecircle restore --from THIS-FOLDER --keys-from THE-KEYS-FOLDER
"""

_KEYS_README = """\
TELECIRCLE KEYS - SECRET (no database in this folder)
=====================================================

Backup {backup_id}, taken {taken_at} (UTC).

keys/kek-v*.key are the key-encryption keys that protect every session note;
server.key signs the audit log and invite links. manifest.json lists them with their
SHA-256 checksums.

Keep this folder APART from the database backups (another disk, machine or a safe,
owner-only: folder 0700, files 0600). Whoever holds both can read every note. Losing a
key version loses the notes it protects: keep every copy until no backup needs it.

To restore: telecircle restore --from THE-DATABASE-FOLDER --keys-from THIS-FOLDER
"""
