"""How backup and restore messages name things. Never the database's content."""

from __future__ import annotations

from sqlalchemy.engine import make_url

from telecircle.storage import snapshot


def where(url: str) -> str:
    """The database of ``url`` as an administrator knows it: the SQLite file, or the
    PostgreSQL database name, host and port (never the user or password)."""
    if snapshot.database_kind(url) == "sqlite":
        return str(snapshot.sqlite_path(url))
    parsed = make_url(url)
    return f"{parsed.database} on {parsed.host or 'the local socket'}:{parsed.port or 5432}"


def first_line(exc: BaseException) -> str:
    """The first line of the exception's message, or its type's name if it has none."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def listed(versions: tuple[int, ...]) -> str:
    """Key versions as ``1, 2, 3``, or ``none``."""
    return ", ".join(map(str, versions)) or "none"
