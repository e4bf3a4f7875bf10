"""Clocks: this machine's against the database server's and the web server's.

TURN credentials, invite links and sign-ins expire by the clock, and coturn, PostgreSQL
and a reverse proxy may run on other machines: clocks apart by more than
:data:`MAX_SKEW` seconds make links and relays fail in ways that are hard to trace.
"""

from __future__ import annotations

import asyncio
import email.utils
import time

from sqlalchemy import text
from sqlalchemy.engine import make_url

from telecircle.diagnostics.deployment import Deployment
from telecircle.diagnostics.results import CheckResult, ok, problem, reason, warning
from telecircle.storage.database import open_database

MAX_SKEW = 5.0
DATABASE_TIMEOUT = 10.0
# A Date header has whole seconds: its clock may be up to this much behind ours.
DATE_RESOLUTION = 1.0
_FIX = (
    "keep both in step with NTP (systemd-timesyncd or chrony): TURN credentials and "
    "invite links expire by the clock"
)


def skew(remote: float, sent_at: float, received_at: float, resolution: float = 0.0) -> float:
    """How far (seconds) a remote clock that read ``remote`` at some moment between
    ``sent_at`` and ``received_at`` (our clock) is from ours, at least; 0 if it could
    agree. ``resolution`` is how much the remote reading may have been rounded down."""
    if remote + resolution < sent_at:
        return sent_at - (remote + resolution)
    if remote > received_at:
        return remote - received_at
    return 0.0


def check_web_clock(deployment: Deployment) -> CheckResult:
    """Compare this machine's clock with the public URL's Date header, when it answered."""
    name = "Clock (web server)"
    web = deployment.web
    if web.status is None:
        return ok(name, "not compared: the public URL did not answer")
    if web.date is None:
        return ok(name, "not compared: the public URL's answer has no Date header")
    try:
        remote = email.utils.parsedate_to_datetime(web.date).timestamp()
    except (TypeError, ValueError):
        return warning(name, f"not compared: the Date header {web.date!r} cannot be read")
    apart = skew(remote, web.sent_at, web.received_at, DATE_RESOLUTION)
    if apart > MAX_SKEW:
        return problem(
            name,
            f"this machine's clock and the clock of the server answering "
            f"{deployment.url.text} are {apart:.0f} s apart: {_FIX}",
        )
    return ok(name, f"this machine and {deployment.url.text} agree (within {MAX_SKEW:.0f} s)")


async def check_database_clock(deployment: Deployment) -> CheckResult:
    """Compare this machine's clock with PostgreSQL's ``now()``; SQLite has no clock of
    its own."""
    name = "Clock (database)"
    url = deployment.settings.effective_database_url
    if make_url(url).get_backend_name() == "sqlite":
        return ok(name, "SQLite uses this machine's clock: nothing to compare")
    try:
        remote, sent_at, received_at = await asyncio.wait_for(_database_now(url), DATABASE_TIMEOUT)
    except TimeoutError:
        return warning(
            name, f"not compared: the database did not answer within {DATABASE_TIMEOUT:.0f} s"
        )
    except Exception as exc:  # any driver error: say why, no traceback
        return warning(name, f"not compared: cannot ask the database ({reason(exc)})")
    apart = skew(remote, sent_at, received_at)
    if apart > MAX_SKEW:
        return problem(
            name, f"this machine's clock and PostgreSQL's are {apart:.1f} s apart: {_FIX}"
        )
    return ok(name, f"this machine and PostgreSQL agree (within {MAX_SKEW:.0f} s)")


async def _database_now(url: str) -> tuple[float, float, float]:
    database = await open_database(url)
    try:
        async with database.read() as connection:
            sent_at = time.time()
            now = (await connection.execute(text("SELECT now()"))).scalar_one()
            received_at = time.time()
    finally:
        await database.close()
    return float(now.timestamp()), sent_at, received_at
