"""A media connection that never connects is given up after the connect timeout.

aioice 0.13 waits for good when a client names no candidate the server may check and
never checks the server's own candidates (and browsers do not send end-of-candidates),
so without the deadline such a connection would hold its socket until the seat ends.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from telecircle.domain.ids import ParticipantId
from telecircle.media.room import MediaRoom
from telecircle.media.settings import MediaSettings
from telecircle.media.sfu import Sfu

from .conftest import RoomEvents
from .peer import EncodedMedia, SyntheticPeer, wait_until
from .test_invalid_sdp import candidate_line, client_offer

CONNECT_TIMEOUT = 2.0


@pytest.fixture
def media_settings() -> MediaSettings:
    return MediaSettings(connect_timeout=CONNECT_TIMEOUT)


def silent_offer(offer: str) -> str:
    """The offer with only an address outside the server's policy, and no end-of-candidates:
    a client that will never be heard from."""
    offer = re.sub(r"^a=end-of-candidates\r\n", "", offer, flags=re.M)
    return re.sub(
        r"^a=candidate:[^\r\n]*\r\n", candidate_line("10.0.0.1", 40021), offer, flags=re.M
    )


async def test_silent_connection_is_given_up(sfu: Sfu, room: MediaRoom, events: RoomEvents) -> None:
    pid = ParticipantId("silent")
    try:
        await room.publish(pid, silent_offer(await client_offer(["audio", "video"])))
        # The deadline runs from the answer: still waiting.
        assert (sfu.counts().peer_connections, events.lost) == (1, [])
        await wait_until(lambda: events.lost == [pid], timeout=CONNECT_TIMEOUT * 5)
        await wait_until(lambda: sfu.counts().peer_connections == 0)
        assert sfu.counts().publishers == 0
    finally:
        await room.close()
    assert events.lost == [pid]


async def test_connected_peers_outlive_the_deadline(
    sfu: Sfu, room: MediaRoom, events: RoomEvents, media_library: list[EncodedMedia]
) -> None:
    peer = SyntheticPeer("healthy", media_library[5])
    try:
        await peer.publish(room)
        await peer.subscribe(room, slot_count=1)
        connections = [
            room._publishers[peer.pid].connection,
            room._subscribers[peer.pid].connection,
        ]
        await wait_until(
            lambda: all(c.pc.connectionState == "connected" for c in connections), timeout=20
        )
        await asyncio.sleep(CONNECT_TIMEOUT)  # past the deadline, had it been left running
        for connection in connections:
            connection._connect_overdue()  # and as if it fired now
        assert events.lost == []
        assert sfu.counts().peer_connections == 2
    finally:
        await peer.close()
        await room.close()
