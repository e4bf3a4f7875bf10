"""A subscriber's keyframe request (RTCP PLI) reaches the publisher, rate-limited.

The synthetic source restarts at a keyframe on every request, so these tests count the
publisher's requests (``ReplayTrack.keyframes_requested``) instead of watching pictures.
"""

from __future__ import annotations

import asyncio

import pytest

from telecircle.media.room import MediaRoom
from telecircle.media.settings import MediaSettings

from .conftest import RoomEvents, everyone_sees_everyone
from .peer import EncodedMedia, SyntheticPeer, wait_until

INTERVAL = 1.0


def requests(peer: SyntheticPeer) -> int:
    assert peer.video_track is not None
    return peer.video_track.keyframes_requested


async def start(
    room: MediaRoom, events: RoomEvents, publisher: SyntheticPeer, viewers: list[SyntheticPeer]
) -> list[str]:
    """Publisher's video reaches every viewer; returns each viewer's video mid for it."""
    await publisher.publish(room)
    for viewer in viewers:
        await viewer.subscribe(room, slot_count=1)
    room.set_audiences(everyone_sees_everyone([publisher.pid] + [v.pid for v in viewers]))
    await wait_until(lambda: all(v.pid in events.slots for v in viewers))
    mids = [v.mids_of(events.slots[v.pid], publisher.pid)[1] for v in viewers]
    await wait_until(
        lambda: all(v.received.keyframes[m] >= 1 for v, m in zip(viewers, mids, strict=True))
    )
    return mids


async def quiet(publisher: SyntheticPeer, period: float) -> None:
    """Wait (bounded) until no keyframe request reached the publisher for ``period``."""
    for _ in range(10):
        before = requests(publisher)
        await asyncio.sleep(period)
        if requests(publisher) == before:
            return
    raise AssertionError("keyframe requests never stopped")


async def test_subscriber_pli_reaches_the_publisher(
    room: MediaRoom, events: RoomEvents, media_library: list[EncodedMedia]
) -> None:
    publisher = SyntheticPeer("pub", media_library[0])
    viewer = SyntheticPeer("viewer", media_library[1])
    try:
        (mid,) = await start(room, events, publisher, [viewer])
        await quiet(publisher, 0.5)
        before = requests(publisher)
        await viewer.send_pli(mid)
        await wait_until(lambda: requests(publisher) > before, timeout=5)
    finally:
        await publisher.close()
        await viewer.close()
        await room.close()


@pytest.fixture
def media_settings() -> MediaSettings:
    return MediaSettings(keyframe_request_interval=INTERVAL)


async def test_a_burst_of_plis_is_rate_limited(
    room: MediaRoom, events: RoomEvents, media_library: list[EncodedMedia]
) -> None:
    publisher = SyntheticPeer("pub", media_library[2])
    viewers = [SyntheticPeer(f"viewer{i}", media_library[3 + i]) for i in range(3)]
    try:
        mids = await start(room, events, publisher, viewers)
        await quiet(publisher, INTERVAL + 0.2)
        before = requests(publisher)
        loop = asyncio.get_running_loop()
        burst_start = loop.time()
        # 20 PLIs from three subscribers spread over 0.4 s (less than the interval, and
        # across many incoming packets, each of which could carry a request upstream).
        for i in range(20):
            await viewers[i % 3].send_pli(mids[i % 3])
            await asyncio.sleep(0.02)
        assert loop.time() - burst_start < INTERVAL
        # Count until 1.5 intervals after the burst began: requests at least one interval
        # apart fit at most twice in that window.
        await asyncio.sleep(burst_start + 1.5 * INTERVAL - loop.time())
        assert 1 <= requests(publisher) - before <= 2
    finally:
        await publisher.close()
        for viewer in viewers:
            await viewer.close()
        await room.close()
