"""The real server with real aiortc peers: churn, the largest room, dead media paths."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from telecircle.media.sfu import MediaCounts
from tests.conftest import ROOMS, SFU, SIGNALLING, RunningServer
from tests.integration.signalled_room import SignalledRoom, join_with_media
from tests.media.peer import SyntheticPeer, encode_media, wait_until

pytestmark = [pytest.mark.media, pytest.mark.timeout(240)]

CYCLES = 50


def server_footprint(server: RunningServer) -> tuple[MediaCounts, int, int]:
    return (
        server.app[SFU].counts(),
        server.app[SIGNALLING].connection_count(),
        server.app[ROOMS].live_room_count(),
    )


async def test_fifty_join_leave_cycles_leave_no_leftovers(tmp_path) -> None:
    from tests.conftest import start_server

    # Abrupt closes hold the seat for the reconnect window: keep it short here.
    server = await start_server(tmp_path, reconnect_grace=0.2)
    try:
        await fifty_cycles(server)
    finally:
        await server.runner.cleanup()


async def fifty_cycles(server: RunningServer) -> None:
    # Room for a few seats still held (briefly) by abruptly closed visitors.
    code = await server.create_room(limit=10)
    steady_client, steady_peer = await join_with_media(server, code, "Steady", 0)
    await asyncio.sleep(0.5)
    baseline = server_footprint(server)
    baseline_task_set = asyncio.all_tasks()
    baseline_tasks = len(baseline_task_set)

    for cycle in range(CYCLES):
        client, peer = await join_with_media(server, code, f"Visitor {cycle}", 1 + cycle % 5)
        if cycle % 2 == 0:
            assert (await client.call("leave"))["ok"]
            await client.close()
        else:
            # An abrupt close: no Leave, no close frame.
            await client.sio.eio.disconnect(abort=True)
        await peer.close()

    await wait_until(lambda: server_footprint(server) == baseline, timeout=30)
    # Tasks: the client side of this test owns tasks too, and a few come and go (socket
    # reads, pings), so allow a small slack. A leak of even one task per cycle would
    # leave 25 to 50 more behind.
    baseline_kinds = Counter(t.get_coro().__qualname__ for t in baseline_task_set)
    try:
        await wait_until(lambda: len(asyncio.all_tasks()) <= baseline_tasks + 8, timeout=30)
    except TimeoutError:
        now = Counter(t.get_coro().__qualname__ for t in asyncio.all_tasks())
        print("tasks grown:", now - baseline_kinds)
        raise
    assert server.app[SFU].counts().peer_connections == 2  # the steady participant's two

    await steady_client.call("leave")
    await steady_client.close()
    await steady_peer.close()
    await wait_until(lambda: server.app[SFU].counts().peer_connections == 0, timeout=10)
    assert server.app[ROOMS].live_room_count() == 0


async def test_largest_allowed_room_negotiates_within_the_message_limits(tmp_path) -> None:
    from tests.conftest import start_server

    # The organisation's maximum per room defaults to the default room limit: raise both.
    server = await start_server(tmp_path, room_limit_ceiling=16, default_room_limit=16)
    try:
        code = await server.create_room(limit=16)
        client, peer = await join_with_media(server, code, "Solo", 0)
        assert len(peer.slot_mids) == 15
        await client.close()
        await peer.close()
    finally:
        await server.runner.cleanup()


async def test_dead_media_path_keeps_the_seat_and_tells_the_client(tmp_path) -> None:
    from typing import Any

    from tests.conftest import start_server

    server = await start_server(tmp_path, ice_consent_interval=0.3, ice_consent_timeout=1.0)
    try:
        code = await server.create_room(limit=3)
        watcher, watcher_peer = await join_with_media(server, code, "Watcher", 0)
        client, peer = await join_with_media(server, code, "Cut", 1)
        await wait_until(lambda: server.app[SFU].counts().peer_connections == 4)
        await wait_until(
            lambda: all(
                t.receiver.transport.state == "connected" for t in peer.publish_pc.getTransceivers()
            )
        )
        # The peer's network vanishes: its UDP sockets close without any goodbye.
        for transceiver in peer.publish_pc.getTransceivers():
            connection: Any = transceiver.sender.transport.transport._connection
            for protocol in connection._protocols:
                protocol.transport.close()
        await client.wait_for(lambda: client.last("media_lost") is not None, timeout=20)
        await peer.close()
        # The seat stayed (the watcher never saw a leave); new connections, same seat.
        rosters = [data for name, data in watcher.events if name == "roster"]
        assert all(len(r["participants"]) == 2 for r in rosters[1:])
        renewed = SyntheticPeer(peer.pid, encode_media(2, frames=10))
        room = SignalledRoom(client)
        await renewed.publish(room)  # type: ignore[arg-type]
        await renewed.subscribe(room, 0)  # type: ignore[arg-type]
        await wait_until(lambda: server.app[SFU].counts().peer_connections == 4)
        for c, p in ((client, renewed), (watcher, watcher_peer)):
            await c.call("leave")
            await c.close()
            await p.close()
    finally:
        await server.runner.cleanup()
