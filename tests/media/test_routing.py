"""Routing changes: audiences stop and resume delivery; a slot switches publisher seamlessly."""

from __future__ import annotations

import asyncio
import itertools

from telecircle.domain.ids import ParticipantId
from telecircle.domain.model import TrackKind, TrackRef
from telecircle.media.room import MediaRoom

from .conftest import RoomEvents, everyone_sees_everyone
from .peer import EncodedMedia, SyntheticPeer, wait_until

SETTLE = 0.5  # lets packets already queued or in flight arrive


def audiences_without(
    pids: list[ParticipantId], owner: ParticipantId, viewer: ParticipantId, kinds: set[TrackKind]
) -> dict[TrackRef, frozenset[ParticipantId]]:
    audiences = everyone_sees_everyone(pids)
    for kind in kinds:
        ref = TrackRef(owner, kind)
        audiences[ref] = audiences[ref] - {viewer}
    return audiences


async def test_audience_change_stops_and_resumes_with_keyframe(
    room: MediaRoom, events: RoomEvents, media_library: list[EncodedMedia]
) -> None:
    alice, bob, carol = (SyntheticPeer(n, media_library[i]) for i, n in enumerate(("a", "b", "c")))
    peers = [alice, bob, carol]
    pids = [p.pid for p in peers]
    try:
        for peer in peers:
            await peer.publish(room)
            await peer.subscribe(room, slot_count=2)
        room.set_audiences(everyone_sees_everyone(pids))
        got = carol.received

        def carol_mids() -> tuple[str, str]:
            return carol.mids_of(events.slots[carol.pid], alice.pid)

        await wait_until(lambda: carol.pid in events.slots and got.keyframes[carol_mids()[1]] >= 1)
        audio_mid, video_mid = carol_mids()
        await wait_until(lambda: got.packets[video_mid] >= 5 and got.packets[audio_mid] >= 5)

        # Carol may no longer see Alice (audio still allowed): the slot stays, video stops.
        room.set_audiences(audiences_without(pids, alice.pid, carol.pid, {TrackKind.VIDEO}))
        await asyncio.sleep(SETTLE)
        video_before, audio_before = got.packets[video_mid], got.packets[audio_mid]
        await wait_until(lambda: got.packets[audio_mid] >= audio_before + 5)
        assert got.packets[video_mid] == video_before
        assert carol_mids() == (audio_mid, video_mid)

        # Restored: video resumes, and the first packet Carol gets is a keyframe.
        log_length = len(got.video_log[video_mid])
        room.set_audiences(everyone_sees_everyone(pids))
        await wait_until(lambda: got.packets[video_mid] >= video_before + 5)
        resumed = got.video_log[video_mid][log_length:]
        assert resumed[0][3], "video resumed without a keyframe"

        # Removed from both of Alice's tracks: the slot is freed and nothing arrives.
        room.set_audiences(
            audiences_without(pids, alice.pid, carol.pid, {TrackKind.AUDIO, TrackKind.VIDEO})
        )
        assert alice.pid not in {owner for _, owner in events.slots[carol.pid]}
        await asyncio.sleep(SETTLE)
        counts = (got.packets[audio_mid], got.packets[video_mid])
        bob_video = carol.mids_of(events.slots[carol.pid], bob.pid)[1]
        bob_before = got.packets[bob_video]
        await wait_until(lambda: got.packets[bob_video] >= bob_before + 10)
        assert (got.packets[audio_mid], got.packets[video_mid]) == counts

        # And back: Alice gets a slot again (the freed one is reused), starting on a keyframe.
        log_length = len(got.video_log[video_mid])
        room.set_audiences(everyone_sees_everyone(pids))
        assert carol_mids() == (audio_mid, video_mid)
        await wait_until(lambda: len(got.video_log[video_mid]) > log_length)
        assert got.video_log[video_mid][log_length][3]
    finally:
        for peer in peers:
            await peer.close()
        await room.close()


async def test_slot_switches_publisher_with_continuous_numbering(
    room: MediaRoom, events: RoomEvents, media_library: list[EncodedMedia]
) -> None:
    alice, bob = SyntheticPeer("a", media_library[3]), SyntheticPeer("b", media_library[4])
    viewer = SyntheticPeer("v", media_library[5], decode=True)
    peers = [alice, bob, viewer]
    try:
        for peer in peers:
            await peer.publish(room)
        await viewer.subscribe(room, slot_count=1)
        _, video_mid = viewer.slot_mids[0]
        colours = viewer.received.colours[video_mid]

        def only(owner: ParticipantId) -> dict[TrackRef, frozenset[ParticipantId]]:
            return {TrackRef(owner, kind): frozenset({viewer.pid}) for kind in TrackKind}

        room.set_audiences(only(alice.pid))
        await wait_until(lambda: colours[alice.media.colour] >= 5)
        room.set_audiences(only(bob.pid))
        assert events.slots[viewer.pid] == [(0, bob.pid)]
        await wait_until(lambda: colours[bob.media.colour] >= 5)

        log = viewer.received.video_log[video_mid]
        for (seq, ts, pic, _), (next_seq, next_ts, next_pic, _) in itertools.pairwise(log):
            assert 1 <= (next_seq - seq) % 65536 <= 50, "sequence number jumped"
            assert (next_ts - ts) % (1 << 32) < 90_000 * 5, "timestamp went backwards"
            assert (next_pic - pic) % 32768 <= 5, "picture id jumped"
    finally:
        for peer in peers:
            await peer.close()
        await room.close()
