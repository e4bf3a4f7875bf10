"""Room service lifecycle: sessions open and close, shutdown persists every leave."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from telecircle.domain.commands import LeaveReason
from telecircle.media.sfu import MediaCounts
from telecircle.storage import stores
from tests.conftest import ROOMS, SFU, start_server
from tests.integration.signalled_room import join_with_media
from tests.signalling.client import Client

pytestmark = pytest.mark.timeout(60)


async def test_shutdown_closes_every_seat_and_session(tmp_path: Path) -> None:
    server = await start_server(tmp_path)
    code = await server.create_room()
    people = [await Client().connect(server.url) for _ in range(3)]
    for i, person in enumerate(people):
        assert (await person.call("join", {"room_code": code, "display_name": f"P{i}"}))["ok"]
    room = await stores.get_room_by_code(server.database, code)
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
    reopened = await start_server(tmp_path)
    try:
        ended = await stores.get_session(reopened.database, session.id)
        assert ended is not None and ended.status == "ended"
        attendance = await stores.load_attendance(reopened.database, session.id)
        assert len(attendance) == 4
        assert {a.leave_reason for a in attendance} == {LeaveReason.SERVER_SHUTDOWN}
        assert all(a.left_at is not None for a in attendance)
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
        person = await Client().connect(server.url)
        await person.call("join", {"room_code": code, "display_name": "A"})
        assert server.app[ROOMS].live_room_count() == 1
        await person.call("leave")
        assert server.app[ROOMS].live_room_count() == 0
        await person.call("join", {"room_code": code, "display_name": "A"})
        room = await stores.get_room_by_code(server.database, code)
        assert room is not None
        open_session = await stores.get_open_session(server.database, room.id)
        assert open_session is not None
        await person.close()
    finally:
        await server.runner.cleanup()
