"""What a check says: a status and one line of plain words for the administrator."""

from __future__ import annotations

import enum
import os
import ssl
from dataclasses import dataclass


class Status(enum.Enum):
    """OK: nothing to do. WARNING: works, but look at it. PROBLEM: must be fixed."""

    OK = "OK"
    WARNING = "WARNING"
    PROBLEM = "PROBLEM"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check: ``name`` says what was checked, ``message`` what was
    found and, unless it is OK, how to fix it (never a secret, never a traceback)."""

    name: str
    status: Status
    message: str

    def line(self) -> str:
        """The result as the one line ``telecircle doctor`` prints."""
        return f"{self.status.value:<7}  {self.name}: {self.message}"


def ok(name: str, message: str) -> CheckResult:
    return CheckResult(name, Status.OK, message)


def warning(name: str, message: str) -> CheckResult:
    return CheckResult(name, Status.WARNING, message)


def problem(name: str, message: str) -> CheckResult:
    return CheckResult(name, Status.PROBLEM, message)


def worst(statuses: list[Status]) -> Status:
    """The most serious of ``statuses`` (OK for none)."""
    for status in (Status.PROBLEM, Status.WARNING):
        if status in statuses:
            return status
    return Status.OK


def reason(exc: BaseException) -> str:
    """A short, one-line description of ``exc`` for a message (no traceback)."""
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return str(exc.verify_message)
    if isinstance(exc, ssl.SSLError):
        # OpenSSL's reason code, e.g. WRONG_VERSION_NUMBER (no TLS at that port).
        return str(exc.reason or exc).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
