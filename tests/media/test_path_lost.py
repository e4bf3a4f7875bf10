"""A dead media path is noticed (ICE consent) and reported once; the room cleans it up."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aioice import stun

from telecircle.media.room import MediaRoom
from telecircle.media.settings import MediaSettings
from telecircle.media.sfu import Sfu

from .conftest import RoomEvents
from .peer import EncodedMedia, SyntheticPeer, wait_until


@pytest.fixture
def media_settings() -> MediaSettings:
    return MediaSettings(ice_consent_interval=0.3, ice_consent_timeout=1.0)


def peer_protocols(peer: SyntheticPeer) -> list[Any]:
    """The aioice UDP protocols (sockets) under the peer's publish connection."""
    assert peer.publish_pc is not None
    return [
        protocol
        for transceiver in peer.publish_pc.getTransceivers()
        for protocol in transceiver.sender.transport.transport._connection._protocols
    ]


def publish_connected(room: MediaRoom, peer: SyntheticPeer) -> bool:
    pc = room._publishers[peer.pid].connection.pc
    return all(t.receiver.transport.state == "connected" for t in pc.getTransceivers())


def cut_network(peer: SyntheticPeer) -> None:
    """Close the peer's UDP sockets without any goodbye, as a vanished client would."""
    for protocol in peer_protocols(peer):
        protocol.transport.close()


async def test_dead_publish_path_is_reported(
    sfu: Sfu, room: MediaRoom, events: RoomEvents, media_library: list[EncodedMedia]
) -> None:
    peer = SyntheticPeer("gone", media_library[6])
    try:
        await peer.publish(room)
        await wait_until(lambda: sfu.counts().publishers == 1)
        await wait_until(
            lambda: any(
                t.receiver.transport.state == "connected"
                for t in room._publishers[peer.pid].connection.pc.getTransceivers()
            )
        )
        cut_network(peer)
        await wait_until(lambda: events.lost == [peer.pid], timeout=15)
        await wait_until(lambda: sfu.counts().peer_connections == 0)
        assert sfu.counts().publishers == 0
    finally:
        await peer.close()
        await room.close()
    assert events.lost == [peer.pid]


async def test_removed_connections_are_not_reported_lost(
    sfu: Sfu, room: MediaRoom, events: RoomEvents, media_library: list[EncodedMedia]
) -> None:
    peer = SyntheticPeer("leaver", media_library[7])
    try:
        await peer.publish(room)
        await peer.subscribe(room, slot_count=1)
        await room.remove(peer.pid)
        await room.remove(peer.pid)  # idempotent
    finally:
        await peer.close()
    assert events.lost == []
    assert sfu.counts().peer_connections == 0


def delay_stun(peer: SyntheticPeer, delay: float) -> None:
    """Make the peer answer STUN (consent checks) ``delay`` seconds late, as a congested
    link with a long round trip would; media packets pass untouched."""
    loop = asyncio.get_running_loop()
    for protocol in peer_protocols(peer):
        deliver = protocol.datagram_received

        def late(data: bytes, addr: Any, deliver: Any = deliver) -> None:
            if data[:1] in (b"\x00", b"\x01"):  # STUN
                loop.call_later(delay, deliver, data, addr)
            else:
                deliver(data, addr)

        protocol.datagram_received = late


async def assert_path_survives(
    sfu: Sfu,
    room: MediaRoom,
    events: RoomEvents,
    peer: SyntheticPeer,
    fault: Callable[[SyntheticPeer], None],
    seconds: float,
) -> None:
    """Publish, apply ``fault`` to the peer's network, wait ``seconds``: no path lost."""
    try:
        await peer.publish(room)
        await wait_until(lambda: publish_connected(room, peer))
        fault(peer)
        await asyncio.sleep(seconds)
        assert events.lost == []
        assert sfu.counts().publishers == 1
    finally:
        await peer.close()
        await room.close()


async def test_slow_path_is_not_mistaken_for_a_dead_one(
    sfu: Sfu, room: MediaRoom, events: RoomEvents, media_library: list[EncodedMedia]
) -> None:
    """Consent answers arriving 1.2 s late (beyond aioice's 0.5 s per check) keep the path."""
    # Several consent timeouts (1.0 s each in this test) pass in 4 s; the path must live.
    peer = SyntheticPeer("slow", media_library[5])
    await assert_path_survives(sfu, room, events, peer, lambda p: delay_stun(p, 1.2), 4.0)


def drop_stun_responses(peer: SyntheticPeer) -> None:
    """The peer's answers to the server's consent checks never arrive (stuck behind a
    backlog, say), while the peer's own consent checks still do."""
    for protocol in peer_protocols(peer):
        send_stun = protocol.send_stun

        def filtered(message: Any, addr: Any, send_stun: Any = send_stun) -> None:
            if message.message_class != stun.Class.RESPONSE:
                send_stun(message, addr)

        protocol.send_stun = filtered


async def test_the_peers_own_checks_keep_the_path_alive(
    sfu: Sfu, room: MediaRoom, events: RoomEvents, media_library: list[EncodedMedia]
) -> None:
    # An unanswered check takes 3.5 s (with retransmissions): in 9 s at least two go
    # unanswered and many consent timeouts (1.0 s here) pass.
    peer = SyntheticPeer("backlogged", media_library[4])
    await assert_path_survives(sfu, room, events, peer, drop_stun_responses, 9.0)
