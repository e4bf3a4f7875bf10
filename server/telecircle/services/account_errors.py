"""Refusals of the account service. Messages are safe to show: no input, no names.

Sign-in failures share one message whatever the cause (unknown username, wrong
password, no password yet, disabled account), so a caller learns nothing about which
accounts exist.
"""

from __future__ import annotations

import math

from telecircle.errors import TelecircleError


class LinkInvalid(TelecircleError):
    """The one-time link is unknown, used, expired, or no longer applies."""

    code = "link_invalid"
    http_status = 410

    def __init__(self) -> None:
        super().__init__(
            "This link has expired or was already used. Ask your administrator for a new one."
        )


class LoginFailed(TelecircleError):
    code = "login_failed"
    http_status = 401

    def __init__(self) -> None:
        super().__init__("Wrong username or password.")


class TooManyAttempts(TelecircleError):
    """Too many failures from this address or for this account; ``retry_after`` is in
    seconds."""

    code = "too_many_attempts"
    http_status = 429

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(0.0, retry_after)
        minutes = max(1, math.ceil(self.retry_after / 60))
        unit = "minute" if minutes == 1 else "minutes"
        super().__init__(
            f"Too many unsuccessful attempts. Please wait {minutes} {unit} and try again."
        )


class CodeRejected(TelecircleError):
    """A one-time code from the authenticator app did not match (or was used before)."""

    code = "wrong_code"
    http_status = 401

    def __init__(self) -> None:
        super().__init__(
            "That code is not right. Enter the current code from your authenticator app."
        )


class SecondFactorNotSetUp(TelecircleError):
    code = "second_factor_not_set_up"
    http_status = 409

    def __init__(self) -> None:
        super().__init__("Set up your authenticator app first.")


class NotSignedIn(TelecircleError):
    """The sign-in session is unknown, ended or expired."""

    code = "not_signed_in"
    http_status = 401

    def __init__(self) -> None:
        super().__init__("Your sign-in has ended. Please sign in again.")


class NotAllowed(TelecircleError):
    code = "not_allowed"
    http_status = 403

    def __init__(self) -> None:
        super().__init__("Only an administrator can do that.")


class AccountNotFound(TelecircleError):
    code = "account_not_found"
    http_status = 404

    def __init__(self) -> None:
        super().__init__("There is no such account.")


class AccountDisabled(TelecircleError):
    code = "account_disabled"
    http_status = 409

    def __init__(self) -> None:
        super().__init__("This account is disabled. Enable it first.")


class UsernameTaken(TelecircleError):
    code = "username_taken"
    http_status = 409

    def __init__(self) -> None:
        super().__init__("That username is already taken. Choose another.")


class CannotDisableSelf(TelecircleError):
    code = "cannot_disable_self"
    http_status = 409

    def __init__(self) -> None:
        super().__init__("You cannot disable your own account.")


class LastAdministrator(TelecircleError):
    code = "last_administrator"
    http_status = 409

    def __init__(self) -> None:
        super().__init__("At least one administrator account must stay enabled.")
