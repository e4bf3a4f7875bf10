"""A subscriber that stops draining loses its own packets only."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from telecircle.domain.model import TrackKind, TrackRef
from telecircle.media.room import MediaRoom
from telecircle.media.settings import MediaSettings
from telecircle.media.subscriber import PACKET_BYTES

from .conftest import RoomEvents
from .peer import EncodedMedia, SyntheticPeer, wait_until

QUEUE = 16
LIMIT = QUEUE * PACKET_BYTES
MAX_DATAGRAM = 1500


class BlockedSocket:
    """Makes a datagram transport's socket take nothing: what is sent stays buffered
    (as asyncio's transports keep what the kernel refuses). The transport object stays
    the same one (the SFU keeps its send path); only its send and buffer size change."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.buffered = 0
        transport.sendto = self.sendto
        transport.get_write_buffer_size = self.get_write_buffer_size

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self.buffered += len(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def release(self) -> None:
        del self.transport.sendto  # the class's methods again
        del self.transport.get_write_buffer_size


@pytest.fixture
def media_settings() -> MediaSettings:
    return MediaSettings(subscriber_queue_packets=QUEUE, keyframe_request_interval=0.2)


async def test_stalled_subscriber_does_not_slow_others(
    room: MediaRoom, events: RoomEvents, media_library: list[EncodedMedia]
) -> None:
    publisher = SyntheticPeer("pub", media_library[2])
    healthy = SyntheticPeer("healthy", media_library[3])
    stalled = SyntheticPeer("stalled", media_library[4])
    peers = [publisher, healthy, stalled]
    try:
        await publisher.publish(room)
        for viewer in (healthy, stalled):
            await viewer.subscribe(room, slot_count=1)
        viewers = frozenset({healthy.pid, stalled.pid})
        room.set_audiences({TrackRef(publisher.pid, kind): viewers for kind in TrackKind})
        mids = healthy.slot_mids[0]
        await wait_until(lambda: all(v.received.packets[mids[1]] >= 3 for v in (healthy, stalled)))

        # Stall the stalled subscriber's server side at the lowest seam: its socket stops
        # taking datagrams, so they pile up in the transport's buffer (as asyncio's do when
        # the kernel refuses them).
        subscriber = room._subscribers[stalled.pid]
        dtls: Any = subscriber.connection.pc.getTransceivers()[0].sender.transport
        protocol = dtls.transport._connection._nominated[1].protocol
        blocked = BlockedSocket(protocol.transport)
        await wait_until(lambda: subscriber.dropped > 0)
        assert blocked.get_write_buffer_size() <= LIMIT + MAX_DATAGRAM

        def sent() -> int:
            assert publisher.audio_track and publisher.video_track
            return publisher.audio_track.sent + publisher.video_track.sent

        def got() -> int:
            return sum(healthy.received.packets[m] for m in mids)

        sent_before, got_before = sent(), got()
        await wait_until(lambda: sent() >= sent_before + 40)
        await asyncio.sleep(0.3)  # packets sent in the window reach the healthy peer
        # Allow for the packets in flight when the window opened.
        assert got() - got_before >= sent() - sent_before - 8
        assert blocked.get_write_buffer_size() <= LIMIT + MAX_DATAGRAM

        # Released: the stalled subscriber recovers, restarting video on a keyframe.
        blocked.release()
        keyframes = stalled.received.keyframes[mids[1]]
        await wait_until(lambda: stalled.received.keyframes[mids[1]] > keyframes)
    finally:
        for peer in peers:
            await peer.close()
        await room.close()
