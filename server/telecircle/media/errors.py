"""The one error class of the media plane."""

from __future__ import annotations

from telecircle.errors import TelecircleError


class MediaError(TelecircleError):
    """A media request was refused.

    ``code`` is stable and machine-readable (``invalid_sdp``, ``invalid_request``,
    ``not_subscribed``, ``media_closed``, ``negotiation_timeout``); ``message`` is safe to
    show a user: it never contains SDP, addresses or names.
    """

    code = "media_error"
    http_status = 422

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)
