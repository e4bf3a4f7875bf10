"""HTTPS served directly: configured certificate files checked at start, a self-signed
certificate made on first run and reused, the page that explains how to trust it, and
``telecircle serve`` refusing bad files with a message that names the setting."""

from __future__ import annotations

import contextlib
import datetime
import http.client
import os
import re
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from telecircle.config import ConfigError, Settings, load_settings
from telecircle.web import certificate_page
from telecircle.web.app import create_app
from telecircle.web.tls import (
    CERTIFICATE_PAGE,
    TlsConfigError,
    ensure_self_signed,
    fingerprint,
    names_in,
    self_signed_files,
    server_ssl_context,
)
from tests.certs import CA, issue, make_ca, new_key, write_certificate, write_key
from tests.conftest import free_port
from tests.database_template import create_at_newest_revision

NOW = datetime.datetime.now(datetime.UTC)
DAY = datetime.timedelta(days=1)
REPO = Path(__file__).resolve().parents[2]


# ---- configured certificate and key files ----------------------------------------------


@pytest.fixture
def ca() -> CA:
    return make_ca()


def files_settings(tmp_path: Path, cert: Path, key: Path, **overrides: Any) -> Settings:
    return load_settings(
        data_dir=tmp_path / "data", tls_cert_file=cert, tls_key_file=key, **overrides
    )


def refusal(settings: Settings) -> str:
    with pytest.raises(TlsConfigError) as caught:
        server_ssl_context(settings, say=lambda line: None)
    return caught.value.message


def test_plain_http_without_tls_settings(tmp_path: Path) -> None:
    assert server_ssl_context(load_settings(data_dir=tmp_path)) is None
    assert not (tmp_path / "tls").exists()


def test_a_valid_certificate_chain_and_key_give_a_tls_context(tmp_path: Path, ca: CA) -> None:
    key, certificate = issue(ca)
    cert_file = write_certificate(tmp_path / "fullchain.pem", certificate, ca[1])
    key_file = write_key(tmp_path / "privkey.pem", key)
    context = server_ssl_context(files_settings(tmp_path, cert_file, key_file))
    assert isinstance(context, ssl.SSLContext)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


def test_missing_files_are_refused_by_the_settings(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"TELECIRCLE_TLS_CERT_FILE.*does not exist"):
        files_settings(tmp_path, tmp_path / "nope.pem", tmp_path / "nope.key")
    with pytest.raises(ConfigError, match="TELECIRCLE_TLS_KEY_FILE"):
        load_settings(data_dir=tmp_path, tls_cert_file=tmp_path / "x.pem")


def test_a_certificate_that_vanished_or_is_no_file_is_refused_at_start(
    tmp_path: Path, ca: CA
) -> None:
    key, certificate = issue(ca)
    cert_file = write_certificate(tmp_path / "cert.pem", certificate)
    key_file = write_key(tmp_path / "key.pem", key)
    settings = files_settings(tmp_path, cert_file, key_file)
    cert_file.unlink()
    message = refusal(settings)
    assert message.startswith("TELECIRCLE_TLS_CERT_FILE: cannot read")
    assert "No such file" in message
    cert_file.mkdir()  # not a file (root reads any file: a folder stands for "unreadable")
    assert refusal(settings).startswith("TELECIRCLE_TLS_CERT_FILE:")
    assert "not a regular file" in refusal(settings)
    cert_file.rmdir()
    os.mkfifo(cert_file)  # must not hang the start
    assert "not a regular file" in refusal(settings)


def test_a_file_without_a_certificate_is_refused(tmp_path: Path, ca: CA) -> None:
    key, _ = issue(ca)
    cert_file = tmp_path / "cert.pem"
    cert_file.write_text("not a certificate\n")
    message = refusal(files_settings(tmp_path, cert_file, write_key(tmp_path / "k.pem", key)))
    assert message.startswith("TELECIRCLE_TLS_CERT_FILE:")
    assert "no PEM certificate" in message


@pytest.mark.parametrize(
    ("not_before", "not_after", "words"),
    [
        (NOW - 20 * DAY, NOW - DAY, "expired on"),
        (NOW + DAY, NOW + 20 * DAY, "valid only from"),
    ],
)
def test_a_certificate_not_valid_now_is_refused(
    tmp_path: Path,
    ca: CA,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
    words: str,
) -> None:
    key, certificate = issue(ca, not_before=not_before, not_after=not_after)
    settings = files_settings(
        tmp_path,
        write_certificate(tmp_path / "cert.pem", certificate),
        write_key(tmp_path / "key.pem", key),
    )
    message = refusal(settings)
    assert message.startswith("TELECIRCLE_TLS_CERT_FILE:")
    assert words in message


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o644])
def test_a_key_other_users_may_read_is_refused(tmp_path: Path, ca: CA, mode: int) -> None:
    key, certificate = issue(ca)
    key_file = write_key(tmp_path / "key.pem", key, mode=mode)
    message = refusal(
        files_settings(tmp_path, write_certificate(tmp_path / "cert.pem", certificate), key_file)
    )
    assert message.startswith("TELECIRCLE_TLS_KEY_FILE:")
    assert f"chmod 600 {key_file}" in message
    assert f"{mode:04o}" in message


def test_a_key_that_is_not_the_certificates_is_refused(tmp_path: Path, ca: CA) -> None:
    _, certificate = issue(ca)
    other_key = new_key()
    message = refusal(
        files_settings(
            tmp_path,
            write_certificate(tmp_path / "cert.pem", certificate),
            write_key(tmp_path / "key.pem", other_key),
        )
    )
    assert message.startswith("TELECIRCLE_TLS_KEY_FILE:")
    assert "does not belong to the certificate" in message


def test_a_key_with_a_passphrase_or_no_key_is_refused(tmp_path: Path, ca: CA) -> None:
    key, certificate = issue(ca)
    cert_file = write_certificate(tmp_path / "cert.pem", certificate)
    locked = write_key(tmp_path / "locked.pem", key, passphrase=b"secret words")
    message = refusal(files_settings(tmp_path, cert_file, locked))
    assert message.startswith("TELECIRCLE_TLS_KEY_FILE:")
    assert "passphrase" in message
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    garbage.chmod(0o600)
    assert "no PEM private key" in refusal(files_settings(tmp_path, cert_file, garbage))


# ---- the self-signed certificate -------------------------------------------------------


def self_signed_settings(tmp_path: Path, **overrides: Any) -> Settings:
    options: dict[str, Any] = {"public_url": "https://telecircle.test:8443", **overrides}
    return load_settings(data_dir=tmp_path / "data", tls_self_signed=True, **options)


def test_first_run_makes_an_owner_only_ecdsa_certificate_and_prints_its_fingerprint(
    tmp_path: Path,
) -> None:
    settings = self_signed_settings(tmp_path, host="192.0.2.7")
    said: list[str] = []
    assert isinstance(server_ssl_context(settings, say=said.append), ssl.SSLContext)
    cert_file, key_file = self_signed_files(settings)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_file.parent.stat().st_mode) == 0o700
    certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
    public_key = certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    assert public_key.curve.name == "secp256r1"
    assert set(names_in(certificate)) >= {
        "telecircle.test",
        "localhost",
        "127.0.0.1",
        "192.0.2.7",
    }
    assert certificate.issuer == certificate.subject
    text = "\n".join(said)
    assert "made now" in text
    assert f"SHA-256 fingerprint {fingerprint(certificate)}" in text
    assert re.search(r"fingerprint ([0-9A-F]{2}:){31}[0-9A-F]{2}\b", text)
    assert f"https://telecircle.test:8443{CERTIFICATE_PAGE}" in text


def test_later_starts_reuse_it_until_the_name_changes_or_it_expires(tmp_path: Path) -> None:
    settings = self_signed_settings(tmp_path)
    first = ensure_self_signed(settings, NOW)
    again = ensure_self_signed(settings, NOW)
    assert again.made_because is None
    assert fingerprint(again.certificate) == fingerprint(first.certificate)
    renamed = self_signed_settings(tmp_path, public_url="https://group.example.org")
    moved = ensure_self_signed(renamed, NOW)
    assert moved.made_because is not None and "public address changed" in moved.made_because
    assert "group.example.org" in names_in(moved.certificate)
    later = ensure_self_signed(renamed, moved.certificate.not_valid_after_utc)
    assert later.made_because is not None and "expired" in later.made_because
    assert fingerprint(later.certificate) != fingerprint(moved.certificate)


def test_a_damaged_self_signed_certificate_is_made_again(tmp_path: Path) -> None:
    settings = self_signed_settings(tmp_path)
    first = ensure_self_signed(settings, NOW)
    first.cert_file.write_text("garbage")
    again = ensure_self_signed(settings, NOW)
    assert again.made_because is not None and "damaged" in again.made_because
    write_key(first.key_file, new_key())  # a key that is not the certificate's
    assert "did not match" in (ensure_self_signed(settings, NOW).made_because or "")


def test_a_self_signed_key_others_may_read_is_refused(tmp_path: Path) -> None:
    settings = self_signed_settings(tmp_path)
    made = ensure_self_signed(settings, NOW)
    made.key_file.chmod(0o644)
    message = refusal(settings)
    assert message.startswith("TELECIRCLE_TLS_SELF_SIGNED:")
    assert f"chmod 600 {made.key_file}" in message
    made.key_file.unlink()
    made.key_file.symlink_to(made.cert_file)
    assert "not a regular file" in refusal(settings)


# ---- serving HTTPS, and the certificate page -------------------------------------------


def has_route(app: web.Application, path: str) -> bool:
    return any(r.resource is not None and r.resource.canonical == path for r in app.router.routes())


@pytest.fixture
async def https_server(tmp_path: Path) -> AsyncIterator[tuple[Settings, str]]:
    port = free_port()
    settings = self_signed_settings(
        tmp_path, port=port, public_url=f"https://127.0.0.1:{port}", tune_garbage_collector=False
    )
    context = server_ssl_context(settings, say=lambda line: None)
    create_at_newest_revision(settings.effective_database_url)  # SQLite: a copy of the template
    app = create_app(settings)
    # Until web/app.py wires the page itself (it then already has the routes).
    if not has_route(app, CERTIFICATE_PAGE):
        certificate_page.add_routes(app)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    try:
        yield settings, f"https://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_the_server_answers_over_https_to_a_client_that_trusts_its_certificate(
    https_server: tuple[Settings, str],
) -> None:
    settings, url = https_server
    cert_file, _ = self_signed_files(settings)
    trusting = ssl.create_default_context(cafile=str(cert_file))
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/healthz", ssl=trusting) as response:
            assert response.status == 200
        # A client that does not trust it is refused by its own verification.
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with session.get(f"{url}/healthz", ssl=ssl.create_default_context()):
                pass


async def test_the_certificate_page_shows_the_fingerprint_and_offers_the_download(
    https_server: tuple[Settings, str],
) -> None:
    settings, url = https_server
    cert_file, _ = self_signed_files(settings)
    certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
    trusting = ssl.create_default_context(cafile=str(cert_file))
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}{CERTIFICATE_PAGE}", ssl=trusting) as response:
            assert response.status == 200
            page = await response.text()
        assert fingerprint(certificate) in page
        for words in ("Chrome", "Firefox", "Safari", "Windows", "macOS", "Linux"):
            assert words in page
        async with session.get(f"{url}{CERTIFICATE_PAGE}.crt", ssl=trusting) as response:
            assert response.status == 200
            assert response.content_type == "application/x-x509-ca-cert"
            assert "attachment" in response.headers["Content-Disposition"]
            downloaded = x509.load_pem_x509_certificate(await response.read())
        assert downloaded == certificate


async def test_without_a_self_signed_certificate_the_page_has_nothing_to_install(
    tmp_path: Path,
) -> None:
    from tests.conftest import start_server

    running = await start_server(tmp_path)
    try:
        app = running.app
        if not has_route(app, CERTIFICATE_PAGE):
            pytest.skip("web/app.py does not wire the certificate page yet")
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{running.url}{CERTIFICATE_PAGE}") as response:
                assert response.status == 404
                assert "no self-signed certificate" in await response.text()
            async with session.get(f"{running.url}{CERTIFICATE_PAGE}.crt") as response:
                assert response.status == 404
    finally:
        await running.runner.cleanup()


# ---- telecircle serve ------------------------------------------------------------------


def telecircle() -> str:
    return str(Path(sys.executable).parent / "telecircle")


@pytest.fixture
def serve_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TELECIRCLE_")}
    env["PYTHONUNBUFFERED"] = "1"
    yield env


def test_serve_refuses_a_bad_key_with_a_message_naming_the_setting(
    tmp_path: Path,
    ca: CA,
    serve_env: dict[str, str],
) -> None:
    key, certificate = issue(ca)
    cert_file = write_certificate(tmp_path / "cert.pem", certificate)
    key_file = write_key(tmp_path / "key.pem", key, mode=0o644)
    result = subprocess.run(
        [telecircle(), "--data-dir", str(tmp_path / "data"), "serve", "--port", str(free_port())],
        env={
            **serve_env,
            "TELECIRCLE_TLS_CERT_FILE": str(cert_file),
            "TELECIRCLE_TLS_KEY_FILE": str(key_file),
        },
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 2, result.stderr
    assert "TELECIRCLE_TLS_KEY_FILE" in result.stderr
    assert f"chmod 600 {key_file}" in result.stderr


def test_serve_with_a_self_signed_certificate_prints_its_fingerprint_and_serves_https(
    tmp_path: Path, serve_env: dict[str, str]
) -> None:
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [telecircle(), "--data-dir", str(tmp_path / "data"), "serve", "--port", str(port)],
            env={**serve_env, "TELECIRCLE_TLS_SELF_SIGNED": "true"},
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    try:
        cert_file = tmp_path / "data" / "tls" / "certificate.pem"
        deadline = time.monotonic() + 60
        answered = None
        while time.monotonic() < deadline and answered is None:
            assert process.poll() is None, log.read_text()
            if cert_file.exists():
                with contextlib.suppress(OSError):
                    answered = _https_status(port, cert_file)
            time.sleep(0.2)
        assert answered == 200, log.read_text()
        certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
        assert f"SHA-256 fingerprint {fingerprint(certificate)}" in log.read_text()
    finally:
        process.terminate()
        process.wait(timeout=30)


def _https_status(port: int, cert_file: Path) -> int:
    context = ssl.create_default_context(cafile=str(cert_file))
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status
    finally:
        connection.close()
