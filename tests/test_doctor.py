"""``telecircle doctor``: a healthy deployment on loopback, then one fault at a time.

The healthy deployment is real: Telecircle serving HTTPS with a certificate from a test
authority (trusted through ``SSL_CERT_FILE``), a coturn on loopback with the TURN REST
scheme, a UDP port range, a migrated database and its key files. Each fault test starts
from a deployment that is sound but not running (its public URL does not answer, which
is only a warning), breaks one thing, and reads the doctor's line about it.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from sqlalchemy import create_engine, inspect

from telecircle.cli import main
from telecircle.config import load_settings
from telecircle.crypto.key_store import key_file_name, open_key_store
from telecircle.crypto.server_key import load_or_create_server_key
from telecircle.diagnostics import certificates, clocks, media_checks, turn_check, web_checks
from telecircle.diagnostics.deployment import Deployment, Reach, WebAnswer, parse_public_url
from telecircle.diagnostics.results import Status
from telecircle.storage import migrations
from telecircle.web.app import create_app
from telecircle.web.tls import ensure_self_signed, server_ssl_context

from .certs import CA, DAY, issue, make_ca, write_certificate, write_key
from .conftest import free_port
from .coturn import start_turnserver, stop_turnserver

TURN_SECRET = secrets.token_hex(32)
# coturn's relay ports: above Linux's ephemeral range, apart from tests/e2e/turn_lab.py's.
RELAY_PORTS = (61200, 61299)
# Small limits, so that a port range of a few dozen ports is big enough.
SMALL_SERVER = {
    "TELECIRCLE_MAX_LIVE_SESSIONS": "1",
    "TELECIRCLE_ROOM_LIMIT_CEILING": "2",
    "TELECIRCLE_DEFAULT_ROOM_LIMIT": "2",
}
PORTS_NEEDED = 6  # deployment_config.ports_needed(1, 2, 1)


# ---- certificates ----------------------------------------------------------------------


def make_server_certificate(
    folder: Path,
    names: tuple[str, ...],
    *,
    authority: CA | None,
    valid_for: datetime.timedelta = 90 * DAY,
    valid_from: datetime.timedelta = -DAY,
) -> tuple[Path, Path]:
    """A certificate for ``names`` (signed by ``authority``, or self-signed) and its key
    (mode 0600), valid from now + ``valid_from`` for ``valid_for``; returns the chain
    and key files."""
    start = datetime.datetime.now(datetime.UTC) + valid_from
    key, certificate = issue(authority, names, not_before=start, not_after=start + valid_for)
    folder.mkdir(parents=True, exist_ok=True)
    chain = [certificate] + ([authority[1]] if authority else [])
    cert_file = write_certificate(folder / f"{secrets.token_hex(4)}-cert.pem", *chain)
    return cert_file, write_key(folder / f"{cert_file.stem}-key.pem", key)


def trust(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, authority: CA) -> None:
    """This machine trusts ``authority`` (alone) for this test."""
    trusted = write_certificate(tmp_path / "authorities.pem", authority[1])
    monkeypatch.setenv("SSL_CERT_FILE", str(trusted))


def serving_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """A TLS context serving exactly these files (no checks: faults are served too)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


# ---- coturn ----------------------------------------------------------------------------


class Coturn:
    """A real coturn on 127.0.0.1 (UDP and TCP), with the TURN REST scheme."""

    def __init__(self, workdir: Path, secret: str) -> None:
        self.workdir = workdir
        self.secret = secret
        self.port = free_udp_and_tcp_port()
        self.tls_port = free_port()
        self.log = workdir / "turnserver.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.tls: tuple[Path, Path] | None = None

    def urls(self) -> str:
        """TURN over UDP and TCP, and over TLS when started with a certificate."""
        base = f"turn:127.0.0.1:{self.port}"
        urls = [f"{base}?transport=udp", f"{base}?transport=tcp"]
        if self.tls is not None:
            urls.append(f"turns:127.0.0.1:{self.tls_port}?transport=tcp")
        return ",".join(urls)

    def start(self, tls: tuple[Path, Path] | None = None) -> None:
        """Start coturn; with ``tls`` (certificate chain, key), TURN over TLS as well."""
        self.tls = tls
        config = self.workdir / "turnserver.conf"
        low, high = RELAY_PORTS
        if tls is None:
            secure = ["no-tls"]
        else:
            secure = [f"tls-listening-port={self.tls_port}", f"cert={tls[0]}", f"pkey={tls[1]}"]
        config.write_text(
            "\n".join(
                [
                    "listening-ip=127.0.0.1",
                    f"listening-port={self.port}",
                    "relay-ip=127.0.0.1",
                    f"min-port={low}",
                    f"max-port={high}",
                    "realm=telecircle.test",
                    "use-auth-secret",
                    f"static-auth-secret={self.secret}",
                    *secure,
                    "no-dtls",
                    "no-cli",
                    f"userdb={self.workdir / 'turndb'}",
                    f"pidfile={self.workdir / 'turnserver.pid'}",
                    "log-file=stdout",
                    "simple-log",
                    "",
                ]
            )
        )
        config.chmod(0o600)
        ports = (self.port, self.tls_port) if tls else (self.port,)
        self.process = start_turnserver(config, self.log, lambda: listening(ports))

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_turnserver(process)


def listening(ports: tuple[int, ...]) -> bool:
    """Whether something accepts TCP connections on each of ``ports`` on 127.0.0.1."""
    try:
        for port in ports:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
    except OSError:
        return False
    return True


def free_udp_and_tcp_port() -> int:
    for _ in range(50):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free for both UDP and TCP on 127.0.0.1")


@pytest.fixture
def coturn_stopped(tmp_path: Path) -> Iterator[Coturn]:
    """A coturn for the test to start (and stopped after it)."""
    if shutil.which("turnserver") is None:
        pytest.skip("coturn is not installed: apt-get install coturn")
    workdir = tmp_path / "coturn"
    workdir.mkdir()
    server = Coturn(workdir, TURN_SECRET)
    yield server
    server.stop()


@pytest.fixture
def coturn(coturn_stopped: Coturn) -> Coturn:
    """A running coturn: TURN over UDP and TCP."""
    coturn_stopped.start()
    return coturn_stopped


# ---- a deployment ----------------------------------------------------------------------


def free_port_range(size: int) -> tuple[int, int]:
    """``size`` consecutive UDP ports on 127.0.0.1, free now, below the ephemeral range."""
    rng = secrets.SystemRandom()
    for _ in range(100):
        low = rng.randrange(20000, 32000 - size)
        with ExitStack() as stack:
            try:
                for port in range(low, low + size):
                    sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                    sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return low, low + size - 1
    raise RuntimeError("no free UDP port range found")


def prepare_data(data: Path) -> None:
    """What a first start leaves: the server key, the key-encryption keys, the schema."""
    settings = load_settings(data_dir=data)
    load_or_create_server_key(settings.effective_server_key_file)
    open_key_store(settings.effective_key_dir, create=True)
    asyncio.run(migrations.upgrade(settings.effective_database_url))


def clear_telecircle_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No TELECIRCLE_ setting from this machine's environment (the tests' own stay)."""
    for name in list(os.environ):
        if name.startswith("TELECIRCLE_") and not name.startswith("TELECIRCLE_TEST_"):
            monkeypatch.delenv(name)


@pytest.fixture
def sound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A sound deployment that is not running: returns its data folder."""
    clear_telecircle_environment(monkeypatch)
    data = tmp_path / "data"
    prepare_data(data)
    monkeypatch.setenv("TELECIRCLE_DATA_DIR", str(data))
    monkeypatch.setenv("TELECIRCLE_PUBLIC_URL", f"http://127.0.0.1:{free_port()}")
    for name, value in SMALL_SERVER.items():
        monkeypatch.setenv(name, value)
    return data


Report = dict[str, tuple[str, str]]


def parse_report(out: str) -> Report:
    """The doctor's lines as {check name: (status, message)}."""
    report: Report = {}
    for line in out.splitlines():
        status, _, rest = line.partition(" ")
        if status not in ("OK", "WARNING", "PROBLEM"):
            continue
        name, _, message = rest.strip().partition(": ")
        report[name] = (status, message)
    return report


def _answer(code: int, capsys: pytest.CaptureFixture[str]) -> tuple[int, Report, str]:
    out = capsys.readouterr().out
    print(out)  # shown when a test fails
    return code, parse_report(out), out


def doctor(capsys: pytest.CaptureFixture[str]) -> tuple[int, Report, str]:
    return _answer(main(["doctor"]), capsys)


async def doctor_in_thread(capsys: pytest.CaptureFixture[str]) -> tuple[int, Report, str]:
    """The doctor beside a server running on this test's event loop."""
    return _answer(await asyncio.to_thread(main, ["doctor"]), capsys)


async def serve_tls(runners: list[web.AppRunner], context: ssl.SSLContext) -> int:
    """A minimal HTTPS site on 127.0.0.1 with ``context``; returns its port."""

    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    runners.append(runner)
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    return port


# Serves a certificate and key file at ``host``, makes that the public URL and runs the
# doctor: its exit code, report and output, and the name of the served certificate's check.
DoctorServed = Callable[[tuple[Path, Path], str], Awaitable[tuple[int, Report, str, str]]]


@pytest.fixture
async def doctor_served(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> AsyncIterator[DoctorServed]:
    """See :data:`DoctorServed`; the HTTPS sites are stopped after the test."""
    runners: list[web.AppRunner] = []

    async def serve_and_ask(files: tuple[Path, Path], host: str) -> tuple[int, Report, str, str]:
        port = await serve_tls(runners, serving_context(*files))
        monkeypatch.setenv("TELECIRCLE_PUBLIC_URL", f"https://{host}:{port}")
        code, report, out = await doctor_in_thread(capsys)
        return code, report, out, f"Certificate served at {host}:{port}"

    yield serve_and_ask
    for runner in runners:
        await runner.cleanup()


# ---- the healthy deployment ------------------------------------------------------------


async def test_a_healthy_deployment_has_no_warning_and_exits_0(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    coturn_stopped: Coturn,
) -> None:
    clear_telecircle_environment(monkeypatch)
    authority = make_ca()
    trust(monkeypatch, tmp_path, authority)
    cert_file, key_file = make_server_certificate(
        tmp_path / "tls", ("localhost", "127.0.0.1"), authority=authority
    )
    coturn = coturn_stopped
    coturn.start(tls=make_server_certificate(tmp_path / "tls", ("127.0.0.1",), authority=authority))
    port = free_port()
    low, high = free_port_range(20)
    environment = {
        **SMALL_SERVER,
        "TELECIRCLE_DATA_DIR": str(tmp_path / "data"),
        "TELECIRCLE_PORT": str(port),
        "TELECIRCLE_PUBLIC_URL": f"https://localhost:{port}",
        "TELECIRCLE_TLS_CERT_FILE": str(cert_file),
        "TELECIRCLE_TLS_KEY_FILE": str(key_file),
        "TELECIRCLE_ICE_PORT_MIN": str(low),
        "TELECIRCLE_ICE_PORT_MAX": str(high),
        "TELECIRCLE_TURN_URLS": coturn.urls(),
        "TELECIRCLE_TURN_SECRET": TURN_SECRET,
        "TELECIRCLE_TUNE_GARBAGE_COLLECTOR": "false",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    app = create_app(settings)  # its start makes the keys and the database
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    try:
        context = server_ssl_context(settings, say=lambda _line: None)
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
        code, report, out = await doctor_in_thread(capsys)
    finally:
        await runner.cleanup()

    assert code == 0, out
    assert "WARNING" not in out and "PROBLEM" not in out, out
    udp, tcp, tls = coturn.urls().split(",")
    for check in (
        "Public URL",
        "TLS certificate file",
        f"Certificate served at localhost:{port}",
        "Public address for media",
        "UDP port range",
        f"TURN {udp}",
        f"TURN {tcp}",
        f"TURN {tls}",
        "Database",
        "Server key file",
        "Key-encryption keys",
        "Clock (database)",
        "Clock (web server)",
    ):
        assert report[check][0] == "OK", out
    assert "allocated a relay" in report[f"TURN {udp}"][1]
    assert "trusted" in report[f"Certificate served at localhost:{port}"][1]
    assert "SQLite" in report["Clock (database)"][1]
    assert "No problems found." in out
    # The write probe was rolled back: nothing of it stays.
    engine = create_engine(f"sqlite:///{tmp_path / 'data' / 'telecircle.db'}")
    try:
        assert "telecircle_doctor_probe" not in inspect(engine).get_table_names()
    finally:
        engine.dispose()


# ---- TURN ------------------------------------------------------------------------------


def test_a_wrong_turn_secret_is_a_problem(
    sound: Path,
    coturn: Coturn,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("TELECIRCLE_TURN_URLS", coturn.urls())
    monkeypatch.setenv("TELECIRCLE_TURN_SECRET", secrets.token_hex(32))
    code, report, out = doctor(capsys)
    assert code == 1, out
    for url in coturn.urls().split(","):
        status, message = report[f"TURN {url}"]
        assert status == "PROBLEM", out
        assert "401" in message and "static-auth-secret" in message


def test_an_unreachable_turn_server_is_a_problem(
    sound: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    nobody = free_udp_and_tcp_port()
    udp = f"turn:127.0.0.1:{nobody}?transport=udp"
    tcp = f"turn:127.0.0.1:{nobody}?transport=tcp"
    monkeypatch.setenv("TELECIRCLE_TURN_URLS", f"{udp},{tcp}")
    monkeypatch.setenv("TELECIRCLE_TURN_SECRET", TURN_SECRET)
    monkeypatch.setattr(turn_check, "ALLOCATE_TIMEOUT", 2.0)
    code, report, out = doctor(capsys)
    assert code == 1, out
    assert report[f"TURN {udp}"][0] == "PROBLEM"
    assert "no answer" in report[f"TURN {udp}"][1] and "is coturn running" in out
    assert report[f"TURN {tcp}"][0] == "PROBLEM"
    assert "Connection refused" in report[f"TURN {tcp}"][1]


def test_no_turn_is_fine_on_this_machine(sound: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, report, out = doctor(capsys)
    assert code == 0, out
    assert report["TURN"] == ("OK", "not configured (fine on a local network)")


# ---- certificates ----------------------------------------------------------------------


def use_certificate(monkeypatch: pytest.MonkeyPatch, cert_file: Path, key_file: Path) -> None:
    """Serve HTTPS with these files (the public URL is https; nothing answers there)."""
    monkeypatch.setenv("TELECIRCLE_TLS_CERT_FILE", str(cert_file))
    monkeypatch.setenv("TELECIRCLE_TLS_KEY_FILE", str(key_file))
    monkeypatch.setenv("TELECIRCLE_PUBLIC_URL", f"https://127.0.0.1:{free_port()}")


async def test_an_expired_certificate_is_a_problem_in_the_file_and_where_served(
    sound: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    doctor_served: DoctorServed,
) -> None:
    files = make_server_certificate(
        tmp_path / "tls",
        ("localhost",),
        authority=make_ca(),
        valid_from=-30 * DAY,
        valid_for=20 * DAY,
    )
    use_certificate(monkeypatch, *files)
    code, report, out, served = await doctor_served(files, "localhost")
    assert code == 1, out
    status, message = report["TLS certificate file"]
    assert status == "PROBLEM" and "expired on" in message and "renew" in message
    status, message = report[served]
    assert status == "PROBLEM" and "expired on" in message


def test_a_certificate_expiring_soon_is_a_warning(
    sound: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cert_file, key_file = make_server_certificate(
        tmp_path / "tls", ("127.0.0.1",), authority=make_ca(), valid_for=6 * DAY
    )
    use_certificate(monkeypatch, cert_file, key_file)
    code, report, out = doctor(capsys)
    status, message = report["TLS certificate file"]
    assert status == "WARNING" and "renew it soon" in message, out
    # Nothing answers at the (https) public URL: only warnings, so no failure.
    assert code == 0, out


async def test_a_certificate_for_another_name_is_a_problem(
    sound: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    doctor_served: DoctorServed,
) -> None:
    authority = make_ca()
    trust(monkeypatch, tmp_path, authority)
    files = make_server_certificate(
        tmp_path / "tls", ("telecircle.example.org",), authority=authority
    )
    use_certificate(monkeypatch, *files)
    code, report, out, served = await doctor_served(files, "localhost")
    assert code == 1, out
    for check in ("TLS certificate file", served):
        status, message = report[check]
        assert status == "PROBLEM", out
        assert "it is for telecircle.example.org, not for localhost" in message


async def test_a_self_signed_certificate_is_a_warning(
    sound: Path, tmp_path: Path, doctor_served: DoctorServed
) -> None:
    files = make_server_certificate(tmp_path / "tls", ("localhost", "127.0.0.1"), authority=None)
    code, report, out, served = await doctor_served(files, "127.0.0.1")
    status, message = report[served]
    assert status == "WARNING" and "self-signed" in message, out
    assert report["Public URL"][0] == "OK", out
    assert code == 0, out


async def test_a_certificate_from_an_unknown_authority_is_a_problem(
    sound: Path, tmp_path: Path, doctor_served: DoctorServed
) -> None:
    files = make_server_certificate(tmp_path / "tls", ("127.0.0.1",), authority=make_ca())
    code, report, out, served = await doctor_served(files, "127.0.0.1")
    status, message = report[served]
    assert status == "PROBLEM" and "browsers will not trust it" in message, out
    assert code == 1


def test_a_key_that_others_can_read_or_that_is_not_the_certificates_is_a_problem(
    sound: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    authority = make_ca()
    cert_file, key_file = make_server_certificate(
        tmp_path / "tls", ("127.0.0.1",), authority=authority
    )
    _, other_key = make_server_certificate(tmp_path / "tls", ("127.0.0.1",), authority=authority)
    use_certificate(monkeypatch, cert_file, other_key)
    code, report, out = doctor(capsys)
    assert code == 1, out
    assert "does not belong to the certificate" in report["TLS certificate file"][1]
    key_file.chmod(0o644)
    use_certificate(monkeypatch, cert_file, key_file)
    code, report, out = doctor(capsys)
    assert code == 1, out
    assert f"chmod 600 {key_file}" in report["TLS certificate file"][1]


def test_the_self_signed_certificate_is_a_warning_once_made(
    sound: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELECIRCLE_TLS_SELF_SIGNED", "true")
    monkeypatch.setenv("TELECIRCLE_PUBLIC_URL", f"https://127.0.0.1:{free_port()}")
    code, report, out = doctor(capsys)
    status, message = report["Self-signed certificate"]
    assert status == "OK" and "not made yet" in message, out
    assert not (sound / "tls").exists()
    ensure_self_signed(load_settings(), datetime.datetime.now(datetime.UTC))
    code, report, out = doctor(capsys)
    status, message = report["Self-signed certificate"]
    assert status == "WARNING" and "browsers warn" in message, out
    assert code == 0, out


def test_names_match_as_browsers_match_them(tmp_path: Path) -> None:
    cert_file, _ = make_server_certificate(tmp_path, ("*.example.org", "10.0.0.1"), authority=None)
    certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
    assert certificates.matches_host(certificate, "a.example.org")
    assert certificates.matches_host(certificate, "A.Example.Org.")
    assert not certificates.matches_host(certificate, "example.org")
    assert not certificates.matches_host(certificate, "a.b.example.org")
    assert certificates.matches_host(certificate, "10.0.0.1")
    assert not certificates.matches_host(certificate, "10.0.0.2")


# ---- key files -------------------------------------------------------------------------


def test_key_files_that_others_can_read_are_a_problem(
    sound: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (sound / "server.key").chmod(0o644)
    (sound / "keys" / key_file_name(1)).chmod(0o644)
    code, report, out = doctor(capsys)
    assert code == 1, out
    status, message = report["Server key file"]
    assert status == "PROBLEM" and "mode 0644" in message
    assert f"chmod 600 {sound / 'server.key'}" in message
    status, message = report["Key-encryption keys"]
    assert status == "PROBLEM" and "mode 0644" in message


def test_missing_key_files_are_a_problem_and_are_not_created(
    sound: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (sound / "server.key").unlink()
    (sound / "keys" / key_file_name(1)).unlink()
    code, report, out = doctor(capsys)
    assert code == 1, out
    status, message = report["Server key file"]
    assert status == "PROBLEM" and "does not exist" in message
    status, message = report["Key-encryption keys"]
    assert status == "PROBLEM" and "holds no key-encryption key" in message
    assert not (sound / "server.key").exists()
    assert os.listdir(sound / "keys") == []

    shutil.rmtree(sound / "keys")
    code, report, out = doctor(capsys)
    assert "does not exist" in report["Key-encryption keys"][1]
    assert not (sound / "keys").exists()


# ---- the UDP port range ----------------------------------------------------------------


def test_a_port_range_too_small_is_refused_with_the_setting_named(
    sound: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    low, _ = free_port_range(PORTS_NEEDED - 1)
    monkeypatch.setenv("TELECIRCLE_ICE_PORT_MIN", str(low))
    monkeypatch.setenv("TELECIRCLE_ICE_PORT_MAX", str(low + PORTS_NEEDED - 2))
    assert main(["doctor"]) == 2
    refusal = capsys.readouterr().err
    assert "TELECIRCLE_ICE_PORT_MIN..MAX" in refusal and f"need {PORTS_NEEDED}" in refusal


def test_ports_in_use_are_counted_and_too_few_free_is_a_problem(
    sound: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    low, high = free_port_range(10)
    monkeypatch.setenv("TELECIRCLE_ICE_PORT_MIN", str(low))
    monkeypatch.setenv("TELECIRCLE_ICE_PORT_MAX", str(high))
    with ExitStack() as stack:
        for port in range(low, low + 3):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            sock.bind(("127.0.0.1", port))
        code, report, out = doctor(capsys)
        assert code == 0, out
        status, message = report["UDP port range"]
        assert status == "OK" and "3 of 10 ports tried are in use" in message, out

        for port in range(low + 3, low + 6):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            sock.bind(("127.0.0.1", port))
        code, report, out = doctor(capsys)
    assert code == 1, out
    status, message = report["UDP port range"]
    assert status == "PROBLEM", out
    assert "6 of 10 ports tried are in use, leaving 4 free" in message
    assert f"{PORTS_NEEDED} are needed" in message


def test_a_host_address_not_on_this_machine_is_a_problem(
    sound: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    low, high = free_port_range(10)
    monkeypatch.setenv("TELECIRCLE_ICE_PORT_MIN", str(low))
    monkeypatch.setenv("TELECIRCLE_ICE_PORT_MAX", str(high))
    # TEST-NET-2 (RFC 5737): never an address of this machine.
    monkeypatch.setenv("TELECIRCLE_ICE_HOST_ADDRESSES", "198.51.100.7")
    code, report, out = doctor(capsys)
    assert code == 1, out
    status, message = report["UDP port range"]
    assert status == "PROBLEM" and "not an address of this machine" in message


def test_the_port_sample_spreads_over_a_large_range() -> None:
    ports = media_checks.sample_ports(10000, 59999, count=100)
    assert len(ports) == 100 and ports[0] == 10000 and ports[-1] == 59999
    assert media_checks.sample_ports(20000, 20009) == list(range(20000, 20010))


# ---- the database ----------------------------------------------------------------------


@pytest.fixture
def immutable(sound: Path) -> Iterator[Path]:
    """The database file made unwritable even for root (chattr +i), undone after."""
    database = sound / "telecircle.db"
    if os.geteuid() != 0:
        database.chmod(0o444)
        yield database
        database.chmod(0o600)
        return
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed: apt-get install e2fsprogs")
    done = subprocess.run(["chattr", "+i", str(database)], capture_output=True, timeout=10)
    if done.returncode != 0:
        pytest.skip(f"chattr +i is not possible here: {done.stderr.decode().strip()}")
    try:
        yield database
    finally:
        subprocess.run(["chattr", "-i", str(database)], check=True, timeout=10)


def test_a_database_that_cannot_be_written_is_a_problem(
    immutable: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report, out = doctor(capsys)
    assert code == 1, out
    status, message = report["Database"]
    assert status == "PROBLEM" and f"cannot open {immutable} for writing" in message, out


def test_a_missing_database_is_a_problem_and_is_not_created(
    sound: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in os.listdir(sound):
        if name.startswith("telecircle.db"):
            (sound / name).unlink()
    code, report, out = doctor(capsys)
    assert code == 1, out
    status, message = report["Database"]
    assert status == "PROBLEM" and "does not exist" in message
    assert not (sound / "telecircle.db").exists()


def test_an_empty_database_is_a_problem(
    sound: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = sound / "empty.db"
    empty.touch(mode=0o600)
    monkeypatch.setenv("TELECIRCLE_DATABASE_URL", f"sqlite+aiosqlite:///{empty}")
    code, report, out = doctor(capsys)
    assert code == 1, out
    status, message = report["Database"]
    assert status == "PROBLEM" and "telecircle db upgrade" in message


async def test_postgresql_is_written_and_its_clock_compared(
    sound: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncpg = pytest.importorskip("asyncpg")
    admin_dsn = os.environ.get(
        "TELECIRCLE_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test"
    )
    try:
        admin = await asyncpg.connect(admin_dsn, timeout=3)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL not usable at {admin_dsn}: {exc}")
    name = f"telecircle_doctor_{secrets.token_hex(6)}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = admin_dsn.replace("postgresql://", "postgresql+asyncpg://").rsplit("/", 1)[0]
        url = f"{url}/{name}"
        await migrations.upgrade(url)
        monkeypatch.setenv("TELECIRCLE_DATABASE_URL", url)
        code, report, out = await doctor_in_thread(capsys)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    assert code == 0, out
    assert report["Database"][0] == "OK", out
    status, message = report["Clock (database)"]
    assert status == "OK" and "PostgreSQL agree" in message, out


# ---- patients from the internet (checked without leaving this machine) -----------------


def public_deployment(**overrides: str) -> Deployment:
    """A deployment whose public URL is on the internet; nothing is asked of it."""
    settings = load_settings(public_url="https://8.8.8.8", **overrides)
    answer = WebAnswer(None, None, "not asked", time.time(), time.time())
    return Deployment(settings, parse_public_url(settings.public_url), Reach.PUBLIC, answer)


async def test_patients_on_the_internet_need_a_public_address_turn_and_a_port_range(
    sound: Path,
) -> None:
    private = public_deployment(ice_host_addresses="10.0.0.5")
    result = await media_checks.check_public_address(private)
    assert result.status is Status.PROBLEM
    assert "TELECIRCLE_ICE_ANNOUNCED_ADDRESS" in result.message and "10.0.0.5" in result.message
    assert turn_check.check_turn_configured(private).status is Status.WARNING
    assert "strict NATs" in turn_check.check_turn_configured(private).message
    assert media_checks.check_port_range(private).status is Status.WARNING

    announced = public_deployment(ice_host_addresses="10.0.0.5", ice_announced_address="8.8.4.4")
    result = await media_checks.check_public_address(announced)
    assert result.status is Status.OK and "8.8.4.4" in result.message


def test_plain_http_beyond_this_machine_is_a_problem(sound: Path) -> None:
    settings = load_settings(public_url="http://192.168.1.20:8080")
    answer = WebAnswer(200, None, None, time.time(), time.time())
    deployment = Deployment(settings, parse_public_url(settings.public_url), Reach.PRIVATE, answer)
    result = web_checks.check_public_url(deployment)
    assert result.status is Status.PROBLEM and "HTTPS" in result.message


# ---- clocks ----------------------------------------------------------------------------


def test_a_web_server_clock_far_off_is_a_problem(sound: Path) -> None:
    settings = load_settings()
    now = time.time()
    late = datetime.datetime.fromtimestamp(now - 60, datetime.UTC)
    answer = WebAnswer(200, late.strftime("%a, %d %b %Y %H:%M:%S GMT"), None, now, now + 0.1)
    deployment = Deployment(settings, parse_public_url(settings.public_url), Reach.LOOPBACK, answer)
    result = clocks.check_web_clock(deployment)
    assert result.status is Status.PROBLEM and "apart" in result.message
    on_time = datetime.datetime.fromtimestamp(now, datetime.UTC)
    answer = WebAnswer(200, on_time.strftime("%a, %d %b %Y %H:%M:%S GMT"), None, now, now + 0.1)
    deployment = Deployment(settings, deployment.url, Reach.LOOPBACK, answer)
    assert clocks.check_web_clock(deployment).status is Status.OK


def test_skew_allows_for_the_round_trip_and_the_headers_whole_seconds() -> None:
    assert clocks.skew(100.0, 100.0, 100.5) == 0.0
    assert clocks.skew(99.2, 100.0, 100.5, resolution=1.0) == 0.0
    assert clocks.skew(90.0, 100.0, 100.5) == 10.0
    assert clocks.skew(110.5, 100.0, 100.5) == 10.0
