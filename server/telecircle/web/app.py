"""The application factory: wires storage, services, signalling, media and pages.

Start-up opens the database (migrated to head), installs the SFU's network seams and
creates the room service. Shutdown is graceful: clients are told and disconnected,
every seat is closed and persisted, peer connections are closed, the database is flushed
and closed.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import jinja2
from aiohttp import web

from telecircle.config import Settings
from telecircle.domain.ids import ParticipantId, RoomCode
from telecircle.logs import quiet_third_party_loggers
from telecircle.media.sfu import MediaSettings, Sfu
from telecircle.runtime import tune_garbage_collector
from telecircle.services.clock import Clock, SystemClock
from telecircle.services.ports import MediaRouting
from telecircle.services.rooms import RoomService
from telecircle.services.watchdog import LoopWatchdog
from telecircle.signalling.server import SignallingServer
from telecircle.storage import migrations
from telecircle.storage.database import open_database
from telecircle.web import pages
from telecircle.web.keys import (
    CLOCK,
    DATABASE,
    ROOMS,
    SETTINGS,
    SFU,
    SIGNALLING,
    TEMPLATES,
    WATCHDOG,
)
from telecircle.web.security import security_headers

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).parent / "templates"


def create_app(settings: Settings, clock: Clock | None = None) -> web.Application:
    quiet_third_party_loggers()
    app = web.Application(middlewares=[security_headers], client_max_size=64 * 1024)
    app[SETTINGS] = settings
    app[CLOCK] = clock or SystemClock()
    app[TEMPLATES] = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    signalling = SignallingServer(settings, app[CLOCK])
    app[SIGNALLING] = signalling
    signalling.attach(app)
    app.router.add_get("/", pages.index)
    app.router.add_get("/healthz", pages.healthz)
    app.router.add_get("/r/{code}", pages.room_page)
    app.router.add_post("/r/{code}/leave", pages.leave_beacon)
    if settings.webclient_dist.is_dir():
        app.router.add_static("/static/", settings.webclient_dist, follow_symlinks=False)
    else:
        log.warning("webclient not built", extra={"path": str(settings.webclient_dist)})
    app.on_startup.append(_start)
    app.on_shutdown.append(_stop_clients)
    app.on_cleanup.append(_stop_services)
    return app


async def _start(app: web.Application) -> None:
    settings = app[SETTINGS]
    await migrations.upgrade(settings.effective_database_url)
    database = await open_database(settings.effective_database_url)
    app[DATABASE] = database
    sfu = Sfu(MediaSettings.from_settings(settings))
    sfu.install()
    app[SFU] = sfu
    signalling = app[SIGNALLING]

    def media_for(code: RoomCode) -> MediaRouting:
        def path_lost(pid: ParticipantId) -> None:
            app[ROOMS].media_path_lost(code, pid)

        return sfu.room(code, on_slots=signalling.slots_changed, on_path_lost=path_lost)

    rooms = RoomService(
        database,
        app[CLOCK],
        media_for,
        signalling,
        settings.room_limit_ceiling,
        settings.reconnect_grace,
    )
    app[ROOMS] = rooms
    signalling.attach_rooms(rooms)
    await rooms.recover_after_crash()
    watchdog = LoopWatchdog()
    watchdog.start()
    app[WATCHDOG] = watchdog
    if settings.tune_garbage_collector:
        tune_garbage_collector()
    log.info("started")


async def _stop_clients(app: web.Application) -> None:
    # Seats close first (recorded as a server shutdown), then clients are told and dropped.
    if ROOMS in app:
        try:
            async with asyncio.timeout(app[SETTINGS].shutdown_timeout):
                await app[ROOMS].close()
        except TimeoutError:
            log.error("rooms did not close within the shutdown timeout")
    if SIGNALLING in app:
        await app[SIGNALLING].close()


async def _stop_services(app: web.Application) -> None:
    if WATCHDOG in app:
        await app[WATCHDOG].close()
    if SFU in app:
        await app[SFU].close()
    if DATABASE in app:
        await app[DATABASE].close()
    log.info("stopped")
