"""Churn: 200 join/leave cycles of one participant through the real signalling server,
each publishing and subscribing with real aiortc peers, ended in every way a session
ends — Leave, a tab closed, a socket dropped without goodbye, a peer connection closed
without signalling, the network path lost — plus participants who vanish for good.

Once the cycles and the reconnect windows are over, the process must hold what it held
before (after a warm-up): no more asyncio tasks, file descriptors (sockets), peer
connections, subscriber queues or signalling connections, and memory within a small
bound. The figures are printed (run with -s to see them).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from telecircle.domain.ids import RoomCode
from tests.conftest import ROOMS, SFU, SIGNALLING, RunningServer, start_server
from tests.integration.footprint import Footprint, footprint, object_types, open_fds
from tests.integration.peers import (
    STEP,
    cut_network,
    drop_socket,
    join_signalled,
    publishing,
    receives_video,
)
from tests.integration.signalled_room import join_with_media
from tests.media.peer import EncodedMedia, SyntheticPeer, encode_media, wait_until
from tests.signalling.client import Client

pytestmark = [pytest.mark.media, pytest.mark.timeout(240)]

CYCLES = 200
# Seats: the steady one, the cycling one, and vanished ones until their windows end.
LIMIT = 5
WARM_UP = 20
# The SFU's per-slot NACK history (packets), small so it fills during the warm-up.
HISTORY_PACKETS = 16
# Every this many cycles, wait for media to flow both ways before ending the cycle.
FLOW_EVERY = 20
# At these cycles someone joins with media, loses their network and never returns.
VANISH_AT = (10, 60, 110, 160)
KINDS = ("leave", "tab_closed", "peer_closed", "path_lost", "socket_dropped")
# Short windows so that a whole run takes well under a minute.
SETTINGS: dict[str, Any] = {
    "reconnect_grace": 0.3,
    "ice_consent_interval": 0.3,
    "ice_consent_timeout": 1.0,
    # Engine.io forgets a closed socket within a sweep (the ping timeout) and its last
    # task within a ping interval; the steady client answers on loopback well within.
    "socket_ping_interval": 0.5,
    "socket_ping_timeout": 2.0,
}
# Footprints taken (0.2 s apart) for each of before and after.
SAMPLES = 5
# Slack for what comes and goes on its own (socket reads, pings, timers): far below what
# a leak of one task or one socket per cycle would leave (CYCLES of them).
TASK_SLACK = 16
FD_SLACK = 4
# gc-tracked objects per cycle: one leaked object per cycle would be 1.0 on top of the
# noise (+0.1 to +0.6 seen: timers and tasks in flight, pools and caches still filling).
OBJECTS_PER_CYCLE = 0.9
# Resident memory per cycle, in KiB. The allocator keeps what it once had (thread stacks,
# arenas at the busiest moments): a 400-cycle run grew 6.6 MiB over its first 100 cycles
# and 0.9 MiB over the next 300. A leaked peer connection per cycle is far more (about
# 2 MiB each for the test peers' subscribe connections that leaked before
# GuardedPeerConnection: +97 MiB over a run).
RSS_KIB_PER_CYCLE = 96


class Session:
    """The room, its steady participant and the cycling one's sign-in."""

    def __init__(self, server: RunningServer, code: str, media: EncodedMedia) -> None:
        self.server = server
        self.code = code
        self.media = media
        self.cookie = ""
        self.steady: tuple[Client, SyntheticPeer] | None = None
        self.lost_seen = 0

    async def start(self) -> None:
        self.steady = await join_with_media(self.server, self.code, "Steady", 0)
        self.cookie = await self.server.clinician_cookie(self.code, "Cycler")

    def seats(self) -> int:
        live = self.server.app[ROOMS].live_room(RoomCode(self.code))
        return 0 if live is None else len(live.state.participants)

    async def cycle(self, n: int) -> None:
        assert self.steady is not None
        steady_client, steady_peer = self.steady
        # The test client records every event it gets: keep only what is read (the
        # slots), or the record itself grows with every cycle.
        slots = steady_client.last("slots")
        steady_client.events[:] = [] if slots is None else [("slots", slots)]
        kind = KINDS[n % len(KINDS)]
        client, peer = await self.join(self.cookie)
        pid = peer.pid
        if n % FLOW_EVERY == 0:
            await asyncio.gather(
                receives_video(steady_client, steady_peer, pid),
                receives_video(client, peer, steady_peer.pid),
            )
        if kind == "leave":
            assert (await client.call("leave"))["ok"]
            await client.close()
            await peer.close()
        elif kind == "tab_closed":
            # A closed tab: the websocket closes, without a Leave; the seat is held.
            await client.sio.eio.disconnect(abort=True)
            await peer.close()
        elif kind == "socket_dropped":
            await drop_socket(client)
            await peer.close()
        elif kind == "peer_closed":
            # The peer connections close with no word on the signalling socket: the
            # server notices (DTLS close), tells the client, who then leaves.
            await wait_until(lambda: publishing(peer), 15, STEP)
            await peer.close()
            await client.wait_for(lambda: client.last("media_lost") is not None, timeout=20)
            assert (await client.call("leave"))["ok"]
            await client.close()
        else:
            # The network goes: UDP stops, the socket is cut; the next cycle comes back
            # into the held seat and replaces the dead connections.
            await wait_until(lambda: publishing(peer), 15, STEP)
            cut_network(peer)
            await drop_socket(client)
            await peer.close()

    async def join(self, cookie: str) -> tuple[Client, SyntheticPeer]:
        return await join_signalled(self.server, self.code, cookie, self.media)

    async def fill_every_slot(self, limit: int) -> None:
        """Everyone the room can hold joins at once and stays until the steady participant
        has received video on every slot: every per-slot buffer is then as full as it
        gets, and the process has held the most connections it will."""
        assert self.steady is not None
        steady_client, steady_peer = self.steady
        cookies = [
            await self.server.clinician_cookie(self.code, f"Filler {i}") for i in range(limit - 1)
        ]
        joined = [await self.join(cookie) for cookie in cookies]
        await asyncio.gather(
            *(
                receives_video(steady_client, steady_peer, peer.pid, HISTORY_PACKETS + 4)
                for _, peer in joined
            )
        )
        for client, peer in joined:
            assert (await client.call("leave"))["ok"]
            await client.close()
            await peer.close()

    async def vanish(self, n: int) -> None:
        """Join with media, lose the network (UDP first, the socket later), never return."""
        cookie = await self.server.clinician_cookie(self.code, f"Vanisher {n}")
        client, peer = await self.join(cookie)
        await wait_until(lambda: publishing(peer), 15, STEP)
        cut_network(peer)
        # The server notices the dead path by itself (ICE consent) and says so.
        await client.wait_for(lambda: client.last("media_lost") is not None, timeout=30)
        self.lost_seen += 1
        await drop_socket(client)
        await peer.close()

    async def settled(self, baseline: Footprint | None) -> None:
        """Wait until only the steady participant is left, with its connections, its one
        socket (engine.io's closed ones swept too) and, given a baseline, no more tasks
        or descriptors than then (with slack)."""
        sfu = self.server.app[SFU]
        signalling = self.server.app[SIGNALLING]

        def only_steady() -> bool:
            counts = sfu.counts()
            return (
                self.seats() == 1
                and signalling.connection_count() == 1
                and len(signalling.sio.eio.sockets) == 1
                and (counts.peer_connections, counts.publishers, counts.subscribers) == (2, 1, 1)
            )

        await wait_until(only_steady, timeout=30)
        if baseline is not None:
            await wait_until(lambda: len(asyncio.all_tasks()) <= baseline.tasks + TASK_SLACK)
            await wait_until(lambda: open_fds() <= baseline.fds + FD_SLACK)
        await asyncio.sleep(0.5)


async def quiet_footprint(server: RunningServer) -> Footprint:
    """The least of a few footprints taken apart, figure by figure: media keeps flowing
    (the steady participant's), so packets, timers and tasks in flight come and go."""
    samples = []
    for _ in range(SAMPLES):
        samples.append(footprint(server))
        await asyncio.sleep(0.2)
    least = {
        name: min(getattr(sample, name) for sample in samples)
        for name in ("tasks", "fds", "objects", "rss_kib")
    }
    return dataclasses.replace(samples[-1], **least)


def growth(before: Counter[str], after: Counter[str]) -> str:
    grown = (after - before).most_common(8)
    return ", ".join(f"{name}+{count}" for name, count in grown) or "none"


async def test_two_hundred_join_leave_cycles_leave_nothing_behind(tmp_path: Path) -> None:
    server = await start_server(tmp_path, **SETTINGS)
    sfu = server.app[SFU]
    sfu.settings = dataclasses.replace(sfu.settings, history_packets=HISTORY_PACKETS)
    try:
        code = await server.create_room(limit=LIMIT)
        session = Session(server, code, encode_media(1, frames=10))
        await session.start()
        await session.fill_every_slot(LIMIT)
        for n in range(WARM_UP):
            await session.cycle(n)
        await session.settled(None)
        before = await quiet_footprint(server)
        types_before = object_types()

        started = time.perf_counter()
        vanishers: list[asyncio.Task[None]] = []
        for n in range(CYCLES):
            if n in VANISH_AT:
                vanishers.append(asyncio.create_task(session.vanish(n)))
            await session.cycle(WARM_UP + n)
        elapsed = time.perf_counter() - started
        await asyncio.gather(*vanishers)
        await session.settled(before)
        after = await quiet_footprint(server)
        types_after = object_types()

        each = 1000 * elapsed / CYCLES
        print(f"\nchurn: {CYCLES} cycles in {elapsed:.1f} s ({each:.0f} ms each)")
        print(f"  kinds: {', '.join(KINDS)} in turn; {len(VANISH_AT)} vanished participants")
        print(f"  before: {before.line()}")
        print(f"  after:  {after.line()}")
        objects_per_cycle = (after.objects - before.objects) / CYCLES
        rss_per_cycle = (after.rss_kib - before.rss_kib) / CYCLES
        print(
            f"  per cycle: gc objects {objects_per_cycle:+.2f}, RSS {rss_per_cycle:+.1f} KiB "
            f"(ratio after/before {after.rss_kib / before.rss_kib:.3f})"
        )
        print(f"  object types grown: {growth(types_before, types_after)}")
        print(f"  object types shrunk: {growth(types_after, types_before)}")

        assert session.lost_seen == len(VANISH_AT)
        assert after.media == before.media
        assert after.peer_connections == before.peer_connections
        assert after.signalling_connections == before.signalling_connections == 1
        assert after.engine_sockets == before.engine_sockets == 1
        assert after.tasks <= before.tasks + TASK_SLACK
        assert after.fds <= before.fds + FD_SLACK
        assert objects_per_cycle < OBJECTS_PER_CYCLE
        assert rss_per_cycle < RSS_KIB_PER_CYCLE
    finally:
        await server.runner.cleanup()
