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
        # The current room of each key (it may have started closing: room() then replaces
        # it), and replaced rooms that are still closing.
        self._rooms: dict[str, MediaRoom] = {}
        self._closing: set[MediaRoom] = set()

    def install(self) -> None:
        """Apply the aioice seams (host addresses, consent timing, datagram filter). Idempotent."""
        self._ice.install()

    def room(
        self, room_key: str, *, on_slots: SlotsCallback, on_path_lost: PathLostCallback
    ) -> MediaRoom:
        """The open room for ``room_key``, created on first use (later callbacks are ignored).

        Never a closing or closed room: a room whose close has started is replaced by a new
        one (with these callbacks); the old one finishes closing on its own and still counts
        in :meth:`counts` and :meth:`close` until it has.
        """
        room = self._rooms.get(room_key)
        if room is not None and room.closed:
            self._closing.add(room)
            room = None
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
        self._closing.discard(room)
        if self._rooms.get(room.key) is room:
            del self._rooms[room.key]

    def _all_rooms(self) -> list[MediaRoom]:
        # A room enters _closing only when room() replaces it: never in both.
        return [*self._rooms.values(), *self._closing]

    async def close(self) -> None:
        """Close every room (waiting for those already closing) and uninstall the seams.

        Idempotent.
        """
        for room in self._all_rooms():
            await room.close()
        self._ice.uninstall()

    def counts(self) -> MediaCounts:
        rooms = self._all_rooms()
        totals = [0, 0, 0, 0, 0]
        for room in rooms:
            for i, value in enumerate(room.counts()):
                totals[i] += value
        pcs, publishers, subscribers, queues, tasks = totals
        return MediaCounts(len(rooms), pcs, publishers, subscribers, queues, tasks)
