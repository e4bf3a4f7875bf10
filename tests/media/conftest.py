from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from telecircle.domain.ids import ParticipantId
from telecircle.domain.model import TrackKind, TrackRef
from telecircle.media.room import MediaRoom
from telecircle.media.settings import MediaSettings
from telecircle.media.sfu import Sfu

from .peer import EncodedMedia, SyntheticPeer, encode_media, wait_until

pytestmark = pytest.mark.media


@pytest.fixture(scope="session")
def media_library() -> list[EncodedMedia]:
    """Pre-encoded media for ten distinct colours, encoded once per test session."""
    return [encode_media(i) for i in range(10)]


@dataclass
class RoomEvents:
    slots: dict[ParticipantId, list[tuple[int, ParticipantId | None]]] = field(default_factory=dict)
    lost: list[ParticipantId] = field(default_factory=list)

    def on_slots(
        self, pid: ParticipantId, assignments: list[tuple[int, ParticipantId | None]]
    ) -> None:
        self.slots[pid] = list(assignments)

    def on_path_lost(self, pid: ParticipantId) -> None:
        self.lost.append(pid)


def everyone_sees_everyone(pids: list[ParticipantId]) -> dict[TrackRef, frozenset[ParticipantId]]:
    return {
        TrackRef(owner, kind): frozenset(p for p in pids if p != owner)
        for owner in pids
        for kind in (TrackKind.AUDIO, TrackKind.VIDEO)
    }


@pytest.fixture
def media_settings() -> MediaSettings:
    return MediaSettings(keyframe_request_interval=0.2)


@pytest.fixture
async def sfu(media_settings: MediaSettings) -> AsyncIterator[Sfu]:
    instance = Sfu(media_settings)
    instance.install()
    yield instance
    await instance.close()


@pytest.fixture
def events() -> RoomEvents:
    return RoomEvents()


@pytest.fixture
def room(sfu: Sfu, events: RoomEvents) -> MediaRoom:
    return sfu.room("room-1", on_slots=events.on_slots, on_path_lost=events.on_path_lost)


async def watching(
    room: MediaRoom, events: RoomEvents, publisher: SyntheticPeer, viewer: SyntheticPeer
) -> str:
    """Publish, subscribe the viewer to the publisher, and wait for its first keyframe;
    the mid of the publisher's video at the viewer."""
    await publisher.publish(room)
    await viewer.subscribe(room, slot_count=1)
    room.set_audiences(everyone_sees_everyone([publisher.pid, viewer.pid]))
    await wait_until(lambda: viewer.pid in events.slots)
    mid = viewer.mids_of(events.slots[viewer.pid], publisher.pid)[1]
    await wait_until(lambda: viewer.received.keyframes[mid] >= 1)
    return mid
