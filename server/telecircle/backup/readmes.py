"""The ``README.txt`` in each backup folder: what the folder is, why the two folders
must be kept apart, and how to restore."""

from __future__ import annotations

from pathlib import Path

from telecircle.backup.private_files import write_private_text

README = "README.txt"


def write_readmes(to: Path, keys_to: Path, *, backup_id: str, taken_at: str) -> None:
    """Create ``README.txt`` in the database folder ``to`` and the key folder ``keys_to``."""
    write_private_text(to / README, _DATABASE_README.format(taken_at=taken_at, backup_id=backup_id))
    write_private_text(
        keys_to / README, _KEYS_README.format(taken_at=taken_at, backup_id=backup_id)
    )


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
