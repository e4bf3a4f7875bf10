"""Owner-only secret files: read one safely, create one atomically.

A secret file holds one 32-byte key as 64 hex digits and a newline, mode 0600. Reading
refuses anything an attacker with a foothold beside the file could have planted or
widened: a symbolic link, a FIFO or other non-regular file (opened without blocking, so
a FIFO cannot hang the server), a file that group or others may read or write, or
content that is not exactly one key. Creating never replaces an existing file and never
leaves a half-written one at the final name. The server key and the key-encryption key
store share this code; each names its own file kind and error class in the messages.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

from telecircle.errors import TelecircleError

SECRET_BYTES = 32
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
_MAX_FILE_BYTES = 1024  # a valid file is 65 bytes; read no more than this of a bad one


def read_secret_file(
    path: Path,
    *,
    label: str,
    error: type[TelecircleError],
    not_regular_fix: str = "",
) -> bytes:
    """The 32-byte secret stored at ``path``.

    Raises :class:`FileNotFoundError` if there is no file (what that means is the
    caller's to say), and ``error`` with a message naming the ``label`` ("server key
    file"), the path and the fix if the file is a symbolic link, cannot be opened, is
    not a regular file, can be read or written by group or others, or does not hold
    exactly 64 hex digits. No message ever contains the file's content.
    """
    try:
        # O_NONBLOCK: opening a FIFO planted at the path must not hang the server.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise error(
                f"The {label} {path} is a symbolic link. Replace it with the real "
                f"file (owner-only permissions: chmod 600 {path})."
            ) from None
        raise error(
            f"The {label} {path} cannot be read ({exc.strerror}). Check its owner and permissions."
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            fix = f" {not_regular_fix}" if not_regular_fix else ""
            raise error(f"The {label} {path} is not a regular file.{fix}")
        if info.st_mode & 0o077:
            raise error(
                f"The {label} {path} can be read or written by other users "
                f"(mode {stat.S_IMODE(info.st_mode):04o}). Restrict it with: chmod 600 {path}"
            )
        if info.st_uid != os.geteuid():
            # Mode bits alone would trust a file another account owns (and may rewrite).
            raise error(
                f"The {label} {path} belongs to another user (uid {info.st_uid}). Give it to "
                f"the account the server runs as: chown {os.geteuid()} {path}"
            )
        content = os.read(fd, _MAX_FILE_BYTES)
    finally:
        os.close(fd)
    return _parse(content, path, label=label, error=error)


def create_secret_file(path: Path, secret: bytes) -> bool:
    """Store ``secret`` at ``path`` (mode 0600) unless a file of that name exists.

    Returns True if this call created the file, False if the name was already taken
    (by a file of any kind, a symbolic link included, which is left as it is). The
    file appears complete or not at all: the secret is written and fsynced to a
    temporary file beside it, hard-linked into place (which never replaces anything),
    and the folder is fsynced so the new name survives a crash. A temporary file left
    by a crash is named ``.NAME.RANDOM.tmp``; it was never in use and may be deleted.
    The folder must exist.
    """
    if len(secret) != SECRET_BYTES:
        raise ValueError(f"a secret is {SECRET_BYTES} bytes")
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(
        temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
    )
    try:
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            _write_all(fd, secret.hex().encode("ascii") + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        fsync_folder(path.parent)
        return True
    finally:
        temporary.unlink(missing_ok=True)


def fsync_folder(folder: Path) -> None:
    """Make the folder's entries durable, so a crash cannot lose a key in use."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _parse(content: bytes, path: Path, *, label: str, error: type[TelecircleError]) -> bytes:
    text = content.decode("ascii", errors="replace").strip()
    if len(text) != 2 * SECRET_BYTES or not set(text) <= _HEX_DIGITS:
        raise error(
            f"The {label} {path} is damaged: it must hold {2 * SECRET_BYTES} hex digits. "
            "Restore it from your key backup."
        )
    return bytes.fromhex(text)
