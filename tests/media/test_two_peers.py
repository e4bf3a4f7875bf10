"""Two real aiortc participants exchange audio and video through the SFU."""

from __future__ import annotations

from telecircle.media.room import MediaRoom
from telecircle.media.sfu import Sfu

from .conftest import RoomEvents, everyone_sees_everyone
from .peer import EncodedMedia, SyntheticPeer, wait_until


async def test_two_participants_exchange_audio_and_video(
    sfu: Sfu, room: MediaRoom, events: RoomEvents, media_library: list[EncodedMedia]
) -> None:
    alice = SyntheticPeer("alice", media_library[0], decode=True)
    bob = SyntheticPeer("bob", media_library[1], decode=True)
    peers = [alice, bob]
    try:
        for peer in peers:
            await peer.publish(room)
            await peer.subscribe(room, slot_count=2)
        room.set_audiences(everyone_sees_everyone([alice.pid, bob.pid]))

        def mids(viewer: SyntheticPeer, owner: SyntheticPeer) -> tuple[str, str]:
            return viewer.mids_of(events.slots[viewer.pid], owner.pid)

        def delivered() -> bool:
            for viewer, owner in ((alice, bob), (bob, alice)):
                if viewer.pid not in events.slots:
                    return False
                audio_mid, video_mid = mids(viewer, owner)
                got = viewer.received
                if got.audio_frames[audio_mid] < 5 or sum(got.colours[video_mid].values()) < 5:
                    return False
            return True

        await wait_until(delivered)
        for viewer, owner in ((alice, bob), (bob, alice)):
            _, video_mid = mids(viewer, owner)
            colours = viewer.received.colours[video_mid]
            assert colours.most_common(1)[0][0] == owner.media.colour
            # Slot 1 is unused: nothing is sent on it.
            assert events.slots[viewer.pid][1] == (1, None)
            assert viewer.received.packets[viewer.slot_mids[1][1]] == 0
        assert sfu.counts().publishers == 2
    finally:
        for peer in peers:
            await peer.close()
        await room.close()
    assert sfu.counts().peer_connections == 0
