"""Opening the database for a short step, and recording backups and restores in its
audit log (ids and counts only, never what the database holds)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from telecircle.crypto.server_key import AUDIT_HEAD, ServerKey
from telecircle.services.audit import AuditAction, AuditLog
from telecircle.services.clock import SystemClock
from telecircle.storage import migrations
from telecircle.storage.database import Database, open_database
from telecircle.storage.snapshot import DatabaseKind


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[Database]:
    """The database at ``url``, closed when the block ends."""
    db = await open_database(url)
    try:
        yield db
    finally:
        await db.close()


def audit_log(db: Database, server_key: ServerKey) -> AuditLog:
    """The audit log of ``db``, chained with the head key derived from ``server_key``."""
    return AuditLog(db, server_key.derive(AUDIT_HEAD), SystemClock())


async def record_backup(
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
    async with opened(url) as db:
        await audit_log(db, server_key).record(
            AuditAction.BACKUP_WRITTEN, actor=None, target=backup_id, details=details
        )
    return "  Recorded in the audit log.\n"
