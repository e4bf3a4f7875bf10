"""Nothing leaks: connections, queues and tasks are gone after remove/close."""

from __future__ import annotations

import asyncio

from telecircle.media.room import MediaRoom
from telecircle.media.sfu import MediaCounts, Sfu

from .conftest import RoomEvents, everyone_sees_everyone
from .peer import EncodedMedia, SyntheticPeer, wait_until

CYCLES = 50
# Every few cycles, wait for media to flow before removing (exercises the running path).
FLOWING_EVERY = 10


async def test_publish_subscribe_remove_cycles_leave_nothing(
    sfu: Sfu, room: MediaRoom, events: RoomEvents, media_library: list[EncodedMedia]
) -> None:
    watcher = SyntheticPeer("watcher", media_library[0])
    await watcher.subscribe(room, slot_count=1)
    await asyncio.sleep(0)
    tasks_before = asyncio.all_tasks()
    try:
        for cycle in range(CYCLES):
            peer = SyntheticPeer(f"cycle{cycle}", media_library[1 + cycle % 9])
            await peer.publish(room)
            await peer.subscribe(room, slot_count=1)
            room.set_audiences(everyone_sees_everyone([watcher.pid, peer.pid]))
            if cycle % FLOWING_EVERY == 0:
                _, video_mid = watcher.slot_mids[0]
                target = watcher.received.packets[video_mid] + 3

                def flowing(mid: str = video_mid, at_least: int = target) -> bool:
                    return watcher.received.packets[mid] >= at_least

                await wait_until(flowing)
            await room.remove(peer.pid)
            room.set_audiences(everyone_sees_everyone([watcher.pid]))
            await peer.close()
        counts = sfu.counts()
        assert (counts.publishers, counts.subscribers, counts.peer_connections) == (0, 1, 1)
    finally:
        await watcher.close()
        await room.remove(watcher.pid)

    assert sfu.counts() == MediaCounts(rooms=1)
    await room.close()
    assert sfu.counts() == MediaCounts()

    def leftover() -> set[asyncio.Task[object]]:
        return {t for t in asyncio.all_tasks() - tasks_before if not t.done()}

    # aiortc/aioice tasks of closed connections finish shortly after close() returns.
    try:
        await wait_until(lambda: not leftover() - {asyncio.current_task()}, timeout=10)
    except TimeoutError:
        raise AssertionError(f"tasks left: {leftover()}") from None
