"""``telecircle keys rotate|verify`` and ``telecircle notes purge``.

Each opens the database (migrated) and the key store (never creating keys), does its
work and prints what it did. Exit codes: 0 done, 1 verification found problems, 2 the
keys or the server key file are missing or unsafe.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from telecircle.config import Settings
from telecircle.crypto.envelope import DecryptionFailed
from telecircle.crypto.key_store import KeyStoreError, open_key_store
from telecircle.crypto.server_key import AUDIT_HEAD, ServerKeyError, load_server_key
from telecircle.services.audit import AuditLog
from telecircle.services.clock import SystemClock
from telecircle.services.key_rotation import rotate_keys, verify_keys
from telecircle.services.organisation import Organisation
from telecircle.services.retention import NotesRetention
from telecircle.storage import migrations
from telecircle.storage.database import Database, open_database


@dataclass(frozen=True, slots=True)
class _Opened:
    db: Database
    audit: AuditLog


@asynccontextmanager
async def _opened(settings: Settings) -> AsyncIterator[_Opened]:
    audit_key = load_server_key(settings.effective_server_key_file).derive(AUDIT_HEAD)
    await migrations.upgrade(settings.effective_database_url)
    db = await open_database(settings.effective_database_url)
    try:
        yield _Opened(db, AuditLog(db, audit_key, SystemClock()))
    finally:
        await db.close()


async def rotate(settings: Settings) -> int:
    try:
        keys = open_key_store(settings.effective_key_dir, create=False)
        async with _opened(settings) as opened:
            report = await rotate_keys(opened.db, keys, opened.audit)
    except (KeyStoreError, ServerKeyError) as exc:
        print(exc.message, file=sys.stderr)
        return 2
    except DecryptionFailed:
        print(
            "A data key did not unwrap with the key version that wrapped it; nothing "
            "more was re-wrapped. Run `telecircle keys verify` to see which.",
            file=sys.stderr,
        )
        return 1
    print(
        f"Key-encryption key version {report.version} is now current; "
        f"{report.rewrapped} data key(s) re-wrapped under it. Back up the key folder "
        f"{settings.effective_key_dir} (apart from the database backups)."
    )
    return 0


async def verify(settings: Settings) -> int:
    try:
        keys = open_key_store(settings.effective_key_dir, create=False)
        async with _opened(settings) as opened:
            report = await verify_keys(opened.db, keys)
    except (KeyStoreError, ServerKeyError) as exc:
        print(exc.message, file=sys.stderr)
        return 2
    in_use = ", ".join(map(str, report.versions_in_use)) or "none"
    present = ", ".join(map(str, report.versions_present)) or "none"
    if not report.ok:
        print(f"Key verification FAILED: {len(report.failures)} of {report.checked} data keys.")
        for session_id, why in report.failures:
            print(f"  session {session_id}: {why}")
        return 1
    print(
        f"All {report.checked} live data keys unwrap. Key versions in use: {in_use}; "
        f"present: {present}."
    )
    return 0


async def purge(settings: Settings) -> int:
    try:
        async with _opened(settings) as opened:
            organisation = Organisation(opened.db, SystemClock(), opened.audit, settings)
            retention = NotesRetention(
                opened.db, SystemClock(), opened.audit, organisation.notes_retention_days
            )
            destroyed = await retention.purge()
    except ServerKeyError as exc:
        print(exc.message, file=sys.stderr)
        return 2
    print(f"Notes of {len(destroyed)} session(s) destroyed by the retention policy.")
    return 0
