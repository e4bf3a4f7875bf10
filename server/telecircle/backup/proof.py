"""Proving that keys fit a database: every live data key unwraps with the key-encryption
keys, and the audit log verifies with the server key. Raises :class:`CheckFailed` with
what does not fit (session ids and counts only)."""

from __future__ import annotations

from telecircle.backup.audit_trail import audit_log, opened
from telecircle.backup.errors import CheckFailed
from telecircle.crypto.key_store import FileKeyStore, KeyStore
from telecircle.crypto.server_key import ServerKey
from telecircle.services.audit import AuditAction
from telecircle.services.key_rotation import VerifyReport, verify_keys
from telecircle.storage.snapshot import DatabaseKind


async def prove(url: str, keys: KeyStore, server_key: ServerKey, left: str) -> None:
    """Raise :class:`CheckFailed` unless every live data key unwraps with ``keys`` and
    the audit log verifies with ``server_key``. ``left`` says what state remains."""
    async with opened(url) as db:
        report = await verify_keys(db, keys)
        if not report.ok:
            raise CheckFailed(_keys_do_not_fit(report, "the keys given") + left)
        problems = await audit_log(db, server_key).verify()
    if problems:
        listed = "; ".join(problem.problem for problem in problems[:5])
        raise CheckFailed(
            "The audit log does not verify with the server key given (a wrong server.key, "
            f"or the backup was altered): {listed}.{left}"
        )


async def check_restored(
    url: str,
    keys: FileKeyStore,
    server_key: ServerKey,
    backup_id: str,
    kind: DatabaseKind,
) -> VerifyReport:
    """Check the installed ``keys`` against the restored database once more and record
    ``backup_restored`` in its audit log; the report (:class:`CheckFailed` if not ok)."""
    async with opened(url) as db:
        report = await verify_keys(db, keys)
        if not report.ok:
            raise CheckFailed(_keys_do_not_fit(report, f"the restored key folder {keys.folder}"))
        details = {"database": kind, "data_keys_checked": report.checked}
        await audit_log(db, server_key).record(
            AuditAction.BACKUP_RESTORED, actor=None, target=backup_id, details=details
        )
    return report


def _keys_do_not_fit(report: VerifyReport, whose: str) -> str:
    shown = "; ".join(f"session {session}: {why}" for session, why in report.failures[:5])
    return (
        f"The keys do not fit: {len(report.failures)} of {report.checked} live data keys do "
        f"not unwrap with {whose} ({shown}). Use the key backup made with this database "
        "backup (or a later one from the same server)."
    )
