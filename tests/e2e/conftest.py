"""Fixtures for the browser tests: the real server as a subprocess, rooms, artifacts.

The server is started with ``telecircle serve`` from this virtual environment (or the
command in ``TELECIRCLE_TEST_E2E_COMMAND``, split on spaces, for trying the tests against
another build). Rooms are made with ``telecircle room create``, whose last stdout line is
the join URL.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

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

    def create_room(self, name: str, limit: int) -> str:
        """Create a room with the CLI and return its join URL."""
        result = subprocess.run(
            [
                *telecircle_command(),
                "--data-dir",
                str(self.data_dir),
                "room",
                "create",
                name,
                "--limit",
                str(limit),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"room create failed: {result.stderr}"
        lines = result.stdout.strip().splitlines()
        assert lines, "room create printed nothing"
        url = lines[-1].strip()
        assert "/r/" in url, f"unexpected join URL line: {url!r}"
        # Whatever base the CLI prints, the browsers talk to the test server.
        return self.base_url + url[url.index("/r/") :]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    pytest.fail(f"server not healthy after {READY_TIMEOUT_S} s:\n{log.read_text()[-4000:]}")


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
    data_dir = tmp_path_factory.mktemp("telecircle-data")
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = data_dir / "server.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                *telecircle_command(),
                "--data-dir",
                str(data_dir),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            # A short reconnect window so a vanished browser's seat frees within the test.
            env={**os.environ, "TELECIRCLE_RECONNECT_GRACE": str(RECONNECT_GRACE_S)},
        )
    try:
        _wait_healthy(f"{base_url}/healthz", process, log)
        yield Server(base_url=base_url, data_dir=data_dir)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
