"""Notes retention: destroy the data keys of sessions past their retention period.

Destroying a session's data key makes its notes unreadable for good (crypto-shredding);
the sealed versions stay, and the record shows when they were destroyed. A session's
period is its room's override, or the organisation's setting, counted from its end.
The server runs :meth:`NotesRetention.purge` at start and every
``notes_purge_interval``; ``telecircle notes purge`` runs it once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from telecircle.services.clock import Clock
from telecircle.services.ports import AuditSink
from telecircle.services.tasks import TaskOwner
from telecircle.storage import notes_store
from telecircle.storage.database import Database

log = logging.getLogger(__name__)

NOTES_PURGED = "notes_purged"
DAY = 86_400.0


class NotesRetention:
    """Purges expired notes now (:meth:`purge`) or on a schedule (:meth:`start`)."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        audit: AuditSink,
        default_days: Callable[[], Awaitable[int]],
    ) -> None:
        self._db = db
        self._clock = clock
        self._audit = audit
        self._default_days = default_days
        self._tasks = TaskOwner("retention")

    async def purge(self) -> list[str]:
        """Destroy the data keys of every ended session past its retention; returns
        those sessions. Each destruction is in the audit log."""
        now = self._clock.now()
        default = await self._default_days()
        expired = [
            candidate.session_id
            for candidate in await notes_store.retention_candidates(self._db)
            if candidate.ended_at + DAY * (candidate.room_retention_days or default) <= now
        ]
        destroyed = await notes_store.destroy_keys(self._db, expired, now) if expired else []
        for session_id in destroyed:
            await self._audit.record(NOTES_PURGED, actor=None, target=session_id)
        if destroyed:
            log.info("notes purged", extra={"sessions": len(destroyed)})
        return destroyed

    def start(self, interval: float) -> None:
        """Purge now and then every ``interval`` seconds until :meth:`close`."""
        self._tasks.spawn(self._every(interval), "purge")

    async def _every(self, interval: float) -> None:
        while True:
            try:
                await self.purge()
            except Exception:
                log.exception("notes purge failed")
            await asyncio.sleep(interval)

    async def close(self) -> None:
        await self._tasks.close()
