"""What makes a username and a display name acceptable (pure rules, no I/O).

Refusals raise :class:`InvalidAccountDetails` with a message that states the rule and
never repeats what was typed.
"""

from __future__ import annotations

import re

from telecircle.domain.access import ACCOUNT_ROLES, Role
from telecircle.errors import TelecircleError

USERNAME_MIN = 3
USERNAME_MAX = 64
DISPLAY_NAME_MAX = 200
_USERNAME = re.compile(r"[a-z0-9._-]+")


class InvalidAccountDetails(TelecircleError):
    """A username, display name or role that breaks the rules. ``code`` says which."""

    code = "invalid_account_details"
    http_status = 422


def normalize_username(username: str) -> str:
    """``username`` as stored and compared: surrounding spaces removed, lower-cased."""
    return username.strip().lower()


def check_username(username: str) -> str:
    """The normalized username, or :class:`InvalidAccountDetails` if it is not 3 to 64
    characters of a-z, 0-9, dot, hyphen and underscore (after lower-casing)."""
    name = normalize_username(username)
    if not (USERNAME_MIN <= len(name) <= USERNAME_MAX) or not _USERNAME.fullmatch(name):
        raise InvalidAccountDetails(
            f"Choose a username of {USERNAME_MIN} to {USERNAME_MAX} characters, using "
            "letters a-z, digits, dots, hyphens and underscores.",
            code="invalid_username",
        )
    return name


def check_display_name(display_name: str) -> str:
    """The display name without surrounding spaces, or :class:`InvalidAccountDetails`
    if that is empty, longer than 200 characters, or holds unprintable characters."""
    name = display_name.strip()
    if not (1 <= len(name) <= DISPLAY_NAME_MAX) or not name.isprintable():
        raise InvalidAccountDetails(
            f"Enter a name of 1 to {DISPLAY_NAME_MAX} characters (no line breaks or "
            "control characters).",
            code="invalid_display_name",
        )
    return name


def check_account_role(role: Role) -> Role:
    """``role`` if accounts may have it (administrator, therapist, co-facilitator)."""
    if role not in ACCOUNT_ROLES:
        raise InvalidAccountDetails("Choose one of the listed roles.", code="invalid_role")
    return role
