"""Owner-only folders and files for the backup's parts (folders 0700, files 0600).

Every file is created new (never replacing one, never following a symbolic link at its
name) and fsynced before the call returns.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

_NEW_PRIVATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


def make_private_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) if missing, and make it owner-only."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)  # an empty folder given by the administrator, whatever its mode


def write_private_text(path: Path, content: str) -> None:
    """Create the new file ``path`` holding ``content`` (UTF-8)."""
    with _create(path) as file:
        file.write(content.encode("utf-8"))
        _settle(file)


def copy_private(source: Path, target: Path) -> None:
    """Copy ``source`` into the new file ``target``. Blocking: run it in a thread."""
    with _create(target) as out, source.open("rb") as src:
        while chunk := src.read(_CHUNK):
            out.write(chunk)
        _settle(out)


def _create(path: Path) -> BinaryIO:
    return os.fdopen(os.open(path, _NEW_PRIVATE, 0o600), "wb")


def _settle(file: BinaryIO) -> None:
    file.flush()
    os.fsync(file.fileno())
