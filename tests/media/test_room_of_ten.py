"""Ten real aiortc participants: everyone receives everyone else, from the right sender."""

from __future__ import annotations

import asyncio

from telecircle.media.room import MediaRoom
from telecircle.media.sfu import Sfu

from .conftest import RoomEvents, everyone_sees_everyone
from .peer import EncodedMedia, SyntheticPeer, wait_until

SIZE = 10
# Decoding 9 video tracks in every peer is too heavy for a 2-core test machine: two
# peers decode and identify each sender by colour; every peer counts packets per mid.
DECODING = 2


async def test_room_of_ten_everyone_receives_everyone(
    sfu: Sfu, room: MediaRoom, events: RoomEvents, media_library: list[EncodedMedia]
) -> None:
    peers = [SyntheticPeer(f"p{i}", media_library[i], decode=i < DECODING) for i in range(SIZE)]
    try:
        await asyncio.gather(*(peer.publish(room) for peer in peers))
        await asyncio.gather(*(peer.subscribe(room, slot_count=SIZE - 1) for peer in peers))
        room.set_audiences(everyone_sees_everyone([peer.pid for peer in peers]))

        def pair_ok(viewer: SyntheticPeer, owner: SyntheticPeer) -> bool:
            assignments = events.slots.get(viewer.pid)
            if assignments is None:
                return False
            audio_mid, video_mid = viewer.mids_of(assignments, owner.pid)
            got = viewer.received
            if got.packets[audio_mid] < 5 or got.packets[video_mid] < 5:
                return False
            return not viewer.decode or sum(got.colours[video_mid].values()) >= 3

        pairs = [(v, o) for v in peers for o in peers if v is not o]
        try:
            await wait_until(lambda: all(pair_ok(v, o) for v, o in pairs), timeout=40)
        except TimeoutError:
            missing = [(v.pid, o.pid) for v, o in pairs if not pair_ok(v, o)]
            detail = {p.pid: dict(p.received.packets) for p in peers[:3]}
            message = f"no media for {missing[:20]} ({len(missing)}); {detail}"
            raise AssertionError(message) from None

        for viewer in peers[:DECODING]:
            for owner in peers:
                if owner is viewer:
                    continue
                _, video_mid = viewer.mids_of(events.slots[viewer.pid], owner.pid)
                colour, _ = viewer.received.colours[video_mid].most_common(1)[0]
                assert colour == owner.media.colour, (viewer.pid, owner.pid)
        counts = sfu.counts()
        assert (counts.publishers, counts.subscribers) == (SIZE, SIZE)
    finally:
        await asyncio.gather(*(peer.close() for peer in peers))
        await room.close()
    assert sfu.counts().peer_connections == 0
