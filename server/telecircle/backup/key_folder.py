"""The keys part of a backup: copying the live keys out, and on restore checking the
copied keys against their manifest and installing them.

The folder holds ``keys/kek-vNNNN.key`` (every key-encryption key version) and
``server.key``, each an owner-only secret file (see :mod:`telecircle.crypto.secret_file`).
"""

from __future__ import annotations

from pathlib import Path

from telecircle.backup.errors import CheckFailed, Refused
from telecircle.backup.manifest import KEY_FOLDER, SERVER_KEY, KeysPart, check_sum, kek_file_name
from telecircle.backup.wording import listed
from telecircle.config import Settings
from telecircle.crypto.key_store import KeyStore, key_file_name, open_key_store
from telecircle.crypto.secret_file import create_secret_file
from telecircle.crypto.server_key import ServerKey, load_server_key
from telecircle.storage import snapshot


def copy_keys(keys: KeyStore, server_key: ServerKey, keys_to: Path) -> dict[str, str]:
    """Copy every KEK version and the server key into the empty folder ``keys_to``
    (0600 files, 0700 ``keys/`` folder); their checksums by name relative to it."""
    (keys_to / KEY_FOLDER).mkdir(mode=0o700)
    files = {kek_file_name(v): keys.get(v).secret for v in keys.versions()}
    files[SERVER_KEY] = server_key.master
    for name, secret in files.items():
        create_secret_file(keys_to / name, secret)
    return {name: snapshot.sha256_of(keys_to / name) for name in files}


def open_backup_keys(keys_from: Path, part: KeysPart) -> tuple[KeyStore, ServerKey]:
    """The keys in the backup folder ``keys_from``, once every file matches its
    checksum (:class:`CheckFailed` if not, or if the versions differ from the
    manifest's); an unsafe folder or file is refused by the key store."""
    for name, expected in part.sha256.items():
        check_sum(keys_from / name, expected)
    backup_keys = open_key_store(keys_from / KEY_FOLDER, create=False)  # unsafe: refused
    if backup_keys.versions() != part.kek_versions:
        raise CheckFailed(
            f"The key folder {keys_from / KEY_FOLDER} holds versions "
            f"{listed(backup_keys.versions())}, its manifest lists "
            f"{listed(part.kek_versions)}. Use the key backup as it was written."
        )
    return backup_keys, load_server_key(keys_from / SERVER_KEY)


def install_keys(settings: Settings, keys: KeyStore, server_key: ServerKey) -> None:
    """Write the keys to the configured key folder and server key file, never replacing
    a file: :class:`Refused` if one appeared since the targets were checked."""
    key_dir = settings.effective_key_dir
    key_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    key_dir.chmod(0o700)
    for kek_version in keys.versions():
        if not create_secret_file(
            key_dir / key_file_name(kek_version), keys.get(kek_version).secret
        ):
            raise Refused(f"A key file appeared in {key_dir} during the restore.")
    server_file = settings.effective_server_key_file
    server_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not create_secret_file(server_file, server_key.master):
        raise Refused(f"A server key appeared at {server_file} during the restore.")
