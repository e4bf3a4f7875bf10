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

This module runs the steps in order; each step lives in :mod:`telecircle.backup`.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from telecircle.backup import database_part, refusals
from telecircle.backup.audit_trail import record_backup
from telecircle.backup.errors import CheckFailed, Refused
from telecircle.backup.key_folder import copy_keys, open_backup_keys
from telecircle.backup.manifest import (
    check_sum,
    now_iso,
    read_database_part,
    read_keys_part,
    write_manifests,
)
from telecircle.backup.private_files import make_private_folder
from telecircle.backup.proof import check_restored
from telecircle.backup.readmes import write_readmes
from telecircle.backup.wording import listed, where
from telecircle.config import Settings
from telecircle.crypto.key_store import KeyStoreError, open_key_store
from telecircle.crypto.server_key import ServerKeyError
from telecircle.services.audit import AuditAction
from telecircle.storage import snapshot
from telecircle.storage.snapshot import SNAPSHOT_FILE, SnapshotError

BACKUP_WRITTEN = AuditAction.BACKUP_WRITTEN
BACKUP_RESTORED = AuditAction.BACKUP_RESTORED


async def backup(settings: Settings, to: Path, keys_to: Path) -> int:
    """Write the database part to ``to`` and the keys part to ``keys_to``; exit code."""
    return await _exit_code("Backup", _backup(settings, to, keys_to))


async def restore(settings: Settings, source: Path, keys_from: Path) -> int:
    """Bring the backup in ``source`` and ``keys_from`` into the configured (empty)
    data folder and database, and prove the keys fit; exit code."""
    return await _exit_code("Restore", _restore(settings, source, keys_from))


async def _exit_code(verb: str, work: Coroutine[Any, Any, str]) -> int:
    """Run ``work``: print its message and return 0, or print why not (prefixed with
    ``verb``) to stderr and return 2 (refused) or 1 (failed)."""
    try:
        message = await work
    except (Refused, KeyStoreError, ServerKeyError) as exc:
        print(f"{verb} refused: {exc.message}", file=sys.stderr)
        return 2
    except (CheckFailed, SnapshotError) as exc:
        print(f"{verb} FAILED: {exc.message}", file=sys.stderr)
        return 1
    print(message)
    return 0


async def _backup(settings: Settings, to: Path, keys_to: Path) -> str:
    url = settings.effective_database_url
    kind = snapshot.database_kind(url)
    server_key = refusals.check_backup_targets(settings, kind, to, keys_to)
    if kind == "postgresql":
        await refusals.check_postgres_source(url)
    make_private_folder(to)
    make_private_folder(keys_to)
    backup_id = secrets.token_hex(8)
    taken_at = now_iso()
    revision = await database_part.write_snapshot(url, kind, to / SNAPSHOT_FILE[kind])
    keys = open_key_store(settings.effective_key_dir, create=False)  # after the snapshot
    key_sums = copy_keys(keys, server_key, keys_to)
    write_readmes(to, keys_to, backup_id=backup_id, taken_at=taken_at)
    write_manifests(
        to,
        keys_to,
        backup_id=backup_id,
        taken_at=taken_at,
        kind=kind,
        revision=revision,
        kek_versions=keys.versions(),
        key_sums=key_sums,
    )
    audited = await record_backup(url, server_key, revision, backup_id, kind, keys.versions())
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


async def _restore(settings: Settings, source: Path, keys_from: Path) -> str:
    url = settings.effective_database_url
    kind = snapshot.database_kind(url)
    database = read_database_part(source)
    keys_part = read_keys_part(keys_from)
    refusals.check_restorable(source, database, kind)
    await refusals.check_restore_targets(settings, kind, url)
    if kind == "postgresql":
        check_sum(source / SNAPSHOT_FILE[kind], database.sha256)
    backup_keys, server_key = open_backup_keys(keys_from, keys_part)
    note = ""
    if keys_part.backup_id != database.backup_id:
        note = (
            f"Note: the keys come from another backup ({keys_part.backup_id}, taken "
            f"{keys_part.taken_at}) than the database ({database.backup_id}); they were "
            "checked against it.\n"
        )
    if kind == "sqlite":
        await database_part.restore_sqlite(settings, source, database, backup_keys, server_key)
    else:
        await database_part.restore_postgresql(settings, source, backup_keys, server_key)
    keys = open_key_store(settings.effective_key_dir, create=False)
    report = await check_restored(url, keys, server_key, database.backup_id, kind)
    return (
        f"{note}Restored backup {database.backup_id} (taken {database.taken_at}, schema "
        f"revision {database.schema_revision}) into {where(url)}; keys into "
        f"{settings.effective_key_dir} and {settings.effective_server_key_file}.\n"
        f"All {report.checked} live data keys unwrap with the restored keys (versions in "
        f"use: {listed(report.versions_in_use)}; present: {listed(report.versions_present)}), "
        "and the audit log verifies with the restored server key. Start the server with "
        "these same settings."
    )
