"""Logging set-up: one line per record, ``extra`` fields appended as key=value.

Log records carry ids and event names only; callers never pass names or note text.
"""

from __future__ import annotations

import logging
import sys

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None)).keys()) | {
    "message",
    "asctime",
    "taskName",
}


class KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = " ".join(
            f"{key}={value}" for key, value in vars(record).items() if key not in _STANDARD
        )
        return f"{base} {extras}" if extras else base


# Libraries whose debug output includes SQL parameters, SDP or addresses: capped at
# WARNING whatever the configured level, because query parameters can hold names.
QUIET_LIBRARIES = (
    "aiosqlite",
    "sqlalchemy",
    "asyncpg",
    "aiortc",
    "aioice",
    "socketio",
    "engineio",
    "aiohttp.access",
)


def quiet_third_party_loggers() -> None:
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_third_party_loggers()
