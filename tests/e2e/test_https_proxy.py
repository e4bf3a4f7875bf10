"""End-to-end behind nginx over HTTPS: the deployment's own nginx site file
(deploy/nginx/telecircle.conf, with loopback ports and a test certificate) in front of a
real ``telecircle serve``; first-run setup, a therapist and a patient through
https://127.0.0.1:PORT in Chromium, seeing and hearing each other (the page over HTTP/2,
socket.io's websocket through nginx's upgrade). Then, through nginx: the server records
the client's real address (nginx is the trusted proxy, and a forged X-Forwarded-For is
not believed), a request body above the limit is refused by nginx before it reaches
Telecircle, every answer carries the security headers once, and plain HTTP redirects.

Chromium trusts the test certificate by its public key (``--ignore-certificate-errors-
spki-list``), nothing else; Python's clients trust the test CA (``SSL_CERT_FILE``).
"""

from __future__ import annotations

import asyncio
import http.client
import re
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser

from tests.certs import issue, make_ca, spki_sha256_base64, write_certificate, write_key
from tests.e2e.conftest import (
    RECONNECT_GRACE_S,
    Server,
    Site,
    _wait_healthy,
    free_port_on,
    running_server,
    stop_process,
)
from tests.e2e.room_page import CHROMIUM_ARGS, GREEN, RED, RGB, Browsers, eventually
from tests.e2e.site import prepare_clinic
from tests.e2e.test_room_browsers import open_room, patient_admitted
from tests.test_deploy_files import nginx_test_config

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
# The client's own loopback address, distinct from nginx's (127.0.0.1), so the test can
# tell whose address the server recorded.
CLIENT_ADDRESS = "127.0.0.9"
FORGED_ADDRESS = "203.0.113.9"
BODY_LIMIT = 256 * 1024  # client_max_body_size in the site file


@dataclass(frozen=True)
class Proxied:
    site: Site  # its base URL is nginx's: https://127.0.0.1:PORT
    https_port: int
    http_port: int
    ca_file: Path
    spki: str  # the server certificate's public key hash, for Chromium
    nginx_logs: Path

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def connect(self, source: str | None = None) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            "127.0.0.1",
            self.https_port,
            context=self.tls(),
            timeout=30,
            source_address=None if source is None else (source, 0),
        )


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory, chromium_path: Path) -> Iterator[Proxied]:
    if not Path(NGINX).exists():
        pytest.skip("nginx is not installed: apt-get install nginx")
    folder = tmp_path_factory.mktemp("https-proxy")
    ca = make_ca()
    key, certificate = issue(ca, ("127.0.0.1", "localhost"))
    ca_file = write_certificate(folder / "ca.pem", ca[1])
    cert_file = write_certificate(folder / "fullchain.pem", certificate, ca[1])
    key_file = write_key(folder / "privkey.pem", key)
    https_port, http_port = free_port_on(), free_port_on()
    public_url = f"https://127.0.0.1:{https_port}"
    environment = {
        "TELECIRCLE_TRUSTED_PROXIES": "127.0.0.1",
        "TELECIRCLE_SECURE_COOKIES": "true",
        "TELECIRCLE_RECONNECT_GRACE": str(RECONNECT_GRACE_S),
    }
    with ExitStack() as stack:
        backend = stack.enter_context(
            running_server(
                folder / "data",
                "127.0.0.1",
                environment,
                log=folder / "server.log",
                serve_args=("--public-url", public_url),
            )
        )
        prefix = folder / "nginx"
        nginx_conf = nginx_test_config(
            prefix,
            upstream_port=backend.port,
            https_port=https_port,
            http_port=http_port,
            cert_file=cert_file,
            key_file=key_file,
        )
        with (prefix / "logs" / "nginx.out").open("wb") as output:
            nginx = subprocess.Popen(
                [NGINX, "-p", str(prefix), "-c", str(nginx_conf), "-g", "daemon off;"],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        stack.callback(stop_process, nginx)
        context = ssl.create_default_context(cafile=str(ca_file))
        _wait_healthy(
            f"{public_url}/healthz",
            nginx,
            prefix / "logs" / "error.log",
            what="nginx",
            context=context,
        )
        # The site's pages are walked with urllib (tests/e2e/site.py), which verifies
        # with the default context: make it trust the test CA.
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("SSL_CERT_FILE", str(ca_file))
            admin, therapist = prepare_clinic(public_url, backend.log)
            yield Proxied(
                site=Site(Server(public_url, backend.data_dir, backend.log), admin, therapist),
                https_port=https_port,
                http_port=http_port,
                ca_file=ca_file,
                spki=spki_sha256_base64(certificate),
                nginx_logs=prefix / "logs",
            )


class TrustingBrowsers(Browsers):
    """Browsers that accept the test server certificate (and no other bad one)."""

    def __init__(self, chromium: Path, camera_dir: Path, stack: AsyncExitStack, spki: str):
        super().__init__(chromium, camera_dir, stack)
        self.spki = spki

    async def launch(
        self, name: str, colour: RGB, args: list[str] | None = None, noise: int = 0
    ) -> Browser:
        flags = [*(args or CHROMIUM_ARGS), f"--ignore-certificate-errors-spki-list={self.spki}"]
        return await super().launch(name, colour, flags, noise)


@pytest.fixture
async def browsers(
    chromium_path: Path, tmp_path: Path, proxied: Proxied
) -> AsyncIterator[TrustingBrowsers]:
    async with AsyncExitStack() as stack:
        pool = TrustingBrowsers(chromium_path, tmp_path, stack, proxied.spki)
        try:
            yield pool
        finally:
            await pool.close_all()


async def test_a_therapist_and_a_patient_see_each_other_through_nginx_over_https(
    proxied: Proxied, browsers: TrustingBrowsers, artifacts_dir: Path
) -> None:
    site = proxied.site
    room_id, alice = await open_room(site, browsers, "Through nginx", limit=3)
    bob = await patient_admitted(site, browsers, room_id, alice, "Bob", GREEN)
    await alice.wait_remote_names({"Bob"})
    await bob.wait_remote_names({"Alice"})
    await alice.wait_colour("Bob", GREEN)
    await bob.wait_colour("Alice", RED)
    await alice.wait_hears("Bob")
    await bob.wait_hears("Alice")
    for page in (alice, bob):
        await page.screenshot(artifacts_dir, "https-proxy")
        assert page.page.url.startswith(f"https://127.0.0.1:{proxied.https_port}/")
        assert await page.page.evaluate("window.isSecureContext")
        # The page came over HTTP/2 from nginx; socket.io over a websocket through it.
        protocol = await page.page.evaluate(
            "performance.getEntriesByType('navigation')[0].nextHopProtocol"
        )
        assert protocol == "h2"
        sockets: list[str] = await page.page.evaluate(
            "(window.__telecircleTestSockets || []).map((s) => s.url)"
        )
        assert any(
            url.startswith(f"wss://127.0.0.1:{proxied.https_port}/socket.io/") for url in sockets
        ), sockets
    # nginx logs a websocket when it closes: close the pages, then read its log.
    for page in (alice, bob):
        await page.page.context.close()
    upgraded = re.compile(r'"GET /socket\.io/\?[^"]*transport=websocket[^"]*" 101 ')
    await eventually(
        lambda: asyncio.to_thread((proxied.nginx_logs / "access.log").read_text),
        lambda log: len(upgraded.findall(log)) >= 2,
        15,
        "nginx logging the websockets it upgraded",
    )


async def test_a_client_outside_the_web_server_keeps_its_own_address(proxied: Proxied) -> None:
    # A failed sign-in from the client's own address, with a forged X-Forwarded-For.
    connection = proxied.connect(source=CLIENT_ADDRESS)
    try:
        connection.request("GET", "/login")
        response = connection.getresponse()
        page = response.read().decode()
        assert response.status == 200
        cookie = response.getheader("Set-Cookie", "").split(";", 1)[0]
        token = re.search(r'name="csrf_token" value="([^"]*)"', page)
        assert cookie and token is not None
        body = f"csrf_token={token.group(1)}&username=nobody-here&password=wrong+guess"
        connection.request(
            "POST",
            "/login",
            body=body,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Cookie": cookie,
                "X-Forwarded-For": FORGED_ADDRESS,
            },
        )
        response = connection.getresponse()
        response.read()
        assert response.status == 401
    finally:
        connection.close()
    audit = proxied.site.admin.client.get("/admin/audit?action=login_failed")
    assert audit.status == 200
    assert f"<td>{CLIENT_ADDRESS}</td>" in audit.text
    assert FORGED_ADDRESS not in audit.text
    assert "<td>127.0.0.1</td>" not in audit.text  # not nginx's own address either


@pytest.mark.parametrize(("size", "refused_by_nginx"), [(BODY_LIMIT + 4096, True), (4096, False)])
async def test_nginx_refuses_a_request_body_above_the_limit(
    proxied: Proxied, size: int, refused_by_nginx: bool
) -> None:
    connection = proxied.connect()
    try:
        connection.request(
            "POST",
            "/login",
            body=b"username=" + b"x" * size,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        response = connection.getresponse()
        text = response.read().decode(errors="replace")
    finally:
        connection.close()
    if refused_by_nginx:
        assert response.status == 413
        assert "nginx" in text
        assert response.getheader("X-Telecircle-Refused") is None
    else:
        # Telecircle answers it itself (no CSRF token: refused by its guard).
        assert response.status == 403
        assert response.getheader("X-Telecircle-Refused") == "csrf"
    # nginx's own answers carry the security headers too.
    assert response.getheader("Strict-Transport-Security")
    assert response.getheader("Content-Security-Policy")


async def test_every_answer_carries_the_security_headers_once_and_http_redirects(
    proxied: Proxied,
) -> None:
    connection = proxied.connect()
    try:
        connection.request("GET", "/login")
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    assert response.status == 200
    headers = response.headers
    for name in (
        "Strict-Transport-Security",
        "Content-Security-Policy",
        "X-Content-Type-Options",
        "Referrer-Policy",
        "Permissions-Policy",
        "X-Frame-Options",
    ):
        assert len(headers.get_all(name) or []) == 1, name
    assert "camera=(self)" in headers["Permissions-Policy"]
    assert "Secure" in (headers["Set-Cookie"] or "")  # the public URL is https
    plain = http.client.HTTPConnection("127.0.0.1", proxied.http_port, timeout=30)
    try:
        plain.request("GET", "/login?next=%2F")
        redirect = plain.getresponse()
        redirect.read()
    finally:
        plain.close()
    assert redirect.status == 301
    assert redirect.getheader("Location") == "https://127.0.0.1/login?next=%2F"
