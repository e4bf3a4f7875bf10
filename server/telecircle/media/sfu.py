"""The SFU: the media plane's entry point, owning every media room.

Usage: ``sfu = Sfu(MediaSettings.from_settings(settings)); sfu.install()``, then
``sfu.room(key, on_slots=..., on_path_lost=...)`` per live session, ``await sfu.close()``
at shutdown.
"""

from __future__ import annotations

from dataclasses import dataclass

from telecircle.media.errors import MediaError
from telecircle.media.ice_policy import IcePolicy
from telecircle.media.room import MediaRoom, PathLostCallback, SlotsCallback
from telecircle.media.settings import MediaSettings

__all__ = ["MediaCounts", "MediaError", "MediaRoom", "MediaSettings", "Sfu"]


@dataclass(frozen=True, slots=True)
class MediaCounts:
    """What the SFU holds right now; all zero after every room is closed."""

    rooms: int = 0
    peer_connections: int = 0
    publishers: int = 0
    subscribers: int = 0
    queues: int = 0
    tasks: int = 0


class Sfu:
    def __init__(self, settings: MediaSettings) -> None:
        self.settings = settings
        self._ice = IcePolicy(
            settings.ice_host_addresses,
            settings.ice_consent_interval,
            settings.ice_consent_timeout,
        )
        self._rooms: dict[str, MediaRoom] = {}

    def install(self) -> None:
        """Apply the aioice seams (host addresses, consent timing). Idempotent."""
        self._ice.install()

    def room(
        self, room_key: str, *, on_slots: SlotsCallback, on_path_lost: PathLostCallback
    ) -> MediaRoom:
        """The room for ``room_key``, created on first use (later callbacks are ignored)."""
        room = self._rooms.get(room_key)
        if room is None:
            room = MediaRoom(
                room_key,
                self.settings,
                on_slots=on_slots,
                on_path_lost=on_path_lost,
                on_closed=self._forget,
            )
            self._rooms[room_key] = room
        return room

    def _forget(self, room: MediaRoom) -> None:
        if self._rooms.get(room.key) is room:
            del self._rooms[room.key]

    async def close(self) -> None:
        """Close every room and uninstall the seams. Idempotent."""
        for room in list(self._rooms.values()):
            await room.close()
        self._ice.uninstall()

    def counts(self) -> MediaCounts:
        totals = [0, 0, 0, 0, 0]
        for room in self._rooms.values():
            for i, value in enumerate(room.counts()):
                totals[i] += value
        pcs, publishers, subscribers, queues, tasks = totals
        return MediaCounts(len(self._rooms), pcs, publishers, subscribers, queues, tasks)
