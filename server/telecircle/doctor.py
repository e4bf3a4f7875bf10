"""``telecircle doctor``: check a deployment and say in plain words what is wrong.

One line per check, ``OK``, ``WARNING`` or ``PROBLEM``, each saying what was found and,
unless it is OK, how to fix it: the public URL, certificates, the public address and
UDP port range of the media plane, TURN, the database, the key files, and the clocks.
Exit code 0 when no check found a problem, 1 otherwise.

Run it as the account Telecircle runs as, with the same settings. It creates nothing,
leaves nothing written, and talks only to the addresses the settings name.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

from telecircle.config import Settings
from telecircle.diagnostics import (
    certificates,
    clocks,
    database_checks,
    key_checks,
    media_checks,
    turn_check,
    web_checks,
)
from telecircle.diagnostics.deployment import Deployment, inspect
from telecircle.diagnostics.results import CheckResult, Status, reason, warning

# No check may take longer than this (each bounds its own waits well below it).
CHECK_TIMEOUT = 60.0

Check = Callable[[Deployment], CheckResult | Awaitable[CheckResult]]


def plan(deployment: Deployment) -> list[tuple[str, Check]]:
    """The checks that apply to ``deployment``, in the order they are reported."""
    settings = deployment.settings
    checks: list[tuple[str, Check]] = [("Public URL", web_checks.check_public_url)]
    if settings.serves_https:
        checks.append(("TLS certificate", certificates.check_certificate_files))
    if deployment.url.scheme == "https":
        checks.append(("Served certificate", certificates.check_served_certificate))
    checks += [
        ("Public address for media", media_checks.check_public_address),
        ("UDP port range", media_checks.check_port_range),
    ]
    if settings.turn_urls:
        for url in settings.turn_urls:
            checks.append((f"TURN {url}", functools.partial(turn_check.check_turn_server, url=url)))
    else:
        checks.append(("TURN", turn_check.check_turn_configured))
    checks += [
        ("Database", database_checks.check_database),
        ("Server key file", key_checks.check_server_key),
        ("Key-encryption keys", key_checks.check_key_encryption_keys),
        ("Clock (database)", clocks.check_database_clock),
        ("Clock (web server)", clocks.check_web_clock),
    ]
    return checks


async def run_check(name: str, check: Check, deployment: Deployment) -> CheckResult:
    """The check's result; a check that fails to run says why in a WARNING line."""
    try:
        outcome = check(deployment)
        if isinstance(outcome, CheckResult):
            return outcome
        return await asyncio.wait_for(outcome, CHECK_TIMEOUT)
    except TimeoutError:
        return warning(name, f"could not be checked: no result within {CHECK_TIMEOUT:.0f} s")
    except Exception as exc:  # a bug or a surprise must not end the report
        return warning(name, f"could not be checked ({type(exc).__name__}: {reason(exc)})")


async def run(settings: Settings) -> int:
    """Run every check, print one line each and a summary; 0 if no PROBLEM, else 1."""
    deployment = await inspect(settings)
    print(f"Checking the Telecircle deployment at {deployment.url.text}", flush=True)
    results = []
    for name, check in plan(deployment):
        result = await run_check(name, check, deployment)
        print(result.line(), flush=True)
        results.append(result)
    problems = sum(result.status is Status.PROBLEM for result in results)
    warnings = sum(result.status is Status.WARNING for result in results)
    if problems:
        print(f"{problems} problem(s), {warnings} warning(s): fix the problems above.")
        return 1
    if warnings:
        print(f"No problems; {warnings} warning(s) to look at.")
    else:
        print("No problems found.")
    return 0
