"""The database part of a backup: taking the snapshot, and restoring it into an empty
database only once the keys given are proven to fit it (then the keys are installed).

SQLite is restored beside its final name and linked into place last, so a failed
restore leaves no database behind; PostgreSQL is restored in place (the database was
checked empty) and a failure says what is left to clean up.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path

from telecircle.backup.errors import CheckFailed, Refused
from telecircle.backup.key_folder import install_keys
from telecircle.backup.manifest import DatabasePart, check_sum
from telecircle.backup.private_files import copy_private
from telecircle.backup.proof import prove
from telecircle.backup.wording import where
from telecircle.config import Settings
from telecircle.crypto.key_store import KeyStore
from telecircle.crypto.secret_file import fsync_folder
from telecircle.crypto.server_key import ServerKey
from telecircle.storage import migrations, snapshot
from telecircle.storage.snapshot import SNAPSHOT_FILE, DatabaseKind


async def write_snapshot(url: str, kind: DatabaseKind, target: Path) -> str:
    """Write a consistent snapshot of the database at ``url`` into the new file
    ``target``; its schema revision. :class:`CheckFailed` if the database was never set
    up or was migrated while the snapshot was taken."""
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


async def restore_sqlite(
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
        await asyncio.to_thread(copy_private, source / SNAPSHOT_FILE["sqlite"], staged)
        check_sum(staged, database.sha256)
        revision = await asyncio.to_thread(snapshot.read_sqlite_revision, staged)
        if revision != database.schema_revision:
            raise CheckFailed(
                f"The snapshot is at schema revision {revision}, its manifest says "
                f"{database.schema_revision}: the backup was altered."
            )
        staged_url = snapshot.sqlite_url(staged)
        await migrations.upgrade(staged_url)
        await prove(staged_url, backup_keys, server_key, "")
        await asyncio.to_thread(snapshot.settle_sqlite_file, staged)
        install_keys(settings, backup_keys, server_key)
        try:
            os.link(staged, final)  # never replaces a database that appeared meanwhile
        except FileExistsError:
            raise Refused(f"A database appeared at {final} during the restore.") from None
        fsync_folder(final.parent)
    finally:
        _remove_staged(staged)


async def restore_postgresql(
    settings: Settings, source: Path, backup_keys: KeyStore, server_key: ServerKey
) -> None:
    """Restore the dump into the (checked empty) database, migrate it and prove the
    keys on it; only then install the keys."""
    url = settings.effective_database_url
    await snapshot.restore_postgres_snapshot(url, source / SNAPSHOT_FILE["postgresql"])
    await migrations.upgrade(url)
    left = (
        f" The database {where(url)} now holds the restored snapshot and no key was "
        "written: drop it and create it empty again before restoring with the right keys."
    )
    await prove(url, backup_keys, server_key, left)
    install_keys(settings, backup_keys, server_key)


def _remove_staged(staged: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{staged}{suffix}").unlink(missing_ok=True)
