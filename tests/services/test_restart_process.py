"""The server process restarts in the middle of pair work: stopped (SIGTERM) or killed
(SIGKILL), then started again on the same data. The session, its seats and its pairs
come back, and the pairs' timer resumes with the time that was left: the downtime is
not counted (after a kill, at most one heartbeat of time is given back twice).

Real ``telecircle serve`` processes; patients come in through the real pages (invite,
pre-join form) and real socket.io clients, and come back as a browser does after a
dropped connection.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import start_server
from tests.signalling.client import Client
from tests.web.site_client import SiteClient

pytestmark = pytest.mark.timeout(150)

HEARTBEAT = 1.0
# Out of service for this long, plus the new process's start: at least twice the slack,
# so a timer that counted the downtime would fail the check by seconds.
DOWNTIME = 3.0
SLACK = 1.5
READY_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def telecircle(
    data_dir: Path, port: int, log: Path, database_url: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A ``telecircle serve`` process, healthy when this yields; stopped at the end if
    the test has not stopped it. Its database is SQLite in ``data_dir`` unless given."""
    command = [str(Path(sys.executable).parent / "telecircle"), "--data-dir", str(data_dir)]
    if database_url is not None:
        command += ["--database-url", database_url]
    env = {
        **os.environ,
        "TELECIRCLE_PAIRS_MIN_SECONDS": "2",
        "TELECIRCLE_TIMER_WARNING_SECONDS": "1",
        "TELECIRCLE_RESUME_HEARTBEAT": str(HEARTBEAT),
        "TELECIRCLE_RECONNECT_GRACE": "60",
    }
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*command, "serve", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"server exited with {process.returncode}: {log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    pytest.fail(f"server not ready: {log.read_text()[-3000:]}")
                time.sleep(0.2)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


async def check_in(base_url: str, invite_token: str, name: str) -> str:
    """Open a personal invite and fill in the pre-join page; the device's Cookie."""
    patient = SiteClient(base_url)
    try:
        landing = await patient.get(f"/i/{invite_token}")
        await patient.post(f"/i/{invite_token}", {}, csrf=landing.csrf)
        prejoin = await patient.get("/join")
        joined = await patient.post(
            "/join",
            {
                "display_name": name,
                "agreement_version": "1",
                "accept_agreement": "on",
                "location": "Home",
                "emergency_contact": "Sam 0113 000",
            },
            csrf=prejoin.csrf,
        )
        assert joined.url.endswith("/session"), joined.text[-500:]
        return f"tc_pass={patient.cookie('tc_pass')}"
    finally:
        await patient.close()


async def join(url: str, cookie: str, code: str) -> tuple[Client, dict[str, object]]:
    client = await Client().connect(url, cookie)
    ack = await client.call("join", {"room_code": code})
    assert ack["ok"], ack
    return client, ack["data"]


async def pairs_timer(client: Client) -> tuple[float, float]:
    """The pairs' remaining time as last told, and when (monotonic) it was received."""
    await client.wait_for(
        lambda: ((client.last("activity") or {}).get("timer") or {}).get("activity") == "pairs"
    )
    return float(client.last("activity")["timer"]["remaining_seconds"]), time.monotonic()


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
async def test_pairs_resume_in_a_new_server_process(tmp_path: Path, stop: signal.Signals) -> None:
    # The clinic: a room, its therapist's sign-in and two invites, made on the data dir.
    setup = await start_server(tmp_path)
    code = await setup.create_room()
    therapist_cookie = await setup.owner_cookie(code)
    invites = [await setup.personal_invite(code, name) for name in ("Ann", "Bo")]
    data_dir = setup.settings.data_dir
    await setup.runner.cleanup()

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    clients: list[Client] = []
    try:
        with telecircle(data_dir, port, log) as first:
            cookies = [
                await check_in(url, token, name)
                for token, name in zip(invites, ("Ann", "Bo"), strict=True)
            ]
            therapist, seat = await join(url, therapist_cookie, code)
            ann, ann_seat = await join(url, cookies[0], code)
            bo, _ = await join(url, cookies[1], code)
            clients += [therapist, ann, bo]
            assert (await therapist.call("admit_all", {}))["ok"]
            started = await therapist.call("start_pairs", {"duration_seconds": 40, "groups": None})
            assert started["ok"], started
            remaining_before, read_before = await pairs_timer(ann)
            # Let a heartbeat or two pass, as in a real session.
            await asyncio.sleep(2 * HEARTBEAT)
            stopped_at = time.monotonic()
            first.send_signal(stop)
            first.wait(timeout=30)
        await asyncio.sleep(DOWNTIME)

        with telecircle(data_dir, port, log):
            back_at = time.monotonic()
            ann2, again = await join(url, cookies[0], code)
            clients.append(ann2)
            assert again["returned"] and again["participant_id"] == ann_seat["participant_id"]
            therapist2, therapist_again = await join(url, therapist_cookie, code)
            clients.append(therapist2)
            assert therapist_again["participant_id"] == seat["participant_id"]
            await ann2.wait_for(lambda: ann2.last("activity") is not None)
            assert ann2.last("activity")["place"]["spot"] == "pair"
            remaining_after, read_after = await pairs_timer(ann2)
            ran = (stopped_at - read_before) + (read_after - back_at)
            given_back = HEARTBEAT if stop is signal.SIGKILL else 0.0
            assert remaining_after >= remaining_before - ran - SLACK, (
                remaining_before,
                remaining_after,
                ran,
            )
            # Not more than was left (plus, after a kill, the last heartbeat's interval).
            assert remaining_after <= remaining_before - ran + given_back + SLACK
            # The resumed pair work is run as usual from the new process.
            assert (await therapist2.call("end_pairs", {}))["ok"]
            await ann2.wait_for(lambda: ann2.last("activity")["place"]["spot"] == "plenary")
    finally:
        for client in clients:
            if client.sio.connected:
                await client.close()
