"""What the test process holds: the figures leak tests compare before and after.

Server and test clients share the process, so the figures count both; tests compare them
with the same clients alive before and after.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import resource
import types
import weakref
from collections import Counter
from dataclasses import dataclass

from aiortc import RTCPeerConnection
from aiortc.rtp import RtpPacket

from telecircle.media.sfu import MediaCounts
from tests.conftest import ROOMS, SFU, SIGNALLING, RunningServer

PAGE_KIB = resource.getpagesize() // 1024


def open_fds() -> int:
    """File descriptors of this process (sockets included)."""
    return len(os.listdir("/proc/self/fd"))


def rss_kib() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_KIB


@dataclass(frozen=True)
class Footprint:
    tasks: int
    fds: int
    media: MediaCounts
    # RTCPeerConnection objects alive anywhere in the process (the SFU's and the test's).
    peer_connections: int
    signalling_connections: int
    live_rooms: int
    objects: int
    packets: int
    # Engine.io sockets, closed ones included until its service task sweeps them.
    engine_sockets: int
    rss_kib: int

    def line(self) -> str:
        return (
            f"tasks={self.tasks} fds={self.fds} sfu_pcs={self.media.peer_connections} "
            f"pc_objects={self.peer_connections} publishers={self.media.publishers} "
            f"subscribers={self.media.subscribers} queues={self.media.queues} "
            f"media_tasks={self.media.tasks} sockets={self.signalling_connections} "
            f"engine_sockets={self.engine_sockets} rooms={self.live_rooms} "
            f"gc_objects={self.objects} rtp_packets={self.packets} rss_kib={self.rss_kib}"
        )


def clear_bounded_caches() -> None:
    """Empty every ``functools.lru_cache`` with a maximum size (yarl's URL caches, say):
    they hold at most that many entries, and fill slowly over a run. Unbounded ones are
    left alone: one keyed by something per participant would be a leak."""
    for o in gc.get_objects():
        if isinstance(o, functools._lru_cache_wrapper) and o.cache_parameters()["maxsize"]:
            o.cache_clear()


def counted(o: object) -> bool:
    """Weak references (and their callbacks) are not counted: they keep nothing alive, and
    hundreds come and go by themselves (CPython's ABC caches, sqlite3's list of cursors)."""
    if isinstance(o, weakref.ReferenceType):
        return False
    return not (
        isinstance(o, types.BuiltinMethodType)
        and isinstance(getattr(o, "__self__", None), weakref.ReferenceType)
    )


def live_objects() -> tuple[list[object], int]:
    """The gc-tracked objects that count (see :func:`counted`), after a full collection,
    and the number of RTP packets alive, which are not among them: packets are held in
    buffers bounded by design (aiortc keeps the last 128 sent per sender, the SFU a NACK
    history per slot, receivers a jitter buffer) that fill at the media's pace, not the
    test's. Each packet is three objects: itself, its header extensions, its CSRC list."""
    clear_bounded_caches()
    gc.collect()
    objects = gc.get_objects()
    packets = [o for o in objects if isinstance(o, RtpPacket)]
    parts = {id(part) for p in packets for part in (p, p.extensions, p.csrc)}
    return [o for o in objects if counted(o) and id(o) not in parts], len(packets)


def object_types() -> Counter[str]:
    return Counter(type(o).__qualname__ for o in live_objects()[0])


def footprint(server: RunningServer) -> Footprint:
    objects, packets = live_objects()
    peer_connections = sum(1 for o in objects if isinstance(o, RTCPeerConnection))
    return Footprint(
        tasks=len(asyncio.all_tasks()),
        fds=open_fds(),
        media=server.app[SFU].counts(),
        peer_connections=peer_connections,
        signalling_connections=server.app[SIGNALLING].connection_count(),
        live_rooms=server.app[ROOMS].live_room_count(),
        objects=len(objects),
        packets=packets,
        engine_sockets=len(server.app[SIGNALLING].sio.eio.sockets),
        rss_kib=rss_kib(),
    )
