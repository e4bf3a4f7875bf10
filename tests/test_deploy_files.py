"""The deployment files in deploy/: the sample environment file lists every setting and
is what ``python -m telecircle.env_sample`` writes; nginx accepts the site file and
sends Telecircle's own security headers; the systemd units pass systemd's checks, and
the Telecircle unit's ExecStart, run with an environment file made from the sample,
starts a server that answers.

The browser journey through nginx is tests/e2e/test_https_proxy.py; it adapts the
nginx file for the test with :func:`nginx_test_config` below.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest

from telecircle import env_sample
from telecircle.config import ConfigError, Settings, load_settings
from telecircle.web.security import CONTENT_SECURITY_POLICY
from tests.conftest import RunningServer, free_port

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
ENV_SAMPLE = DEPLOY / "telecircle.env.sample"
NGINX_SITE = DEPLOY / "nginx" / "telecircle.conf"
TELECIRCLE_UNIT = DEPLOY / "systemd" / "telecircle.service"
COTURN_DROP_IN = DEPLOY / "systemd" / "coturn.service.d" / "telecircle.conf"
DEBIAN_COTURN_UNIT = Path("/lib/systemd/system/coturn.service")
# Where deploy/README.md installs the checkout (and its virtual environment).
INSTALL_ROOT = "/opt/telecircle"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
# systemd-analyze security: 0 (locked down) to 10 (nothing restricted); "OK" is below 5.
MAX_EXPOSURE = 2.0
READY_TIMEOUT_S = 60.0
REGENERATE = ".venv/bin/python -m telecircle.env_sample deploy/telecircle.env.sample"


# ---- the sample environment file -------------------------------------------------------


def env_file_values(text: str) -> dict[str, str]:
    """The variables an environment file sets, as systemd's EnvironmentFile reads it
    (comments and blank lines skipped, surrounding quotes removed)."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        name, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name.strip()] = value
    return values


def test_the_env_sample_lists_every_setting() -> None:
    text = ENV_SAMPLE.read_text(encoding="utf-8")
    missing = [
        name
        for name in Settings.model_fields
        if not re.search(rf"^#?TELECIRCLE_{name.upper()}=", text, re.MULTILINE)
    ]
    assert missing == [], f"settings missing from {ENV_SAMPLE}: regenerate it with {REGENERATE}"


def test_the_env_sample_is_what_the_generator_writes() -> None:
    assert ENV_SAMPLE.read_text(encoding="utf-8") == env_sample.render(), (
        f"{ENV_SAMPLE} is stale: regenerate it with {REGENERATE}"
    )


def test_each_setting_is_explained_with_its_default() -> None:
    text = ENV_SAMPLE.read_text(encoding="utf-8")
    for name, field in Settings.model_fields.items():
        entry = text.split(f"TELECIRCLE_{name.upper()}=", 1)[0].rsplit("\n\n", 1)[-1]
        assert "# Default:" in entry, name
        first_words = " ".join((field.description or "").split()[:3])
        assert first_words and first_words in " ".join(entry.replace("#", " ").split()), name


def test_the_env_sample_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    values = env_file_values(ENV_SAMPLE.read_text(encoding="utf-8"))
    assert values["TELECIRCLE_TRUSTED_PROXIES"] == "127.0.0.1"
    assert values["TELECIRCLE_PORT"] == "8080"
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.cookies_secure
    # The commented TURN lines work once a real secret replaces the placeholder.
    monkeypatch.setenv("TELECIRCLE_TURN_URLS", env_sample.DEPLOYMENT["turn_urls"].value)
    monkeypatch.setenv("TELECIRCLE_TURN_SECRET", "ab" * 32)
    assert len(load_settings().turn_urls) == 2
    monkeypatch.setenv("TELECIRCLE_TURN_SECRET", env_sample.DEPLOYMENT["turn_secret"].value)
    with pytest.raises(ConfigError, match="TELECIRCLE_TURN_SECRET"):
        load_settings()


# ---- nginx -----------------------------------------------------------------------------


def nginx_test_config(
    prefix: Path,
    *,
    upstream_port: int,
    https_port: int,
    http_port: int,
    cert_file: Path,
    key_file: Path,
) -> Path:
    """deploy/nginx/telecircle.conf with loopback ports, the test's certificate and
    paths in ``prefix``, inside a minimal main configuration; returns the main file.
    Each substitution must apply exactly as often as expected, so a change to the site
    file that the test does not follow fails here rather than testing something else."""
    site = NGINX_SITE.read_text(encoding="utf-8")
    substitutions = [
        (r"server 127\.0\.0\.1:8080;", f"server 127.0.0.1:{upstream_port};", 1),
        (r"listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;", 1),
        (r"\n[ \t]*listen \[::\]:443 ssl http2;", "", 1),
        (r"listen 80;", f"listen 127.0.0.1:{http_port};", 1),
        (r"\n[ \t]*listen \[::\]:80;", "", 1),
        (
            r"ssl_certificate /etc/letsencrypt/live/telecircle\.example\.org/fullchain\.pem;",
            f"ssl_certificate {cert_file};",
            1,
        ),
        (
            r"ssl_certificate_key /etc/letsencrypt/live/telecircle\.example\.org/privkey\.pem;",
            f"ssl_certificate_key {key_file};",
            1,
        ),
        (r"server_name telecircle\.example\.org;", "server_name 127.0.0.1;", 2),
        (r"root /var/www/letsencrypt;", f"root {prefix / 'acme'};", 1),
    ]
    for pattern, replacement, expected in substitutions:
        site, count = re.subn(pattern, replacement, site)
        assert count == expected, f"{NGINX_SITE}: {pattern!r} found {count} times"
    for folder in ("acme", "client_body", "proxy", "fastcgi", "uwsgi", "scgi", "logs"):
        (prefix / folder).mkdir(parents=True, exist_ok=True)
    (prefix / "telecircle.conf").write_text(site, encoding="utf-8")
    mime = "include /etc/nginx/mime.types;" if Path("/etc/nginx/mime.types").exists() else ""
    # As root, workers would otherwise run as nobody, who cannot enter the test's folders.
    user = "user root;" if os.geteuid() == 0 else ""
    main = prefix / "nginx.conf"
    main.write_text(
        f"""{user}
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log info;
events {{ worker_connections 512; }}
http {{
    {mime}
    default_type application/octet-stream;
    access_log {prefix}/logs/access.log;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/telecircle.conf;
}}
""",
        encoding="utf-8",
    )
    return main


def require_nginx() -> str:
    if not Path(NGINX).exists():
        pytest.skip("nginx is not installed: apt-get install nginx")
    return NGINX


def nginx_directives(name: str) -> list[str]:
    """The arguments of every ``name`` directive in the site file (comments removed)."""
    text = re.sub(r"#[^\n]*", "", NGINX_SITE.read_text(encoding="utf-8"))
    return [m.group(1).strip() for m in re.finditer(rf"(?m)^\s*{name}\s+([^;]*);", text)]


def test_nginx_accepts_the_site_file(tmp_path: Path) -> None:
    from tests.certs import issue, make_ca, write_certificate, write_key

    nginx = require_nginx()
    key, certificate = issue(make_ca())
    main = nginx_test_config(
        tmp_path,
        upstream_port=free_port(),
        https_port=free_port(),
        http_port=free_port(),
        cert_file=write_certificate(tmp_path / "cert.pem", certificate),
        key_file=write_key(tmp_path / "key.pem", key),
    )
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(main)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "warn" not in result.stderr, result.stderr


def nginx_added_headers() -> dict[str, tuple[str, bool]]:
    """The site file's ``add_header`` directives: lower-case name -> (value, always)."""
    text = re.sub(r"(?m)^\s*#[^\n]*", "", NGINX_SITE.read_text(encoding="utf-8"))
    found = {}
    pattern = r'(?m)^\s*add_header\s+(\S+)\s+("[^"]*"|[^\s;]+)(\s+always)?\s*;'
    for name, value, always in re.findall(pattern, text):
        found[name.lower()] = (value.strip('"'), bool(always))
    return found


async def test_nginx_sends_telecircles_own_security_headers(server: RunningServer) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{server.url}/healthz") as response,
    ):
        own = response.headers
    added = nginx_added_headers()
    hidden = {h.lower() for h in nginx_directives("proxy_hide_header")}
    assert added["content-security-policy"][0] == CONTENT_SECURITY_POLICY
    for name in (
        "Content-Security-Policy",
        "X-Content-Type-Options",
        "Referrer-Policy",
        "X-Frame-Options",
        "Permissions-Policy",
        "Cross-Origin-Opener-Policy",
    ):
        assert added[name.lower()][0] == own[name], name
        assert name.lower() in hidden, f"{name} would be sent twice"
    permissions = added["permissions-policy"][0]
    assert "camera=(self)" in permissions and "microphone=(self)" in permissions
    hsts = added["strict-transport-security"][0]
    assert int(hsts.split("max-age=")[1].split(";")[0]) >= 31536000
    # "always": also on the answers nginx makes itself (413, 502...).
    assert all(always for _, always in added.values()), added


def test_nginx_body_limit_and_timeouts_match_telecircles(server: RunningServer) -> None:
    (limit,) = nginx_directives("client_max_body_size")
    assert limit == "256k"
    assert server.app._client_max_size == 256 * 1024
    (header_timeout,) = nginx_directives("client_header_timeout")
    (body_timeout,) = nginx_directives("client_body_timeout")
    assert float(header_timeout.removesuffix("s")) <= server.settings.http_idle_timeout
    assert float(body_timeout.removesuffix("s")) <= server.settings.http_body_timeout
    assert "X-Forwarded-For $remote_addr" in nginx_directives("proxy_set_header")
    assert "X-Forwarded-Proto $scheme" in nginx_directives("proxy_set_header")
    assert "Upgrade $http_upgrade" in nginx_directives("proxy_set_header")


# ---- systemd ---------------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A unit file's sections, each key with its values in order (keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{line!r} before any section"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def installed_here(unit_text: str) -> str:
    """The unit with the install location replaced by this checkout (and its venv)."""
    venv_bin = Path(sys.executable).parent
    return unit_text.replace(f"{INSTALL_ROOT}/.venv/bin", str(venv_bin)).replace(
        INSTALL_ROOT, str(REPO)
    )


def test_the_telecircle_unit_runs_unprivileged_and_confined() -> None:
    service = parse_unit(TELECIRCLE_UNIT.read_text(encoding="utf-8"))["Service"]
    expected = {
        "User": "telecircle",
        "Group": "telecircle",
        "EnvironmentFile": "/etc/telecircle/telecircle.env",
        "StateDirectory": "telecircle",
        "StateDirectoryMode": "0700",
        "UMask": "0077",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
        "RestrictSUIDSGID": "yes",
        "SystemCallArchitectures": "native",
    }
    for key, value in expected.items():
        assert service.get(key) == [value], key
    assert service["ExecStart"] == [f"{INSTALL_ROOT}/.venv/bin/telecircle serve"]
    env = env_file_values(ENV_SAMPLE.read_text(encoding="utf-8"))
    assert env["TELECIRCLE_DATA_DIR"] == "/var/lib/telecircle"  # the StateDirectory


def systemd_check(unit: Path) -> tuple[str, float]:
    """systemd-analyze verify's complaints and the security exposure level of ``unit``."""
    assert SYSTEMD_ANALYZE is not None
    verify = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", unit.name],
        cwd=unit.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    security = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", unit.name],
        cwd=unit.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", security.stdout)
    assert match is not None, security.stdout + security.stderr
    complaints = [
        line
        for line in (verify.stdout + verify.stderr).splitlines()
        if line.strip() and "Special user" not in line
    ]
    return "\n".join(complaints), float(match.group(1))


def test_systemd_accepts_the_units_and_rates_them_well_confined(tmp_path: Path) -> None:
    if SYSTEMD_ANALYZE is None:
        pytest.skip("systemd-analyze is not installed: apt-get install systemd")
    unit = tmp_path / "telecircle.service"
    unit.write_text(installed_here(TELECIRCLE_UNIT.read_text(encoding="utf-8")))
    complaints, exposure = systemd_check(unit)
    assert complaints == ""
    assert exposure <= MAX_EXPOSURE
    if not DEBIAN_COTURN_UNIT.exists():
        pytest.skip("coturn is not installed: apt-get install coturn")
    coturn = tmp_path / "coturn" / "coturn.service"
    (coturn.parent / "coturn.service.d").mkdir(parents=True)
    shutil.copy(DEBIAN_COTURN_UNIT, coturn)
    _, bare_exposure = systemd_check(coturn)
    shutil.copy(COTURN_DROP_IN, coturn.parent / "coturn.service.d" / COTURN_DROP_IN.name)
    complaints, exposure = systemd_check(coturn)
    assert complaints == ""
    assert exposure <= MAX_EXPOSURE < bare_exposure


def test_the_units_execstart_with_an_environment_file_serves(tmp_path: Path) -> None:
    sections = parse_unit(installed_here(TELECIRCLE_UNIT.read_text(encoding="utf-8")))
    service = sections["Service"]
    (command,) = service["ExecStart"]
    (workdir,) = service["WorkingDirectory"]
    # The environment file: the sample, with this test's folder, port and addresses.
    port = free_port()
    values = env_file_values(ENV_SAMPLE.read_text(encoding="utf-8"))
    values.update(
        {
            "TELECIRCLE_DATA_DIR": str(tmp_path / "data"),
            "TELECIRCLE_PORT": str(port),
            "TELECIRCLE_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "TELECIRCLE_ICE_HOST_ADDRESSES": "127.0.0.1",
        }
    )
    env_file = tmp_path / "telecircle.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for assignment in service.get("Environment", []):
        for item in shlex.split(assignment):
            name, _, value = item.partition("=")
            environment[name] = value
    environment.update(env_file_values(env_file.read_text()))
    log = tmp_path / "journal.log"
    with log.open("wb") as journal:
        process = subprocess.Popen(
            shlex.split(command),
            cwd=workdir,
            env=environment,
            stdout=journal,
            stderr=subprocess.STDOUT,
        )
    try:
        assert _healthy(f"http://127.0.0.1:{port}/healthz", process, log)
        assert "/setup/" in log.read_text(), "the first start prints the setup link"
    finally:
        (kill_signal,) = service.get("KillSignal", ["SIGTERM"])
        (stop_timeout,) = service.get("TimeoutStopSec", ["90"])
        process.send_signal(getattr(signal, kill_signal))
        try:
            returncode = process.wait(timeout=float(stop_timeout))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
            raise
    assert returncode == 0, log.read_text()[-4000:]
    assert (tmp_path / "data" / "telecircle.db").exists()


def _healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"ExecStart exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail(f"not healthy after {READY_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")


# ---- the README ------------------------------------------------------------------------


def test_the_deploy_readme_names_every_deployment_file() -> None:
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    for path in (ENV_SAMPLE, NGINX_SITE, TELECIRCLE_UNIT, COTURN_DROP_IN):
        assert str(path.relative_to(REPO)) in readme, path
