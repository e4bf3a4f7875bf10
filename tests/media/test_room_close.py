"""A closing room is never handed out again; the room's own tasks are owned and bounded."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from telecircle.domain.ids import ParticipantId
from telecircle.media.room import MediaRoom
from telecircle.media.settings import MediaSettings
from telecircle.media.sfu import MediaCounts, Sfu

from .conftest import RoomEvents
from .peer import EncodedMedia, SyntheticPeer, wait_until


async def test_sfu_replaces_a_room_that_is_closing(
    sfu: Sfu, events: RoomEvents, media_library: list[EncodedMedia]
) -> None:
    def room() -> MediaRoom:
        return sfu.room("session", on_slots=events.on_slots, on_path_lost=events.on_path_lost)

    old = room()
    leaving = SyntheticPeer("leaving", media_library[0])
    arriving = SyntheticPeer("arriving", media_library[1])
    try:
        await leaving.publish(old)
        closing = asyncio.get_running_loop().create_task(old.close())
        await asyncio.sleep(0)  # close() has started: it waits for the peer connection
        assert old.closed and not closing.done()

        new = room()
        assert new is not old and not new.closed
        # The closing room still counts until it has finished.
        assert sfu.counts().rooms == 2
        second = asyncio.get_running_loop().create_task(old.close())
        await asyncio.sleep(0)
        assert not second.done()  # a second close() waits for the first one
        await arriving.publish(new)  # without the fix: MediaError media_closed

        await closing
        await second
        assert room() is new  # the old room's end does not forget the new one
        assert sfu.counts().rooms == 1 and sfu.counts().publishers == 1
    finally:
        await leaving.close()
        await arriving.close()
        await sfu.close()
    assert sfu.counts() == MediaCounts()


async def test_a_failing_room_task_is_logged_with_ids(
    room: MediaRoom, caplog: pytest.LogCaptureFixture
) -> None:
    async def fail() -> None:
        raise RuntimeError("peer 192.0.2.1:5000 said no")  # details that must not be logged

    with caplog.at_level(logging.INFO, logger="telecircle.media.room"):
        room._spawn(fail(), ParticipantId("p1"), "publish")
        await asyncio.sleep(0.05)
    failures = [r for r in caplog.records if "media.task_failed" in r.getMessage()]
    assert len(failures) == 1
    message = failures[0].getMessage()
    assert "pid=p1" in message and "role=publish" in message and "RuntimeError" in message
    assert "192.0.2.1" not in message and failures[0].exc_info is None
    assert room.counts()[4] == 0


@pytest.fixture
def media_settings() -> MediaSettings:
    return MediaSettings(close_timeout=0.2)


async def test_close_waits_for_room_tasks_within_a_bound(room: MediaRoom) -> None:
    states: list[str] = []

    async def obstinate() -> None:
        # Ignores the first cancellation for a moment, as a connection close might.
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)
            states.append("cleaned up")
            raise

    async def stuck() -> None:
        # Refuses close()'s cancellation: close() must still return (bounded).
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            states.append("refused")
        await asyncio.sleep(60)

    room._spawn(obstinate(), ParticipantId("p1"), "subscribe")
    room._spawn(stuck(), ParticipantId("p2"), "publish")
    tasks = set(room._tasks)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await room.close()
    # 2 x close_timeout waiting, then close_timeout for the cancelled tasks to end.
    assert loop.time() - started < 1.0
    assert states.count("cleaned up") == 1  # without the fix: cancelled, never awaited
    obstinate_task = next(t for t in tasks if "subscribe" in t.get_name())
    assert obstinate_task.done()
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks, timeout=1)


async def test_publish_remove_cycles_end_their_decoder_threads(
    room: MediaRoom, media_library: list[EncodedMedia]
) -> None:
    """DiscardingDecoderQueue parks aiortc's decoder thread until the receiver stops."""
    threads_before = threading.active_count()
    for cycle in range(10):
        peer = SyntheticPeer(f"cycle{cycle}", media_library[cycle % 10])
        try:
            await peer.publish(room)
            # aiortc starts the receivers (and their decoder threads) once DTLS is up.
            await wait_until(lambda: threading.active_count() >= threads_before + 2)
            await room.remove(peer.pid)
        finally:
            await peer.close()
    assert threading.active_count() <= threads_before
