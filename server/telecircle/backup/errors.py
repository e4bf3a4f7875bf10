"""The two ways a backup or restore stops short; each carries a message for the
administrator, and the command maps it to its exit code."""

from __future__ import annotations

from telecircle.errors import TelecircleError


class Refused(TelecircleError):
    """Nothing was written: the message says what to change (exit 2)."""

    code = "backup_refused"


class CheckFailed(TelecircleError):
    """The backup is damaged or its keys do not fit (exit 1)."""

    code = "backup_check_failed"
