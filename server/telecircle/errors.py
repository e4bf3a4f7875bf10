"""The one error hierarchy: every refusal carries a stable code, a message safe to show a
user (never input, SDP, addresses or names) and the HTTP status it maps to."""

from __future__ import annotations


class TelecircleError(Exception):
    """Base of every expected refusal. Subclasses set ``code`` and ``http_status``."""

    code = "error"
    http_status = 400

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
