"""A shared screen: the publisher's second video m-line reaches, on the subscriber's
screen m-line, exactly the screen's audience, starting on a keyframe; the camera goes
on in its slot; taking the audience away stops it."""

from __future__ import annotations

import asyncio

from telecircle.domain.model import TrackKind, TrackRef
from telecircle.media.room import MediaRoom

from .conftest import RoomEvents, everyone_sees_everyone
from .peer import EncodedMedia, SyntheticPeer, wait_until

SETTLE = 0.5


async def test_a_screen_reaches_its_audience_only(
    room: MediaRoom, events: RoomEvents, media_library: list[EncodedMedia]
) -> None:
    doc = SyntheticPeer("doc", media_library[0])
    ann = SyntheticPeer("ann", media_library[1], decode=True)
    bo = SyntheticPeer("bo", media_library[2])
    peers = [doc, ann, bo]
    pids = [p.pid for p in peers]
    screen_colour = media_library[3].colour
    try:
        await doc.publish(room, screen=media_library[3])
        for peer in (ann, bo):
            await peer.publish(room)
        for peer in peers:
            await peer.subscribe(room, slot_count=2)
        audiences = everyone_sees_everyone(pids)
        audiences[TrackRef(doc.pid, TrackKind.SCREEN)] = frozenset({ann.pid})
        room.set_audiences(audiences)

        got = ann.received
        await wait_until(lambda: got.keyframes[ann.screen_mid] >= 1)
        await wait_until(lambda: sum(got.colours[ann.screen_mid].values()) >= 5)
        assert got.video_log[ann.screen_mid][0][3], "the screen starts on a keyframe"
        # What arrives on the screen m-line is the screen, not Doc's camera.
        assert got.colours[ann.screen_mid].most_common(1)[0][0] == screen_colour
        camera_mid = ann.mids_of(events.slots[ann.pid], doc.pid)[1]
        await wait_until(lambda: sum(got.colours[camera_mid].values()) >= 5)
        assert got.colours[camera_mid].most_common(1)[0][0] == media_library[0].colour
        # Bo is not in the screen's audience: his screen m-line stays silent.
        await wait_until(
            lambda: bo.received.packets[bo.mids_of(events.slots[bo.pid], doc.pid)[1]] >= 10
        )
        assert bo.received.packets[bo.screen_mid] == 0

        # Sharing stops: nothing more arrives on Ann's screen m-line, the camera goes on.
        room.set_audiences(everyone_sees_everyone(pids))
        await asyncio.sleep(SETTLE)
        screen_before, camera_before = got.packets[ann.screen_mid], got.packets[camera_mid]
        await wait_until(lambda: got.packets[camera_mid] >= camera_before + 10)
        assert got.packets[ann.screen_mid] == screen_before
    finally:
        for peer in peers:
            await peer.close()
            await room.remove(peer.pid)
