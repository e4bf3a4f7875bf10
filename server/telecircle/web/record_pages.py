"""Session records: a room's sessions and each session's record, for its clinicians.

Routes (all :data:`Action.VIEW_SESSION_RECORD`; the service checks the room):
``GET /clinic/rooms/{room_id}/sessions`` lists the room's sessions, newest first;
``GET /clinic/rooms/{room_id}/sessions/current`` leads to the record of the session
running now; ``GET /clinic/sessions/{session_id}`` is the record (printable: the print
stylesheet drops navigation and buttons). Rooms and sessions of other clinicians look
like ones that do not exist (404).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from telecircle.domain.access import Action
from telecircle.errors import TelecircleError
from telecircle.services.record_export import record_fhir, record_json
from telecircle.services.session_record import RoomSessions, SessionRecords
from telecircle.web.identity import client_address, current_user, requires
from telecircle.web.keys import (
    AUDIT,
    CLOCK,
    DATABASE,
    FEEDBACK,
    NOTE_READER,
    SESSION_RECORDS,
    SETTINGS,
)
from telecircle.web.render import refusal, render, see_other

ID_MAX = 64


def _sessions_page(
    request: web.Request, sessions: RoomSessions, notice: str | None = None
) -> web.Response:
    return render(
        request,
        "clinic_sessions.html",
        title=f"Sessions · {sessions.room_name}",
        sessions=sessions,
        notice=notice,
    )


@requires(Action.VIEW_SESSION_RECORD)
async def room_sessions(request: web.Request) -> web.Response:
    user = current_user(request)
    room_id = request.match_info["room_id"][:ID_MAX]
    try:
        sessions = await request.app[SESSION_RECORDS].room_sessions(user, room_id)
    except TelecircleError as exc:
        return refusal(request, exc)
    return _sessions_page(request, sessions)


@requires(Action.VIEW_SESSION_RECORD)
async def current_session(request: web.Request) -> web.Response:
    user = current_user(request)
    room_id = request.match_info["room_id"][:ID_MAX]
    records = request.app[SESSION_RECORDS]
    try:
        session_id = await records.open_session_id(user, room_id)
        if session_id is not None:
            return see_other(f"/clinic/sessions/{session_id}")
        sessions = await records.room_sessions(user, room_id)
    except TelecircleError as exc:
        return refusal(request, exc)
    return _sessions_page(request, sessions, "No session of this group is running now.")


@requires(Action.VIEW_SESSION_RECORD)
async def session_record(request: web.Request) -> web.Response:
    user = current_user(request)
    session_id = request.match_info["session_id"][:ID_MAX]
    try:
        record = await request.app[SESSION_RECORDS].record(
            user, session_id, client_address(request)
        )
        feedback = await request.app[FEEDBACK].record_section(user, session_id)
    except TelecircleError as exc:
        return refusal(request, exc)
    return render(
        request,
        "session_record.html",
        title=f"Session record · {record.room_name}",
        record=record,
        feedback=feedback,
    )


EXPORTS = {
    # format: (builder, content type, file extension)
    "json": (record_json, "application/json", "json"),
    "fhir": (record_fhir, "application/fhir+json", "fhir.json"),
}


@requires(Action.VIEW_SESSION_RECORD)
async def export_record(request: web.Request) -> web.Response:
    """The record as a download: JSON (everything) or FHIR R4B (attendance). Audited as
    an export; built off the event loop."""
    user = current_user(request)
    session_id = request.match_info["session_id"][:ID_MAX]
    export = EXPORTS.get(request.match_info["format"])
    if export is None:
        raise web.HTTPNotFound()
    build, content_type, extension = export
    try:
        record = await request.app[SESSION_RECORDS].record(
            user, session_id, client_address(request), export_format=request.match_info["format"]
        )
        feedback = await request.app[FEEDBACK].record_section(user, session_id)
    except TelecircleError as exc:
        return refusal(request, exc)
    body = await asyncio.to_thread(build, record, request.app[CLOCK].now(), feedback.session)
    return web.Response(
        body=body,
        content_type=content_type,
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="session-{session_id}.{extension}"',
            "Cache-Control": "no-store",
        },
    )


async def _start_records(app: web.Application) -> None:
    """Make the session record service from what the application's start-up made (so
    this hook must run after it: see :func:`add_routes`). The note reader is optional:
    without one, records are shown without notes."""
    if DATABASE not in app:
        raise RuntimeError(
            "record_pages.add_routes(app) must come after the app's own start-up hook"
        )
    app[SESSION_RECORDS] = SessionRecords(
        app[DATABASE],
        app[CLOCK],
        app[AUDIT],
        app[SETTINGS].time_zone,
        app.get(NOTE_READER),
    )


def add_routes(app: web.Application) -> None:
    """Add the routes and the start-up hook that makes the service. Call it after the
    application's own start-up hook is added: on_startup hooks run in order, and this
    one needs the database, clock and audit log that hook makes."""
    app.router.add_get("/clinic/rooms/{room_id}/sessions", room_sessions)
    app.router.add_get("/clinic/rooms/{room_id}/sessions/current", current_session)
    app.router.add_get("/clinic/sessions/{session_id}", session_record)
    app.router.add_get("/clinic/sessions/{session_id}/export.{format}", export_record)
    app.on_startup.append(_start_records)
