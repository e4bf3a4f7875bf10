"""Signed tokens, random secrets and their hashes.

A signed token is ``VALUE.MAC``: MAC is the unpadded URL-safe base64 of
HMAC-SHA256(key, PURPOSE ":" VALUE). The purpose separates kinds of token, so a token
signed for one purpose never verifies for another. Tokens are authenticated, not
encrypted: the value is readable by whoever holds the token.

Secrets (e.g. the patient's cookie) are stored only as their SHA-256: a database copy
does not let anyone sign in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# Longest token verify_token looks at; sign_token refuses to make a longer one, so a
# token it made always fits. Bounds the work an attacker's input can cause.
MAX_TOKEN_LENGTH = 256
_MAC_LENGTH = 43  # unpadded base64 of 32 bytes
_SEPARATOR = "."
_URLSAFE_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
SECRET_BYTES = 32
INVITE_ID_BYTES = 12


def sign_token(key: bytes, purpose: str, value: str) -> str:
    """``VALUE.MAC`` for ``value`` under ``key`` and ``purpose``.

    Raises ValueError for an empty key or value, a purpose that is empty or contains
    ``:``, a value that is not printable ASCII, or a token longer than
    :data:`MAX_TOKEN_LENGTH`.
    """
    _check_purpose(purpose)
    if not key:
        raise ValueError("signing key must not be empty")
    if not value or not (value.isascii() and value.isprintable()):
        raise ValueError("token value must be non-empty printable ASCII")
    if len(value) + 1 + _MAC_LENGTH > MAX_TOKEN_LENGTH:
        raise ValueError("token value too long")
    return f"{value}{_SEPARATOR}{_mac(key, purpose, value)}"


def verify_token(key: bytes, purpose: str, token: str) -> str | None:
    """The value signed in ``token``, or None if it is malformed, too long, signed
    with another key or purpose, or altered in any way. The MAC is compared in constant
    time."""
    _check_purpose(purpose)
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        return None
    value, separator, mac = token.rpartition(_SEPARATOR)
    if not separator or not value or not value.isprintable():
        return None
    if len(mac) != _MAC_LENGTH or not _URLSAFE_ALPHABET.issuperset(mac):
        return None
    expected = _mac(key, purpose, value)
    if not hmac.compare_digest(expected.encode("ascii"), mac.encode("ascii")):
        return None
    return value


def secret_hash(secret: str) -> str:
    """The SHA-256 of ``secret`` (UTF-8) as 64 lower-case hex digits: what is stored."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    """A fresh unguessable secret: 32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(SECRET_BYTES)


def new_invite_id() -> str:
    """A fresh invite id: ``i_`` and 24 hex digits."""
    return "i_" + secrets.token_hex(INVITE_ID_BYTES)


def _mac(key: bytes, purpose: str, value: str) -> str:
    digest = hmac.new(key, f"{purpose}:{value}".encode("ascii"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _check_purpose(purpose: str) -> None:
    # A ":" in the purpose would make "a:b" + "c" and "a" + "b:c" sign the same bytes.
    if not purpose or ":" in purpose or not (purpose.isascii() and purpose.isprintable()):
        raise ValueError("purpose must be non-empty printable ASCII without ':'")
