"""Fixtures for the browser tests: the real server as a subprocess, a prepared clinic,
artifacts.

The server is started with ``telecircle serve`` from this virtual environment (or the
command in ``TELECIRCLE_TEST_E2E_COMMAND``, split on spaces, for trying the tests against
another build), on an empty data folder: its first start prints the one-time setup link,
which :mod:`tests.e2e.site` uses to walk first-run setup through the real pages.
"""

from __future__ import annotations

import os
import shlex
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from telecircle.config import load_settings
from tests.database_template import create_at_newest_revision
from tests.e2e.netns import HOST_ADDRESS, PathCutLab, unavailable
from tests.e2e.room_page import CHROMIUM_ARGS, Browsers
from tests.e2e.site import Administrator, Clinic, prepare_clinic, wait_for_setup_link

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 60.0


RECONNECT_GRACE_S = 6


def telecircle_command() -> list[str]:
    override = os.environ.get("TELECIRCLE_TEST_E2E_COMMAND")
    if override:
        return shlex.split(override)
    return [str(Path(sys.executable).parent / "telecircle")]


@dataclass(frozen=True)
class Server:
    base_url: str
    data_dir: Path
    log: Path

    @property
    def port(self) -> int:
        return int(urllib.parse.urlsplit(self.base_url).port or 0)

    def setup_link(self) -> str:
        """The one-time first-run link the server printed when it started."""
        return wait_for_setup_link(self.log)


@dataclass(frozen=True)
class Site:
    """The server after first-run setup, with a signed-in therapist ("Alice")."""

    server: Server
    admin: Administrator
    therapist: Clinic


def free_port_on(address: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def _wait_healthy(
    url: str,
    process: subprocess.Popen[bytes],
    log: Path,
    *,
    what: str = "server",
    context: ssl.SSLContext | None = None,
) -> None:
    """Until ``url`` answers 200 (over TLS trusting ``context`` if given); fails the test
    with the tail of ``log`` if ``process`` (the ``what``) exits or never answers."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2, context=context) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail(f"{what} not healthy after {READY_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate ``process`` and wait for it (bounded; killed if it lingers)."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextmanager
def running_server(
    data_dir: Path,
    host: str,
    environment: Mapping[str, str],
    *,
    log: Path | None = None,
    serve_args: Sequence[str] = (),
) -> Iterator[Server]:
    """``telecircle serve`` on ``host`` (a free port there) with ``data_dir``, this
    process's environment plus ``environment`` (which may override the test defaults
    below), and ``serve_args`` after the host and port; healthy before it is yielded,
    stopped after. Its output goes to ``log`` (default: server.log in ``data_dir``)."""
    port = free_port_on(host)
    base_url = f"http://{host}:{port}"
    log = log or data_dir / "server.log"
    # A new SQLite database starts as a copy of the migrated template, as in the other
    # tests (what is not at the newest revision yet, the server migrates as it starts).
    database = load_settings(
        data_dir=data_dir, database_url=environment.get("TELECIRCLE_DATABASE_URL")
    ).effective_database_url
    create_at_newest_revision(database)
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                *telecircle_command(),
                "--data-dir",
                str(data_dir),
                "serve",
                "--host",
                host,
                "--port",
                str(port),
                *serve_args,
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={
                **os.environ,
                # Every test browser opens its invite from the same address: more than
                # the per-address limit meant for the public internet.
                "TELECIRCLE_INVITE_REDEMPTIONS_PER_WINDOW": "1000",
                **environment,
                # The setup link is printed on stdout: no buffering, so it is in the log
                # as soon as the server is up.
                "PYTHONUNBUFFERED": "1",
            },
        )
    try:
        _wait_healthy(f"{base_url}/healthz", process, log)
        yield Server(base_url=base_url, data_dir=data_dir, log=log)
    finally:
        stop_process(process)


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium package to run e2e tests")
    return CHROMIUM


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    path = Path(os.environ.get("TELECIRCLE_TEST_ARTIFACTS", REPO / "tests" / "artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, chromium_path: Path) -> Iterator[Server]:
    # A short reconnect window so a vanished browser's seat frees within the test.
    environment = {"TELECIRCLE_RECONNECT_GRACE": str(RECONNECT_GRACE_S)}
    with running_server(tmp_path_factory.mktemp("telecircle-data"), "127.0.0.1", environment) as up:
        yield up


@pytest.fixture(scope="module")
def site(server: Server) -> Site:
    """First-run setup done through the pages, and a therapist signed in."""
    admin, therapist = prepare_clinic(server.base_url, server.log)
    return Site(server=server, admin=admin, therapist=therapist)


@pytest.fixture
async def browsers(chromium_path: Path, tmp_path: Path) -> AsyncIterator[Browsers]:
    async with AsyncExitStack() as stack:
        pool = Browsers(chromium_path, tmp_path, stack)
        try:
            yield pool
        finally:
            await pool.close_all()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, chromium_path: Path) -> Iterator[PathCutLab]:
    """A network namespace for one browser, joined to the host by a veth pair
    (tests/e2e/netns.py), for a module's tests; skipped where none can be made."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    lab = PathCutLab(chromium_path, tmp_path_factory.mktemp("netns"))
    try:
        lab.create()
        yield lab
    finally:
        lab.remove()


@contextmanager
def server_on_host_link(
    tmp_path_factory: pytest.TempPathFactory, environment: Mapping[str, str]
) -> Iterator[Server]:
    """A server on the veth's host address, reachable from the host and from inside the
    namespace (its ICE candidates there and on 127.0.0.1), with ``environment``."""
    settings = {"TELECIRCLE_ICE_HOST_ADDRESSES": f"{HOST_ADDRESS},127.0.0.1", **environment}
    with running_server(tmp_path_factory.mktemp("telecircle-data"), HOST_ADDRESS, settings) as up:
        yield up


def browser_args(base_url: str) -> list[str]:
    """Chromium's flags for a page of the server on the host link: http://10.77.7.1 is
    not a secure context as 127.0.0.1 is, and camera and microphone need one."""
    return [*CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={base_url}"]
