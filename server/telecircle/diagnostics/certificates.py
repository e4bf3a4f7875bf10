"""Certificates: the configured files, and what the public URL actually serves.

A certificate must be valid now and for a while yet (:data:`EXPIRY_WARNING`), name the
public URL's host, and be trusted by browsers; a self-signed one works only where each
browser has been told to trust it, so it is a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import ssl
from dataclasses import dataclass

from cryptography import x509

from telecircle.diagnostics.deployment import Deployment
from telecircle.diagnostics.results import (
    CheckResult,
    Status,
    ok,
    problem,
    reason,
    warning,
    worst,
)
from telecircle.web.tls import TlsConfigError, check_key_file, self_signed_files

EXPIRY_WARNING = datetime.timedelta(days=14)
CONNECT_TIMEOUT = 5.0
# OpenSSL's verification result for a server certificate that signed itself (a root
# the server sends along, code 19, is an unknown authority: browsers refuse it outright).
_SELF_SIGNED_CODES = frozenset({18})
# Expiry is reported by assess(); saying it again as "not trusted" adds nothing.
_VALIDITY_CODES = frozenset({9, 10})


@dataclass(frozen=True, slots=True)
class Finding:
    status: Status
    text: str


def names_in(certificate: x509.Certificate) -> list[str]:
    """The DNS names and IP addresses the certificate is for (its subjectAltName)."""
    try:
        alternative = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
    except x509.ExtensionNotFound:
        return []
    dns: list[str] = alternative.get_values_for_type(x509.DNSName)
    ips = [str(ip) for ip in alternative.get_values_for_type(x509.IPAddress)]
    return [name.lower() for name in dns] + ips


def matches_host(certificate: x509.Certificate, host: str) -> bool:
    """Whether a browser opening ``host`` accepts the certificate's names (RFC 6125:
    subjectAltName only; a wildcard stands for exactly one leftmost label)."""
    host = host.lower().rstrip(".")
    try:
        wanted = ipaddress.ip_address(host)
    except ValueError:
        wanted = None
    for name in names_in(certificate):
        if wanted is not None:
            try:
                if ipaddress.ip_address(name) == wanted:
                    return True
            except ValueError:
                continue
        elif name.startswith("*."):
            label, _, rest = host.partition(".")
            if label and rest == name[2:]:
                return True
        elif name.rstrip(".") == host:
            return True
    return False


def assess(certificate: x509.Certificate, host: str, now: datetime.datetime) -> list[Finding]:
    """What is wrong with ``certificate`` for ``host`` at ``now``: not yet valid,
    expired or expiring within :data:`EXPIRY_WARNING`, or not naming ``host``."""
    found: list[Finding] = []
    end = certificate.not_valid_after_utc
    if certificate.not_valid_before_utc > now:
        found.append(
            Finding(
                Status.PROBLEM,
                f"it is valid only from {certificate.not_valid_before_utc:%Y-%m-%d %H:%M} "
                "UTC: check this machine's clock, or use a certificate valid now",
            )
        )
    if end <= now:
        found.append(
            Finding(
                Status.PROBLEM,
                f"it expired on {end:%Y-%m-%d %H:%M} UTC: renew it (e.g. certbot renew) "
                "and restart Telecircle (or the reverse proxy)",
            )
        )
    elif end - now < EXPIRY_WARNING:
        days = (end - now).days
        found.append(
            Finding(
                Status.WARNING,
                f"it expires on {end:%Y-%m-%d %H:%M} UTC, in {days} day(s): renew it soon "
                "(e.g. certbot renew) and restart Telecircle (or the reverse proxy)",
            )
        )
    if not matches_host(certificate, host):
        names = ", ".join(names_in(certificate)) or "no name (it has no subjectAltName)"
        found.append(
            Finding(
                Status.PROBLEM,
                f"it is for {names}, not for {host}, the host of TELECIRCLE_PUBLIC_URL: "
                "browsers refuse it. Get a certificate for that name, or correct "
                "TELECIRCLE_PUBLIC_URL",
            )
        )
    return found


def summary(certificate: x509.Certificate) -> str:
    names = ", ".join(names_in(certificate)) or "no name"
    return f"for {names}, valid until {certificate.not_valid_after_utc:%Y-%m-%d} UTC"


def _result(name: str, found: list[Finding], fine: str) -> CheckResult:
    if not found:
        return ok(name, fine)
    return CheckResult(name, worst([f.status for f in found]), "; ".join(f.text for f in found))


def check_certificate_files(deployment: Deployment) -> CheckResult:
    """The certificate Telecircle serves itself: TLS_CERT_FILE with TLS_KEY_FILE (the
    key must be owner-only and belong to the certificate), or the self-signed one."""
    settings = deployment.settings
    now = datetime.datetime.now(datetime.UTC)
    if settings.tls_files_given:
        name = "TLS certificate file"
        cert_file, key_file = settings.tls_cert_file, settings.tls_key_file
        try:
            certificate = _first_certificate(cert_file.read_bytes())
        except OSError as exc:
            return problem(
                name,
                f"cannot read TELECIRCLE_TLS_CERT_FILE {cert_file} ({reason(exc)}): check "
                "the path, and that the account Telecircle runs as may read it",
            )
        if certificate is None:
            return problem(
                name,
                f"TELECIRCLE_TLS_CERT_FILE {cert_file} holds no PEM certificate: give the "
                "certificate chain file (e.g. fullchain.pem from Let's Encrypt)",
            )
        found = assess(certificate, deployment.url.host, now)
        try:
            # The refusals `telecircle serve` gives: unsafe mode, passphrase, wrong key.
            check_key_file(key_file, cert_file)
        except TlsConfigError as exc:
            found.append(Finding(Status.PROBLEM, exc.message))
        return _result(
            name, found, f"{cert_file}: {summary(certificate)}; its key {key_file} matches"
        )
    name = "Self-signed certificate"
    cert_file, _ = self_signed_files(settings)
    try:
        certificate = _first_certificate(cert_file.read_bytes())
    except FileNotFoundError:
        return ok(name, f"not made yet: Telecircle makes {cert_file} when it starts")
    except OSError as exc:
        return problem(name, f"cannot read {cert_file} ({reason(exc)})")
    if certificate is None:
        return warning(name, f"{cert_file} is damaged: Telecircle makes a new one when it starts")
    found = [
        Finding(
            Status.WARNING,
            "browsers warn until each one is told to trust it (fine for trying Telecircle "
            "on a local network; give patients a certificate from a public authority: "
            "TELECIRCLE_TLS_CERT_FILE or a reverse proxy)",
        )
    ]
    found += assess(certificate, deployment.url.host, now)
    return _result(name, found, "")


def _first_certificate(data: bytes) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificates(data)[0]
    except ValueError:
        return None


async def fetch_certificate(host: str, port: int) -> bytes:
    """The certificate (DER) served at ``host:port``, not verified."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=context, server_hostname=host),
        CONNECT_TIMEOUT,
    )
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der: bytes | None = ssl_object.getpeercert(binary_form=True) if ssl_object else None
    finally:
        await _close(writer)
    if not der:
        raise ssl.SSLError("the server sent no certificate")
    return der


async def verification_error(host: str, port: int) -> ssl.SSLCertVerificationError | None:
    """Why this machine's trusted authorities refuse the chain served at ``host:port``
    (names are left to :func:`assess`), or None if they accept it."""
    context = ssl.create_default_context()
    context.check_hostname = False
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=context, server_hostname=host),
            CONNECT_TIMEOUT,
        )
    except ssl.SSLCertVerificationError as exc:
        return exc
    await _close(writer)
    return None


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), CONNECT_TIMEOUT)


async def check_served_certificate(deployment: Deployment) -> CheckResult:
    """Connect to the public URL (https) and judge the certificate it serves, as a
    browser would: valid, naming the host, trusted (self-signed: a warning)."""
    url = deployment.url
    name = f"Certificate served at {url.host}:{url.port}"
    try:
        der = await fetch_certificate(url.host, url.port)
        refusal = await verification_error(url.host, url.port)
    except (OSError, TimeoutError, ssl.SSLError) as exc:
        why = (
            f"no answer within {CONNECT_TIMEOUT:.0f} s"
            if isinstance(exc, TimeoutError)
            else (reason(exc))
        )
        return warning(
            name,
            f"not checked: cannot connect with TLS ({why}). Is Telecircle (or its reverse "
            "proxy) running and serving HTTPS there?",
        )
    certificate = x509.load_der_x509_certificate(der)
    now = datetime.datetime.now(datetime.UTC)
    found = assess(certificate, url.host, now)
    if refusal is not None and refusal.verify_code not in _VALIDITY_CODES:
        if refusal.verify_code in _SELF_SIGNED_CODES:
            found.append(
                Finding(
                    Status.WARNING,
                    "it is self-signed: browsers warn until each one is told to trust it "
                    "(fine for trying Telecircle on a local network; give patients a "
                    "certificate from a public authority)",
                )
            )
        else:
            found.append(
                Finding(
                    Status.PROBLEM,
                    f"browsers will not trust it ({refusal.verify_message}): serve the "
                    "whole chain (fullchain.pem) of a certificate from a public authority",
                )
            )
    settings = deployment.settings
    if settings.tls_files_given:
        configured = _configured_certificate(deployment)
        if configured is not None and configured != certificate:
            found.append(
                Finding(
                    Status.WARNING,
                    "it is not the one in TELECIRCLE_TLS_CERT_FILE: restart Telecircle "
                    "after renewing, or check what answers at this address",
                )
            )
    return _result(name, found, summary(certificate) + ", trusted")


def _configured_certificate(deployment: Deployment) -> x509.Certificate | None:
    try:
        return _first_certificate(deployment.settings.tls_cert_file.read_bytes())
    except OSError:
        return None
