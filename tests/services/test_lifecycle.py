"""Room service lifecycle: sessions open and close, shutdown persists every leave."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from telecircle.domain.commands import LeaveReason
from telecircle.domain.ids import RoomCode
from telecircle.media.sfu import MediaCounts
from telecircle.storage import stores
from tests.conftest import ROOMS, SFU, start_server
from tests.integration.signalled_room import join_with_media
from tests.signalling.client import Client

pytestmark = pytest.mark.timeout(60)


async def test_shutdown_closes_every_seat_and_session(tmp_path: Path) -> None:
    """Without resuming after a restart, a shutdown ends every seat and session."""
    server = await start_server(tmp_path, resume_after_restart=False)
    code = await server.create_room()
    people = [
        await Client().connect(server.url, await server.clinician_cookie(code, f"P{i}"))
        for i in range(3)
    ]
    for person in people:
        assert (await person.call("join", {"room_code": code}))["ok"]
    # And a patient still waiting in the lobby: their seat ends too.
    waiting = await Client().connect(server.url, await server.patient_cookie(code, "W"))
    knocked = await waiting.call("join", {"room_code": code})
    assert knocked["ok"] and knocked["data"]["place"] == "lobby", knocked
    people.append(waiting)
    room = await stores.get_room_by_code(server.database, RoomCode(code))
    assert room is not None
    session = await stores.get_open_session(server.database, room.id)
    assert session is not None
    # One more participant with real media, so there are peer connections to close.
    media_client, media_peer = await join_with_media(server, code, "M", 3)
    sfu = server.app[SFU]
    assert sfu.counts().peer_connections == 2
    await server.runner.cleanup()
    await media_peer.close()
    assert sfu.counts() == MediaCounts(), "every peer connection, queue and task is gone"
    for person in [*people, media_client]:
        for _ in range(100):
            if not person.sio.connected:
                break
            await asyncio.sleep(0.05)
        assert not person.sio.connected, "the server closed every socket"
        assert person.last("closed") is not None, "and said why first"

    # Reopen the same database: everything was recorded before the process let go.
    reopened = await start_server(tmp_path, resume_after_restart=False)
    try:
        ended = await stores.get_session(reopened.database, session.id)
        assert ended is not None and ended.status == "ended"
        attendance = await stores.load_attendance(reopened.database, session.id)
        assert len(attendance) == 4, "the waiting patient never attended"
        assert {a.leave_reason for a in attendance} == {LeaveReason.SERVER_SHUTDOWN}
        assert all(a.left_at is not None for a in attendance)
        timeline = await stores.load_timeline(reopened.database, session.id)
        left = [e.payload for e in timeline if e.kind == "participant_left"]
        assert {e["participant_id"] for e in left} >= {knocked["data"]["participant_id"]}
        assert {e["reason"] for e in left} == {"server_shutdown"}
        assert len(left) == 5
        for person in people:
            assert not person.sio.connected or person.last("closed") is not None
    finally:
        for person in people:
            if person.sio.connected:
                await person.close()
        await reopened.runner.cleanup()


async def test_empty_room_ends_its_session_and_a_new_join_opens_another(tmp_path: Path) -> None:
    server = await start_server(tmp_path)
    try:
        code = await server.create_room()
        person = await Client().connect(server.url, await server.clinician_cookie(code, "A"))
        first = await person.call("join", {"room_code": code})
        assert server.app[ROOMS].live_room_count() == 1
        await person.call("leave")
        assert server.app[ROOMS].live_room_count() == 0
        # Left for good (not dropped): the same person entering again gets a new seat.
        again = await person.call("join", {"room_code": code})
        assert again["ok"] and not again["data"]["returned"], again
        assert again["data"]["participant_id"] != first["data"]["participant_id"]
        room = await stores.get_room_by_code(server.database, RoomCode(code))
        assert room is not None
        open_session = await stores.get_open_session(server.database, room.id)
        assert open_session is not None
        await person.close()
    finally:
        await server.runner.cleanup()
