"""What each backup folder holds and its ``manifest.json``: writing, reading, checksums.

A manifest names the format, the part (``database`` or ``keys``), the backup id, when
it was taken, the Telecircle version and the SHA-256 of every file in its folder. It is
written last, so a backup cut short has none; reading one refuses (:class:`Refused`)
anything that is not a whole manifest of the expected part, and :func:`check_sum`
fails (:class:`CheckFailed`) on a file that is missing or altered.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from telecircle.backup.errors import CheckFailed, Refused
from telecircle.backup.private_files import write_private_text
from telecircle.crypto.key_store import key_file_name
from telecircle.crypto.secret_file import fsync_folder
from telecircle.storage import snapshot
from telecircle.storage.snapshot import SNAPSHOT_FILE, DatabaseKind

FORMAT = "telecircle-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
KEY_FOLDER = "keys"
SERVER_KEY = "server.key"
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class DatabasePart:
    """The database folder's manifest, checked for shape (not yet against the file)."""

    backup_id: str
    taken_at: str
    kind: DatabaseKind
    schema_revision: str
    sha256: str


@dataclass(frozen=True, slots=True)
class KeysPart:
    """The key folder's manifest, checked for shape (not yet against the files)."""

    backup_id: str
    taken_at: str
    kek_versions: tuple[int, ...]
    sha256: dict[str, str]  # file name (relative to the folder) -> checksum


def kek_file_name(kek_version: int) -> str:
    """Where a key-encryption key version lives in the key folder (relative name)."""
    return f"{KEY_FOLDER}/{key_file_name(kek_version)}"


def now_iso() -> str:
    """The current time as the manifests record it (UTC, to the second)."""
    return datetime.fromtimestamp(time.time(), UTC).isoformat(timespec="seconds")


def write_manifests(
    to: Path,
    keys_to: Path,
    *,
    backup_id: str,
    taken_at: str,
    kind: DatabaseKind,
    revision: str,
    kek_versions: tuple[int, ...],
    key_sums: dict[str, str],
) -> None:
    """Write the database folder's manifest (checksumming its snapshot), then the key
    folder's; each fsynced with its folder. The snapshot and key files must be there."""
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
            "kek_versions": list(kek_versions),
            "files": key_sums,
        },
    )


def read_database_part(folder: Path) -> DatabasePart:
    """The manifest of the database folder given as ``--from``; :class:`Refused` if it
    is missing, of another part, or malformed."""
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


def read_keys_part(folder: Path) -> KeysPart:
    """The manifest of the key folder given as ``--keys-from``; :class:`Refused` if it
    is missing, of another part, or does not list exactly the files its versions need."""
    manifest = _read_manifest(folder, "keys", "--keys-from")
    damaged = Refused(f"{folder / MANIFEST} is damaged: its list of key files is malformed.")
    versions, files = manifest.get("kek_versions"), manifest.get("files")
    if not isinstance(versions, list) or not all(isinstance(v, int) and v >= 1 for v in versions):
        raise damaged
    expected = {kek_file_name(v) for v in versions} | {SERVER_KEY}
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


def check_sum(path: Path, expected: str) -> None:
    """:class:`CheckFailed` unless ``path`` exists and its SHA-256 is ``expected``."""
    try:
        actual = snapshot.sha256_of(path)
    except FileNotFoundError:
        raise CheckFailed(f"{path} is missing from the backup.") from None
    if actual != expected:
        raise CheckFailed(
            f"{path} does not match the checksum in its manifest: the backup is damaged or "
            "was altered. Use another copy of it."
        )


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


def _text(mapping: dict[str, Any], name: str, damaged: Refused) -> str:
    value = mapping.get(name)
    if not isinstance(value, str) or not value:
        raise damaged
    return value


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    write_private_text(folder / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    fsync_folder(folder)


def _telecircle_version() -> str:
    try:
        return version("telecircle")
    except PackageNotFoundError:
        return "unknown"
