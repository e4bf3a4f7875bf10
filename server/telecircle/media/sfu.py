"""The SFU: the media plane's entry point, owning every media room.

Usage: ``sfu = Sfu(MediaSettings.from_settings(settings)); await sfu.start()`` (or
``sfu.install()`` when the announced address is not a DNS name), then
``sfu.room(key, on_slots=..., on_path_lost=...)`` per live session, ``await sfu.close()``
at shutdown.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from telecircle.media.errors import MediaConfigError, MediaError, server_full
from telecircle.media.ice_network import (
    ANNOUNCED_SETTING,
    IceNetwork,
    check_announced,
    resolve_announced_address,
)
from telecircle.media.ice_policy import IcePolicy
from telecircle.media.room import MediaRoom, PathLostCallback, SlotsCallback
from telecircle.media.settings import MediaSettings
from telecircle.media.subscriber import VideoPausedCallback

__all__ = ["MediaConfigError", "MediaCounts", "MediaError", "MediaRoom", "MediaSettings", "Sfu"]

logger = logging.getLogger(__name__)


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
    """The media rooms of this process, and the ICE behaviour they share.

    Raises MediaConfigError (naming the setting) for an announced IP address that cannot
    stand for the host addresses; a DNS name is checked by :meth:`start`.
    """

    def __init__(self, settings: MediaSettings) -> None:
        self.settings = settings
        # A DNS name as announced address, still to be resolved by start().
        self._announced_name = ""
        announced: str | None = None
        if settings.ice_announced_address:
            try:
                ipaddress.ip_address(settings.ice_announced_address)
            except ValueError:
                self._announced_name = settings.ice_announced_address
            else:
                announced = settings.ice_announced_address
                check_announced(announced, settings.ice_host_addresses)
        self._ice = self._policy(announced)
        # The current room of each key (it may have started closing: room() then replaces
        # it), and replaced rooms that are still closing.
        self._rooms: dict[str, MediaRoom] = {}
        self._closing: set[MediaRoom] = set()

    def _policy(self, announced: str | None) -> IcePolicy:
        settings = self.settings
        return IcePolicy(
            settings.ice_host_addresses,
            settings.ice_consent_interval,
            settings.ice_consent_timeout,
            IceNetwork(settings.ice_ports, announced),
        )

    @property
    def announced_address(self) -> str | None:
        """The IP address host candidates announce (a DNS name resolved), None if none."""
        return None if self._announced_name else self._ice.network.announced

    async def start(self) -> None:
        """Resolve the announced address if it is a DNS name (once), then :meth:`install`.

        Raises MediaConfigError naming TELECIRCLE_ICE_ANNOUNCED_ADDRESS when the name does
        not resolve to a usable address. Idempotent.
        """
        if self._announced_name and not self._ice.installed:
            announced = await resolve_announced_address(
                self._announced_name, self.settings.ice_host_addresses
            )
            self._ice = self._policy(announced)
            self._announced_name = ""
        self.install()

    def install(self) -> None:
        """Apply the aioice seams (host addresses, consent timing, datagram filter, and the
        port range and announced address when configured). Idempotent. With a DNS name as
        announced address, call :meth:`start` instead."""
        if self._announced_name:
            raise MediaConfigError(
                f"{ANNOUNCED_SETTING}: a DNS name is resolved when the media plane starts "
                "(Sfu.start)"
            )
        self._ice.install()

    def open_rooms(self) -> int:
        """Rooms open now (not closing): what ``max_live_sessions`` caps."""
        return sum(1 for room in self._rooms.values() if not room.closed)

    def room(
        self,
        room_key: str,
        *,
        on_slots: SlotsCallback,
        on_path_lost: PathLostCallback,
        on_video_paused: VideoPausedCallback | None = None,
        beyond_limit: bool = False,
    ) -> MediaRoom:
        """The open room for ``room_key``, created on first use (later callbacks are ignored).

        Never a closing or closed room: a room whose close has started is replaced by a new
        one (with these callbacks); the old one finishes closing on its own and still counts
        in :meth:`counts` and :meth:`close` until it has.

        A new room is refused with MediaError ``server_full`` (a message for the
        therapist) while ``max_live_sessions`` rooms are open, unless ``beyond_limit``
        (sessions resumed after a restart were running already: they come back).
        """
        current = self._rooms.get(room_key)
        if current is not None and not current.closed:
            return current
        limit = self.settings.max_live_sessions
        if not beyond_limit and self.open_rooms() >= limit:
            logger.warning("media.server_full rooms=%d", limit)
            raise server_full(limit)
        if current is not None:
            self._closing.add(current)  # replaced: it finishes closing on its own
        room = MediaRoom(
            room_key,
            self.settings,
            on_slots=on_slots,
            on_path_lost=on_path_lost,
            on_closed=self._forget,
            on_video_paused=on_video_paused,
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
