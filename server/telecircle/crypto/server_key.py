"""The server's secret key: a 32-byte master secret in a file outside the database.

The file holds the secret as 64 hex digits and a newline, readable and writable by its
owner only. It is created on first start; every later start must find it unchanged.
Purpose-specific keys are derived from it with HKDF-SHA256, so one file serves every
use (the audit head's HMAC, invite signing) without one use's key ever being another's.

Keep the file out of database backups: whoever holds both can forge the audit head.
Losing it invalidates outstanding signed links and makes the audit head fail to verify.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from telecircle.crypto.secret_file import SECRET_BYTES, create_secret_file, read_secret_file
from telecircle.errors import TelecircleError

KEY_BYTES = SECRET_BYTES
DERIVED_KEY_BYTES = 32
# The purposes other modules derive keys for.
AUDIT_HEAD = "audit-head"
INVITE_SIGNING = "invite-signing"


class ServerKeyError(TelecircleError):
    """The key file is missing (where it must exist), unsafe or malformed.

    The message names the file and the fix; it is meant for the administrator.
    """

    code = "server_key"
    http_status = 500


@dataclass(frozen=True, slots=True)
class ServerKey:
    """The master secret. Its repr never shows the secret."""

    master: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.master) != KEY_BYTES:
            raise ValueError(f"the server key must be {KEY_BYTES} bytes")

    def __repr__(self) -> str:
        return "ServerKey(<secret>)"

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for ``purpose`` (HKDF-SHA256, info ``telecircle:PURPOSE``).

        The same master and purpose always give the same key; different purposes give
        unrelated keys. Raises ValueError for an empty purpose.
        """
        if not purpose:
            raise ValueError("a key purpose is required")
        hkdf = HKDF(
            algorithm=SHA256(),
            length=DERIVED_KEY_BYTES,
            salt=None,
            info=b"telecircle:" + purpose.encode("utf-8"),
        )
        return hkdf.derive(self.master)


def load_server_key(path: Path) -> ServerKey:
    """The key stored at ``path``; never creates one.

    Raises :class:`ServerKeyError` if the file is missing, is a symbolic link or not a
    regular file, can be read or written by group or others, or does not hold exactly
    64 hex digits.
    """
    try:
        master = read_secret_file(path, label="server key file", error=ServerKeyError)
    except FileNotFoundError:
        raise ServerKeyError(
            f"The server key file {path} does not exist. Restore it from your key backup "
            "(it is created only when the server starts for the first time).",
            code="server_key_missing",
        ) from None
    return ServerKey(master)


def load_or_create_server_key(path: Path) -> ServerKey:
    """The key stored at ``path``, made (32 random bytes, mode 0600) if there is none.

    A missing parent folder is created with mode 0700. The new file appears complete
    or not at all (written to a temporary file, then hard-linked into place, which
    never replaces an existing file), so concurrent first starts agree on one key: the
    losers read the winner's. Raises :class:`ServerKeyError` as :func:`load_server_key`
    does for an existing file.
    """
    try:
        return load_server_key(path)
    except ServerKeyError as exc:
        if exc.code != "server_key_missing":
            raise
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    create_secret_file(path, secrets.token_bytes(KEY_BYTES))  # a loser reads the winner's
    return load_server_key(path)
