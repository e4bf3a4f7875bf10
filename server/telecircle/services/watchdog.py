"""Event-loop stall watchdog: media forwarding, consent checks and pings all run on one
loop, so a stall is worth knowing about. Logs how long the loop was late (no ids)."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)

TICK_SECONDS = 0.25
REPORT_LAG_SECONDS = 0.5


class LoopWatchdog:
    """Measures how late a periodic tick runs; ``worst_lag`` is the largest seen."""

    def __init__(self) -> None:
        self.worst_lag = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="watchdog")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + TICK_SECONDS
            await asyncio.sleep(TICK_SECONDS)
            lag = loop.time() - due
            self.worst_lag = max(self.worst_lag, lag)
            if lag >= REPORT_LAG_SECONDS:
                log.warning("event loop stalled", extra={"seconds": round(lag, 3)})

    async def close(self) -> None:
        """Stop the tick. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
