"""The error classes of the media plane."""

from __future__ import annotations

from telecircle.errors import TelecircleError


class MediaError(TelecircleError):
    """A media request was refused.

    ``code`` is stable and machine-readable (``invalid_sdp``, ``invalid_request``,
    ``not_subscribed``, ``media_closed``, ``negotiation_timeout``, ``server_full``: as
    many sessions as ``max_live_sessions`` already have media, ``ports_exhausted``: no
    free UDP port in the configured range); ``message`` is safe to show a user: it never
    contains SDP, addresses or names.
    """

    code = "media_error"
    http_status = 422

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, code=code)


class MediaConfigError(TelecircleError):
    """The media plane cannot start with this configuration (raised at start-up).

    The message is for the administrator: it names the setting (``TELECIRCLE_*``) and
    says how to fix it.
    """

    code = "media_config"
    http_status = 500


def server_full(limit: int) -> MediaError:
    return MediaError(
        "server_full",
        f"This server is already running as many sessions as it is set up for ({limit}). "
        "Please try again when another session has ended, or ask your administrator to "
        "allow more sessions at once.",
    )


def ports_exhausted() -> MediaError:
    return MediaError(
        "ports_exhausted",
        "The server has no free media ports right now. Please try again in a few minutes; "
        "if this keeps happening, ask your administrator to widen the media port range.",
    )
