"""What backup and restore check before writing anything: each check raises
:class:`Refused` with what to change, or returns.

Backup: two new or empty folders, apart from each other (whoever holds both can read
every note), and a database and keys to copy. Restore: a backup of the configured
database kind at a schema revision this version knows, restored into an empty data
folder, key folder, server key file and (PostgreSQL) database.
"""

from __future__ import annotations

import os
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy.exc import SQLAlchemyError

from telecircle.backup.errors import Refused
from telecircle.backup.manifest import DatabasePart
from telecircle.backup.wording import first_line, where
from telecircle.config import Settings
from telecircle.crypto.key_store import open_key_store
from telecircle.crypto.server_key import ServerKey, load_server_key
from telecircle.storage import migrations, snapshot
from telecircle.storage.snapshot import DatabaseKind

_FRESH = (
    "Restore into a fresh data folder: point --data-dir (TELECIRCLE_DATA_DIR) at a new, "
    "empty folder, or move the old one aside first."
)


# ---- backup ------------------------------------------------------------------------------


def check_backup_targets(
    settings: Settings, kind: DatabaseKind, to: Path, keys_to: Path
) -> ServerKey:
    """Refuse targets that are not empty or not apart, and missing or unsafe keys (the
    key store's and server key's own errors); the live server key."""
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


async def check_postgres_source(url: str) -> None:
    """Refuse a PostgreSQL database that cannot be opened or was never set up."""
    try:
        revision = await snapshot.postgres_revision(url)
    except (OSError, SQLAlchemyError) as exc:
        raise Refused(f"Cannot open the database {where(url)}: {first_line(exc)}") from None
    if revision is None:
        raise Refused(f"The database {where(url)} was never set up: nothing to back up.")


def _check_apart(to: Path, keys_to: Path) -> None:
    data_part, key_part = to.resolve(), keys_to.resolve()
    if key_part == data_part or data_part in key_part.parents:
        relation = "the same folder as" if key_part == data_part else "inside"
        raise Refused(
            f"--keys-to {keys_to} is {relation} --to {to}. Keys must live apart from database "
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


# ---- restore -----------------------------------------------------------------------------


def check_restorable(source: Path, database: DatabasePart, kind: DatabaseKind) -> None:
    """Refuse a backup of another database kind, or from a newer Telecircle."""
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


async def check_restore_targets(settings: Settings, kind: DatabaseKind, url: str) -> None:
    """Refuse a data folder, key folder, server key or database that already holds data
    (or a PostgreSQL database that cannot be opened)."""
    _check_local_targets(settings, kind)
    if kind == "sqlite":
        return
    try:
        relations = await snapshot.postgres_relation_count(url)
    except (OSError, SQLAlchemyError) as exc:
        raise Refused(
            f"Cannot open the database {where(url)}: {first_line(exc)}. Create an empty "
            "database for the restore first (e.g. createdb -O USER NAME)."
        ) from None
    if relations:
        raise Refused(
            f"The database {where(url)} already holds {relations} tables or sequences. "
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


def _known_revisions() -> set[str]:
    script = ScriptDirectory.from_config(migrations.alembic_config())
    return {revision.revision for revision in script.walk_revisions()}
