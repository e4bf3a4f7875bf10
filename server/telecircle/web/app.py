"""The application factory: wires storage, services, signalling, media and pages.

Start-up opens the database (migrated to head), installs the SFU's network seams and
creates the room service. Shutdown is graceful: clients are told and disconnected,
every seat is closed and persisted, peer connections are closed, the database is flushed
and closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

import jinja2
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from telecircle.config import Settings
from telecircle.crypto.passwords import PasswordHasher
from telecircle.crypto.server_key import load_or_create_server_key
from telecircle.domain.access import Action
from telecircle.domain.commands import LeaveReason
from telecircle.domain.ids import ParticipantId, RoomCode, RoomId
from telecircle.logs import quiet_third_party_loggers
from telecircle.media.sfu import MediaSettings, Sfu
from telecircle.runtime import tune_garbage_collector
from telecircle.services.accounts import AccountService
from telecircle.services.audit import AuditLog
from telecircle.services.checkins import CheckIns
from telecircle.services.clock import Clock, SystemClock
from telecircle.services.entry import EntryPolicy, patient_key, user_key
from telecircle.services.feedback import FeedbackService
from telecircle.services.invites import InviteService
from telecircle.services.notes import NotesService, open_notes_keys
from telecircle.services.organisation import Organisation
from telecircle.services.ports import MediaRouting
from telecircle.services.ratelimit import AttemptLimiter
from telecircle.services.resume import ResumePolicy
from telecircle.services.retention import NotesRetention
from telecircle.services.rooms import RoomService
from telecircle.services.watchdog import LoopWatchdog
from telecircle.signalling.server import SignallingServer
from telecircle.storage import invites_store, migrations, stores
from telecircle.storage.database import open_database
from telecircle.web import (
    account_pages,
    admin_pages,
    certificate_page,
    clinic_pages,
    feedback_pages,
    pages,
    patient_pages,
    record_pages,
)
from telecircle.web.identity import Identity, guard
from telecircle.web.keys import (
    ACCOUNTS,
    AUDIT,
    CHECKINS,
    CLOCK,
    CSRF_KEY,
    DATABASE,
    FEEDBACK,
    HASHER,
    INVITE_LIMITER,
    INVITES,
    NOTE_READER,
    NOTES,
    ORGANISATION,
    RETENTION,
    ROOMS,
    SETTINGS,
    SFU,
    SIGNALLING,
    TEMPLATES,
    WATCHDOG,
)
from telecircle.web.render import message, sign_in_redirect
from telecircle.web.security import security_headers

log = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).parent / "templates"
PATIENT_ACTIONS = frozenset({Action.PREPARE_TO_JOIN, Action.ENTER_AS_PATIENT, Action.GIVE_FEEDBACK})


def create_app(settings: Settings, clock: Clock | None = None) -> web.Application:
    quiet_third_party_loggers()
    app = web.Application(
        middlewares=[
            security_headers,
            _body_deadline(settings.http_body_timeout),
            guard(_deny, ("/socket.io/", "/static/")),
        ],
        # Room for the largest form: a 20,000-character agreement in any script.
        client_max_size=256 * 1024,
        # aiohttp 3.14 has no header read timeout: its keep-alive timer, armed when a
        # connection opens and after each response, is the only bound on a client that
        # sends nothing or trickles its request head (3630 s by default under an
        # AppRunner, 75 s under run_app).
        handler_args={"keepalive_timeout": settings.http_idle_timeout},
    )
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
    for module in (
        account_pages,
        admin_pages,
        certificate_page,
        clinic_pages,
        feedback_pages,
        patient_pages,
        pages,
    ):
        module.add_routes(app)
    if settings.webclient_dist.is_dir():
        app.router.add_static("/static/", settings.webclient_dist, follow_symlinks=False)
    else:
        log.warning("webclient not built", extra={"path": str(settings.webclient_dist)})
    app.on_startup.append(_start)
    record_pages.add_routes(app)  # after _start: its start-up hook uses what _start makes
    app.on_shutdown.append(_stop_clients)
    app.on_cleanup.append(_stop_services)
    return app


def _body_deadline(seconds: float) -> Middleware:
    """Read each request body whole within ``seconds``, before any handler runs (408
    otherwise). aiohttp 3.14 has no body read timeout: a form trickled a byte at a time
    would hold its handler, and up to ``client_max_size`` of memory, for as long as the
    sender likes. The handlers read the body from aiohttp's cache; no page takes
    streamed (multipart) uploads, which a read-ahead would consume."""

    @web.middleware
    async def body_deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.body_exists:
            try:
                async with asyncio.timeout(seconds):
                    await request.read()
            except TimeoutError:
                raise web.HTTPRequestTimeout(headers={"Connection": "close"}) from None
        return await handler(request)

    return body_deadline


async def _deny(
    request: web.Request, identity: Identity, why: str, action: Action | None
) -> web.StreamResponse:
    """The guard's refusals: sign in first, not yours, or a form from elsewhere. The
    ``X-Telecircle-Refused`` header names which (for tests and diagnostics)."""
    response: web.StreamResponse
    if why == "sign_in" and action in PATIENT_ACTIONS:
        # A patient whose pass has ended (expired, withdrawn, opened on another device)
        # has no account to sign in to.
        response = message(
            request,
            "Please open your invite link again",
            "Your access to this page has ended. Open the link your therapist sent you "
            "again, or ask them for a new one.",
            status=401,
        )
    elif why == "sign_in" and request.method == "GET":
        response = sign_in_redirect(request)
    elif why == "csrf":
        response = message(
            request,
            "Please try again",
            "This form was sent from an old or foreign page. Go back, reload, and try again.",
            status=403,
        )
    elif why == "sign_in":
        response = message(request, "Please sign in", "Sign in first.", status=401)
    else:
        response = message(
            request, "Not available", "Your account cannot open this page.", status=403
        )
    response.headers["X-Telecircle-Refused"] = why
    return response


async def _start(app: web.Application) -> None:
    settings = app[SETTINGS]
    clock = app[CLOCK]
    # First: a media configuration that cannot work (an announced name that does not
    # resolve) stops the start before anything else is touched (MediaConfigError, a
    # TelecircleError: cli.serve prints it).
    sfu = Sfu(MediaSettings.from_settings(settings))
    await sfu.start()
    app[SFU] = sfu
    server_key = load_or_create_server_key(settings.effective_server_key_file)
    await migrations.upgrade(settings.effective_database_url)
    database = await open_database(settings.effective_database_url)
    app[DATABASE] = database
    audit = AuditLog(database, server_key.derive("audit-head"), clock)
    app[AUDIT] = audit
    app[HASHER] = PasswordHasher()
    accounts = AccountService(database, clock, audit, app[HASHER], settings)
    app[ACCOUNTS] = accounts
    invites = InviteService(database, clock, audit, server_key.derive("invite-signing"), settings)
    app[INVITES] = invites
    organisation = Organisation(database, clock, audit, settings)
    app[ORGANISATION] = organisation
    app[CHECKINS] = CheckIns(clock)
    app[CSRF_KEY] = server_key.derive("csrf")
    app[INVITE_LIMITER] = AttemptLimiter(
        settings.invite_redemptions_per_window, settings.invite_window, clock
    )
    signalling = app[SIGNALLING]
    recovering = True

    def media_for(code: RoomCode) -> MediaRouting:
        """The session's media room. Beyond TELECIRCLE_MAX_LIVE_SESSIONS open rooms a new
        one is refused with MediaError ``server_full``, whose message is for the therapist
        (or patient) entering: it reaches them as the error ack of their ``join``. Sessions
        resumed after a restart were running already: they come back whatever the cap."""

        def path_lost(pid: ParticipantId) -> None:
            app[ROOMS].media_path_lost(code, pid)

        return sfu.room(
            code,
            on_slots=signalling.slots_changed,
            on_path_lost=path_lost,
            on_video_paused=signalling.video_paused,
            beyond_limit=recovering,
        )

    async def limit_of(room_id: RoomId) -> int:
        room = await stores.get_room(database, room_id)
        if room is None:
            return settings.default_room_limit
        return await organisation.effective_limit(room)

    rooms = RoomService(
        database,
        clock,
        media_for,
        signalling,
        limit_of,
        settings.reconnect_grace,
        settings.lobby_limit,
        settings.timer_limits(),
        ResumePolicy(
            settings.resume_after_restart, settings.resume_window, settings.resume_heartbeat
        ),
    )
    app[ROOMS] = rooms
    notes = NotesService(
        database, await open_notes_keys(database, settings), clock, audit, settings.note_limits()
    )
    await notes.require_keys()  # fail closed: refuse to start without every key in use
    app[NOTES] = notes
    app[FEEDBACK] = FeedbackService(
        database,
        clock,
        audit,
        notes,
        settings.feedback_limits(),
        window=settings.feedback_window,
        time_zone=settings.time_zone,
        trend_sessions=settings.feedback_trend_sessions,
    )
    app[NOTE_READER] = notes
    retention = NotesRetention(database, clock, audit, organisation.notes_retention_days)
    retention.start(settings.notes_purge_interval)
    app[RETENTION] = retention
    entry = EntryPolicy(database, accounts, invites, app[CHECKINS])
    signalling.attach_services(rooms, entry, audit, notes)
    _end_seats_of_lost_access(app)
    await rooms.recover_after_crash()
    recovering = False
    await organisation.agreement()  # version 1 exists before anyone is asked to accept it
    watchdog = LoopWatchdog()
    watchdog.start()
    app[WATCHDOG] = watchdog
    if settings.tune_garbage_collector:
        tune_garbage_collector()
    log.info("started")


def _end_seats_of_lost_access(app: web.Application) -> None:
    """A disabled account, or a withdrawn invite, ends its live seats at once."""
    rooms, database = app[ROOMS], app[DATABASE]

    async def account_disabled(user_id: str) -> None:
        await rooms.remove_person(user_key(user_id), LeaveReason.REVOKED)

    async def passes_revoked(pass_ids: Sequence[str]) -> None:
        for pass_id in pass_ids:
            revoked = await invites_store.get_pass(database, pass_id)
            if revoked is not None:
                app[CHECKINS].forget(patient_key(revoked))
                await rooms.remove_person(patient_key(revoked), LeaveReason.REVOKED)

    app[ACCOUNTS].on_disabled(account_disabled)
    app[INVITES].add_revocation_listener(passes_revoked)


async def _stop_clients(app: web.Application) -> None:
    # Seats close first (recorded as a server shutdown), then clients are told and dropped.
    if ROOMS in app:
        try:
            async with asyncio.timeout(app[SETTINGS].shutdown_timeout):
                await app[ROOMS].close()
        except TimeoutError:
            log.error("rooms did not close within the shutdown timeout")
    if SIGNALLING in app:
        await app[SIGNALLING].close(restarting=app[SETTINGS].resume_after_restart)


async def _stop_services(app: web.Application) -> None:
    if RETENTION in app:
        await app[RETENTION].close()
    if WATCHDOG in app:
        await app[WATCHDOG].close()
    if SFU in app:
        await app[SFU].close()
    if HASHER in app:
        app[HASHER].close()
    if DATABASE in app:
        await app[DATABASE].close()
    log.info("stopped")
