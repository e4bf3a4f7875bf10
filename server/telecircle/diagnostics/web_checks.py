"""The public URL: a scheme browsers give the camera to, set where it must be, answering."""

from __future__ import annotations

from telecircle.diagnostics.deployment import Deployment, Reach
from telecircle.diagnostics.results import CheckResult, Status, worst

NAME = "Public URL"
_HTTPS_FIX = (
    "serve HTTPS (TELECIRCLE_TLS_CERT_FILE and TELECIRCLE_TLS_KEY_FILE, a reverse proxy, "
    "or TELECIRCLE_TLS_SELF_SIGNED on a local network) and set TELECIRCLE_PUBLIC_URL to "
    "https://…"
)


def check_public_url(deployment: Deployment) -> CheckResult:
    """PROBLEM when browsers would refuse the camera (HTTP beyond this machine) or the
    links would be wrong (HTTP while Telecircle serves HTTPS); WARNING when the URL is
    not set beyond this machine, its name does not resolve, or nothing answers."""
    settings, url, web = deployment.settings, deployment.url, deployment.web
    found: list[tuple[Status, str]] = []
    if url.scheme not in ("http", "https") or not url.host:
        found.append(
            (Status.PROBLEM, f"{url.text} is not an http:// or https:// address with a host")
        )
    if not settings.public_url and deployment.reach is not Reach.LOOPBACK:
        found.append(
            (
                Status.WARNING,
                f"TELECIRCLE_PUBLIC_URL is not set, so links point at {url.text}: set it "
                "to the address patients open",
            )
        )
    if url.scheme == "http" and settings.serves_https:
        found.append(
            (
                Status.PROBLEM,
                "Telecircle serves HTTPS but the URL starts with http://, so links would "
                "not work: set TELECIRCLE_PUBLIC_URL to https://…",
            )
        )
    elif url.scheme == "http" and deployment.reach is not Reach.LOOPBACK:
        found.append(
            (
                Status.PROBLEM,
                "browsers give camera and microphone only to HTTPS pages (or localhost): "
                + _HTTPS_FIX,
            )
        )
    if deployment.reach is Reach.UNRESOLVED:
        found.append(
            (
                Status.WARNING,
                f"{url.host} does not resolve from this machine: check its DNS record",
            )
        )
    if web.error is not None:
        found.append(
            (
                Status.WARNING,
                f"no answer ({web.error}): is Telecircle (or its reverse proxy) running? "
                "Patients must be able to open it",
            )
        )
    elif web.status is not None and web.status >= 500:
        found.append(
            (
                Status.WARNING,
                f"it answers HTTP {web.status}: if a reverse proxy is in front, is "
                "Telecircle running behind it?",
            )
        )
    status = worst([status for status, _ in found])
    if not found:
        where = deployment.reach.value
        return CheckResult(NAME, status, f"{url.text} ({where}) answers (HTTP {web.status})")
    return CheckResult(NAME, status, f"{url.text}: " + "; ".join(text for _, text in found))
