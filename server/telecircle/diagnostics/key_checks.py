"""Key files: the server key and the key-encryption keys, present and owner-only.

They are read with the same code the server uses, so a file that would stop the
server is reported here in the same words. Nothing is ever created: a missing key is a
key to restore from its backup, and making a new one would hide that.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from telecircle.crypto.key_store import FileKeyStore, KeyStoreError
from telecircle.crypto.server_key import ServerKeyError, load_server_key
from telecircle.diagnostics.deployment import Deployment
from telecircle.diagnostics.results import CheckResult, ok, problem, warning


def _someone_else_owns(path: Path, name: str, fix: str) -> CheckResult | None:
    """When ``path`` belongs to another account than the one running the doctor, the
    server's own checks (which insist on its account) cannot be applied as they are:
    check the mode here, and say how to check the rest. None when the owner is us (or
    there is nothing at ``path``)."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if info.st_uid == os.geteuid() or stat.S_ISLNK(info.st_mode):
        return None
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        return problem(
            name,
            f"{path} can be used by other users (mode {mode:04o}). Restrict it with: {fix}",
        )
    return warning(
        name,
        f"{path} is owner-only but belongs to uid {info.st_uid}, not to the account running "
        f"this check (uid {os.geteuid()}): run telecircle doctor as the account Telecircle "
        "runs as (e.g. sudo -u telecircle telecircle doctor) to check it fully",
    )


def check_server_key(deployment: Deployment) -> CheckResult:
    """The server key file: present, a regular file, owner-only, one valid key."""
    name = "Server key file"
    path = deployment.settings.effective_server_key_file
    other = _someone_else_owns(path, name, f"chmod 600 {path}")
    if other is not None:
        return other
    try:
        load_server_key(path)
    except ServerKeyError as exc:
        return problem(name, exc.message)
    return ok(name, f"{path} is present and owner-only")


def check_key_encryption_keys(deployment: Deployment) -> CheckResult:
    """The notes' key-encryption keys: the folder and every version file present,
    owner-only and well-formed."""
    name = "Key-encryption keys"
    folder = deployment.settings.effective_key_dir
    other = _someone_else_owns(folder, name, f"chmod 700 {folder}")
    if other is not None:
        return other
    store = FileKeyStore(folder)
    try:
        versions = store.versions()
        if not versions:
            store.current()  # raises the store's own "no key" message
        for version in versions:
            store.get(version)
    except KeyStoreError as exc:
        return problem(name, exc.message)
    return ok(
        name,
        f"{folder} holds {len(versions)} version(s) (newest v{versions[-1]}), folder and "
        "files owner-only",
    )
