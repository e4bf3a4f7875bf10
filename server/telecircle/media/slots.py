"""Stable assignment of publishers to a subscriber's receive slots (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Iterable

from telecircle.domain.ids import ParticipantId


class SlotTable:
    """Which publisher feeds each of ``count`` slots.

    A publisher keeps its index for as long as it stays wanted; freed indexes are reused
    lowest first; newcomers are placed in id order so the result does not depend on
    mapping order. Publishers that do not fit are reported by :meth:`update`.
    """

    def __init__(self, count: int) -> None:
        self._owners: list[ParticipantId | None] = [None] * count
        self._index: dict[ParticipantId, int] = {}

    def __len__(self) -> int:
        return len(self._owners)

    def index_of(self, publisher: ParticipantId) -> int | None:
        return self._index.get(publisher)

    def owner(self, index: int) -> ParticipantId | None:
        return self._owners[index]

    def assignments(self) -> list[tuple[int, ParticipantId | None]]:
        return list(enumerate(self._owners))

    def update(self, wanted: Iterable[ParticipantId]) -> tuple[set[int], list[ParticipantId]]:
        """Make the table hold exactly the wanted publishers that fit.

        Returns the indexes whose owner changed and the wanted publishers left without
        a slot (in id order).
        """
        wanted_set = set(wanted)
        changed: set[int] = set()
        for publisher, index in list(self._index.items()):
            if publisher not in wanted_set:
                del self._index[publisher]
                self._owners[index] = None
                changed.add(index)
        overflow: list[ParticipantId] = []
        free = (i for i, owner in enumerate(self._owners) if owner is None)
        for publisher in sorted(wanted_set - self._index.keys()):
            slot = next(free, None)
            if slot is None:
                overflow.append(publisher)
                continue
            self._owners[slot] = publisher
            self._index[publisher] = slot
            changed.add(slot)
        return changed, overflow
