"""Time-based one-time passwords (RFC 6238 over RFC 4226): HMAC-SHA-1, 6 digits, 30 s.

What authenticator apps (and the ``otpauth://`` QR codes they scan) expect. Secrets are
base32 text (160 random bits, RFC 4226's recommended length). Time is passed in: this
module reads no clock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import struct
from urllib.parse import quote, urlencode

DIGITS = 6
PERIOD = 30
SECRET_BYTES = 20  # 160 bits


def new_secret() -> str:
    """A fresh random secret: 160 bits as 32 base32 characters (no padding)."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii").rstrip("=")


def is_valid_secret(secret: str) -> bool:
    """True if ``secret`` is base32 text decoding to at least 128 bits."""
    try:
        return len(_key(secret)) >= 16
    except ValueError:
        return False


def code_at(secret: str, t: float) -> str:
    """The 6-digit code for UNIX time ``t``. Raises ValueError for a malformed secret."""
    return _hotp(_key(secret), int(t // PERIOD))


def matching_step(secret: str, code: str, now: float, *, window: int = 1) -> int | None:
    """The time step (``t // 30``) whose code is ``code``, or None.

    Steps ``now``'s step ± ``window`` are accepted, allowing for clock drift and typing
    time. Every candidate is compared in constant time, and all are compared, so the
    time taken does not depend on which step matched. Spaces in ``code`` are ignored; a
    code that is not 6 digits, or a malformed secret, never matches.
    """
    typed = code.replace(" ", "")
    try:
        key = _key(secret)
    except ValueError:
        return None
    if len(typed) != DIGITS or not typed.isascii() or not typed.isdigit():
        return None
    current = int(now // PERIOD)
    found: int | None = None
    for step in range(current - window, current + window + 1):
        if hmac.compare_digest(_hotp(key, step), typed) and found is None:
            found = step
    return found


def verify(secret: str, code: str, now: float, *, window: int = 1) -> bool:
    """True if ``code`` is the code of ``now``'s time step or one within ``window`` steps.

    Callers that must refuse a code used twice (RFC 6238 §5.2) use
    :func:`matching_step` and remember the last step accepted.
    """
    return matching_step(secret, code, now, window=window) is not None


def provisioning_uri(secret: str, account_name: str, issuer: str = "Telecircle") -> str:
    """The ``otpauth://totp/...`` URI an authenticator app scans (as a QR code)."""
    label = quote(f"{issuer}:{account_name}", safe=":@")
    query = urlencode(
        {
            "secret": secret,
            "issuer": issuer,
            "algorithm": "SHA1",
            "digits": DIGITS,
            "period": PERIOD,
        },
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{query}"


def _key(secret: str) -> bytes:
    """The key bytes of a base32 secret (case, spaces and missing padding tolerated)."""
    text = secret.replace(" ", "").upper()
    if not text:
        raise ValueError("empty secret")
    text += "=" * (-len(text) % 8)
    try:
        return base64.b32decode(text)
    except (binascii.Error, ValueError):
        raise ValueError("secret is not base32") from None


def _hotp(key: bytes, counter: int) -> str:
    if counter < 0:
        # Before 1970: no code; a value no 6-digit input equals.
        return "-" * DIGITS
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**DIGITS).zfill(DIGITS)
