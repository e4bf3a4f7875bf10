"""How to trust the server's self-signed certificate: ``/certificate`` shows its
fingerprint, the names it covers and the steps for common browsers and systems, and
``/certificate.crt`` downloads it. Both are public (a person needs them before they
can sign in) and show only what every TLS handshake already tells.

The certificate is read once, when the routes are added: ``telecircle serve`` makes
it (web/tls.py) before it builds the application. Without ``TLS_SELF_SIGNED`` the
page says there is nothing to install (404) and the download is not found.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web
from cryptography.hazmat.primitives import serialization

from telecircle.domain.access import Action
from telecircle.web.identity import requires
from telecircle.web.keys import SETTINGS
from telecircle.web.render import render
from telecircle.web.tls import CERTIFICATE_PAGE, fingerprint, names_in, read_self_signed

DOWNLOAD_PATH = CERTIFICATE_PAGE + ".crt"
# application/x-x509-ca-cert makes phones offer to install it rather than show text.
DOWNLOAD_TYPE = "application/x-x509-ca-cert"


@dataclass(frozen=True, slots=True)
class ServedCertificate:
    pem: bytes
    fingerprint: str
    names: tuple[str, ...]
    valid_until: str


SELF_SIGNED: web.AppKey[ServedCertificate | None] = web.AppKey("self_signed_certificate")


@requires(Action.VIEW_PUBLIC_PAGE)
async def certificate_page(request: web.Request) -> web.Response:
    served = request.app[SELF_SIGNED]
    return render(
        request,
        "certificate.html",
        status=200 if served is not None else 404,
        title="This server's certificate",
        certificate=served,
        download_path=DOWNLOAD_PATH,
    )


@requires(Action.VIEW_PUBLIC_PAGE)
async def certificate_download(request: web.Request) -> web.Response:
    served = request.app[SELF_SIGNED]
    if served is None:
        raise web.HTTPNotFound(text="This server has no self-signed certificate.")
    return web.Response(
        body=served.pem,
        content_type=DOWNLOAD_TYPE,
        headers={
            "Content-Disposition": 'attachment; filename="telecircle-certificate.crt"',
            "Cache-Control": "no-cache",
        },
    )


def add_routes(app: web.Application) -> None:
    settings = app[SETTINGS]
    certificate = read_self_signed(settings) if settings.tls_self_signed else None
    app[SELF_SIGNED] = (
        None
        if certificate is None
        else ServedCertificate(
            pem=certificate.public_bytes(serialization.Encoding.PEM),
            fingerprint=fingerprint(certificate),
            names=tuple(names_in(certificate)),
            valid_until=f"{certificate.not_valid_after_utc:%Y-%m-%d} (UTC)",
        )
    )
    app.router.add_get(CERTIFICATE_PAGE, certificate_page)
    app.router.add_get(DOWNLOAD_PATH, certificate_download)
