"""A server restart in the middle of a session: the session, its seats and its running
pair work or segment resume in the next server, with the time that was left.

Each test stops a real server (gracefully, as on SIGTERM) and starts another on the same
data directory and port; clients come back as a browser does after a dropped
connection (connect again, join again). The timers are checked as logical time: the
downtime is made much longer than any slack, and must not be counted.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from telecircle.domain.commands import LeaveReason
from telecircle.domain.ids import ParticipantId, RoomCode
from telecircle.storage import stores
from telecircle.web.keys import CHECKINS
from tests.conftest import ROOMS, RunningServer, start_server
from tests.signalling.client import Client

pytestmark = pytest.mark.timeout(90)

SHORT_TIMERS: dict[str, Any] = {
    "pairs_min_seconds": 2,
    "segment_min_seconds": 2,
    "timer_warning_seconds": 1,
}
DOWNTIME = 4.0
SLACK = 1.5
# Each one's segment in the queue. Ann's must outlast what is checked while it runs: the
# restart's downtime is not counted, and the checks use about 0.2 s of its time here (8 s
# each, the test mostly waited for the two to run out).
SEGMENT_S = 5


@dataclass
class Seat:
    cookie: str
    client: Client
    pid: str


async def take_seat(server: RunningServer, cookie: str, code: str) -> Seat:
    client = await Client().connect(server.url, cookie)
    ack = await client.call("join", {"room_code": code})
    assert ack["ok"], ack
    return Seat(cookie, client, str(ack["data"]["participant_id"]))


async def come_back(server: RunningServer, seat: Seat, code: str) -> dict[str, Any]:
    """What a browser does after its connection dropped: connect and join again."""
    seat.client = await Client().connect(server.url, seat.cookie)
    ack = await seat.client.call("join", {"room_code": code})
    assert ack["ok"], ack
    return dict(ack["data"])


async def remaining_now(seat: Seat, activity: str) -> tuple[float, float]:
    """The countdown as the server states it now, and when (monotonic) it was read."""
    before = len(seat.client.events)
    # Any change makes the server send everyone their activity; asking for nothing new
    # (lowering an unraised hand) changes nothing, so wait for a fresh event instead.
    await seat.client.wait_for(
        lambda: (
            any(name == "activity" for name, _ in seat.client.events[before:])
            or seat.client.last("activity")["timer"] is not None
        )
    )
    timer = seat.client.last("activity")["timer"]
    assert timer is not None and timer["activity"] == activity, timer
    return float(timer["remaining_seconds"]), time.monotonic()


async def test_pairs_resume_after_a_restart_with_the_time_that_was_left(
    tmp_path: Path,
) -> None:
    server = await start_server(tmp_path, **SHORT_TIMERS)
    port = server.settings.port
    code = await server.create_room()
    therapist = await take_seat(server, await server.owner_cookie(code), code)
    patients = [
        await take_seat(server, await server.patient_cookie(code, name), code)
        for name in ("Ann", "Bo")
    ]
    assert (await therapist.client.call("admit_all", {}))["ok"]
    ack = await therapist.client.call("start_pairs", {"duration_seconds": 30, "groups": None})
    assert ack["ok"], ack
    await patients[0].client.wait_for(
        lambda: (patients[0].client.last("activity") or {}).get("place", {}).get("spot") == "pair"
    )
    remaining_before, read_before = await remaining_now(patients[0], "pairs")
    room = await stores.get_room_by_code(server.database, RoomCode(code))
    assert room is not None
    session = await stores.get_open_session(server.database, room.id)
    assert session is not None

    stopped_at = time.monotonic()
    await server.runner.cleanup()
    for seat in (therapist, *patients):
        await asyncio.wait_for(_disconnected(seat.client), 10)
        assert seat.client.last("closed") is None, "a restart is not the end of the seat"
    await asyncio.sleep(DOWNTIME)

    restarted = await start_server(tmp_path, port=port, **SHORT_TIMERS)
    started_at = time.monotonic()
    try:
        for seat in (therapist, *patients):
            joined = await come_back(restarted, seat, code)
            assert joined["returned"], "back in the same seat"
            assert joined["participant_id"] == seat.pid
            assert joined["place"] == "plenary"
        resumed = await stores.get_open_session(restarted.database, room.id)
        assert resumed is not None and resumed.id == session.id, "the same session goes on"
        ann = patients[0]
        await ann.client.wait_for(lambda: ann.client.last("activity") is not None)
        activity = ann.client.last("activity")
        assert activity["place"]["spot"] == "pair"
        assert activity["with_ids"] == [patients[1].pid]
        remaining_after, read_after = await remaining_now(ann, "pairs")
        ran = (stopped_at - read_before) + (read_after - started_at)
        assert remaining_after <= remaining_before
        # The time that was left, less only the time a server was running: the
        # downtime (DOWNTIME, far above the slack) is not counted.
        assert remaining_after >= remaining_before - ran - SLACK, (
            remaining_before,
            remaining_after,
            ran,
        )
        # And the resumed timer still ends the pair work by itself.
        assert (await therapist.client.call("extend", {"seconds": 1}))["ok"]
        live = restarted.app[ROOMS].live_room(RoomCode(code))
        assert live is not None and live.state.breakout is not None
    finally:
        for seat in (therapist, *patients):
            await seat.client.close()
        await restarted.runner.cleanup()


async def test_a_segment_resumes_and_its_queue_goes_on(tmp_path: Path) -> None:
    server = await start_server(tmp_path, **SHORT_TIMERS)
    port = server.settings.port
    code = await server.create_room()
    therapist = await take_seat(server, await server.owner_cookie(code), code)
    ann = await take_seat(server, await server.patient_cookie(code, "Ann"), code)
    bo = await take_seat(server, await server.patient_cookie(code, "Bo"), code)
    assert (await therapist.client.call("admit_all", {}))["ok"]
    ack = await therapist.client.call(
        "start_segment",
        {"participant_ids": [ann.pid, bo.pid], "others": "hold", "duration_seconds": SEGMENT_S},
    )
    assert ack["ok"], ack
    await server.runner.cleanup()
    await asyncio.sleep(1.0)
    restarted = await start_server(tmp_path, port=port, **SHORT_TIMERS)
    try:
        for seat in (therapist, ann, bo):
            assert (await come_back(restarted, seat, code))["returned"]
        overview = therapist.client
        await overview.wait_for(lambda: overview.last("activity") is not None)
        segment = overview.last("activity")["facilitator"]["segment"]
        assert (segment["participant_id"], segment["queue"]) == (ann.pid, [bo.pid])
        await bo.client.wait_for(
            lambda: (bo.client.last("activity") or {}).get("place", {}).get("spot") == "hold"
        )
        # Ann's time runs out in the new server: Bo is next, then everyone is back.
        await bo.client.wait_for(
            lambda: bo.client.last("activity")["place"]["spot"] == "segment", timeout=20
        )
        await bo.client.wait_for(
            lambda: bo.client.last("activity")["place"]["spot"] == "plenary", timeout=20
        )
    finally:
        for seat in (therapist, ann, bo):
            await seat.client.close()
        await restarted.runner.cleanup()


async def test_seats_nobody_comes_back_to_end_after_the_reconnect_window(
    tmp_path: Path,
) -> None:
    server = await start_server(tmp_path, reconnect_grace=1.0)
    port = server.settings.port
    code = await server.create_room()
    therapist = await take_seat(server, await server.owner_cookie(code), code)
    room = await stores.get_room_by_code(server.database, RoomCode(code))
    assert room is not None
    session = await stores.get_open_session(server.database, room.id)
    assert session is not None
    await server.runner.cleanup()
    restarted = await start_server(tmp_path, port=port, reconnect_grace=1.0)
    try:
        rooms = restarted.app[ROOMS]
        assert rooms.live_room(RoomCode(code)) is not None, "resumed, seats held"
        for _ in range(200):
            if await stores.get_open_session(restarted.database, room.id) is None:
                break
            await asyncio.sleep(0.05)
        assert await stores.get_open_session(restarted.database, room.id) is None, (
            "nobody came back: the session ends"
        )
        assert rooms.live_room(RoomCode(code)) is None
        attendance = await stores.load_attendance(restarted.database, session.id)
        assert {a.leave_reason for a in attendance} == {LeaveReason.CONNECTION_LOST}
    finally:
        await therapist.client.close()
        await restarted.runner.cleanup()


async def test_a_server_down_for_longer_than_the_window_ends_its_sessions(
    tmp_path: Path,
) -> None:
    server = await start_server(tmp_path, resume_window=1.0)
    port = server.settings.port
    code = await server.create_room()
    therapist = await take_seat(server, await server.owner_cookie(code), code)
    await server.runner.cleanup()
    await asyncio.sleep(1.5)
    restarted = await start_server(tmp_path, port=port, resume_window=1.0)
    try:
        assert restarted.app[ROOMS].live_room(RoomCode(code)) is None
        again = await come_back(restarted, therapist, code)
        assert not again["returned"], "a new session, a new seat"
    finally:
        await therapist.client.close()
        await restarted.runner.cleanup()


async def _disconnected(client: Client) -> None:
    while client.sio.connected:
        await asyncio.sleep(0.05)


async def test_someone_removed_stays_out_after_a_restart(tmp_path: Path) -> None:
    server = await start_server(tmp_path)
    port = server.settings.port
    code = await server.create_room()
    therapist = await take_seat(server, await server.owner_cookie(code), code)
    bo = await take_seat(server, await server.patient_cookie(code, "Bo"), code)
    assert (await therapist.client.call("admit_all", {}))["ok"]
    bo_key = server.app[ROOMS].seat_key(RoomCode(code), ParticipantId(bo.pid))
    assert bo_key is not None
    assert (await therapist.client.call("remove", {"participant_id": bo.pid}))["ok"]
    await server.runner.cleanup()
    restarted = await start_server(tmp_path, port=port)
    try:
        assert (await come_back(restarted, therapist, code))["returned"]
        # Bo fills in the page before the session again (check-ins are memory-only).
        restarted.app[CHECKINS].record(bo_key, "Home", "Sam 0113 000")
        bo.client = await Client().connect(restarted.url, bo.cookie)
        refused = await bo.client.call("join", {"room_code": code})
        assert refused["error"]["code"] == "denied", refused
    finally:
        for seat in (therapist, bo):
            await seat.client.close()
        await restarted.runner.cleanup()
