"""The clinicians' pages: today's and upcoming sessions, rooms, the schedule, invites."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from aiohttp import web

from telecircle.domain.access import Action
from telecircle.domain.ids import RoomId
from telecircle.errors import TelecircleError
from telecircle.services.organisation import InvalidInput, NotFound
from telecircle.web.admin_pages import link_url, parse_int
from telecircle.web.identity import client_address, current_user, requires
from telecircle.web.keys import ACCOUNTS, INVITES, ORGANISATION, SETTINGS
from telecircle.web.render import form_fields, refusal, render, see_other

ID_MAX = 64


def zone(request: web.Request) -> ZoneInfo:
    return ZoneInfo(request.app[SETTINGS].time_zone)


def local(request: web.Request, moment: float) -> datetime:
    return datetime.fromtimestamp(moment, zone(request))


@requires(Action.VIEW_SCHEDULE)
async def home(request: web.Request) -> web.Response:
    user = current_user(request)
    organisation = request.app[ORGANISATION]
    today = datetime.now(zone(request)).date()
    upcoming = [
        (session, room, role, local(request, session.starts_at))
        for session, room, role in await organisation.upcoming_for(user)
    ]
    return render(
        request,
        "clinic_home.html",
        title="Sessions and rooms",
        today=[u for u in upcoming if u[3].date() == today],
        later=[u for u in upcoming if u[3].date() != today],
        rooms=await organisation.rooms_for(user),
        time_zone=request.app[SETTINGS].time_zone,
        can_manage=user.role == "therapist",
    )


@requires(Action.MANAGE_ROOMS)
async def create_room(request: web.Request) -> web.Response:
    user = current_user(request)
    fields = await form_fields(request, "name", "limit")
    try:
        room = await request.app[ORGANISATION].create_room(
            user, fields["name"], parse_int(fields["limit"], "limit"), client_address(request)
        )
    except TelecircleError as exc:
        return refusal(request, exc)
    return see_other(f"/clinic/rooms/{room.id}")


async def _room_page(
    request: web.Request, room_id: str, status: int = 200, **extra: object
) -> web.Response:
    user = current_user(request)
    organisation = request.app[ORGANISATION]
    try:
        room, role = await organisation.require_room(user, RoomId(room_id[:ID_MAX]))
    except TelecircleError as exc:
        return refusal(request, exc)
    sessions = [
        (s, local(request, s.starts_at))
        for s, r, _ in await organisation.upcoming_for(user)
        if r.id == room.id
    ]
    invites = await request.app[INVITES].list_invites(room.id) if role == "owner" else []
    return render(
        request,
        "clinic_room.html",
        status=status,
        title=room.name,
        room=room,
        role=role,
        consent=await organisation.room_consent(room),
        effective_limit=await organisation.effective_limit(room),
        org=await organisation.settings(),
        sessions=sessions,
        invites=[
            (listing.invite, listing.live_passes, local(request, listing.invite.expires_at))
            for listing in invites
        ],
        time_zone=request.app[SETTINGS].time_zone,
        **({"new_link": None} | extra),
    )


@requires(Action.VIEW_SCHEDULE)
async def room_page(request: web.Request) -> web.Response:
    return await _room_page(request, request.match_info["room_id"])


def _override(raw: str) -> bool | None:
    return {"yes": True, "no": False}.get(raw)


@requires(Action.MANAGE_ROOMS)
async def edit_room(request: web.Request) -> web.Response:
    user = current_user(request)
    room_id = request.match_info["room_id"][:ID_MAX]
    fields = await form_fields(
        request,
        "name",
        "limit",
        "recording_consent_required",
        "notes_retention_days",
        "patients_may_unmute",
        "notes_shared",
    )
    try:
        retention = fields["notes_retention_days"].strip()
        await request.app[ORGANISATION].update_room(
            user,
            RoomId(room_id),
            name=fields["name"],
            limit=parse_int(fields["limit"], "limit"),
            recording_consent_required=_override(fields["recording_consent_required"]),
            notes_retention_days=parse_int(retention, "retention") if retention else None,
            address=client_address(request),
            patients_may_unmute=fields["patients_may_unmute"] == "on",
            notes_shared=fields["notes_shared"] == "on",
        )
    except TelecircleError as exc:
        return await _room_page(request, room_id, exc.http_status, error=exc.message)
    return await _room_page(request, room_id, notice="Room saved.")


@requires(Action.MANAGE_ROOMS)
async def add_co_facilitator(request: web.Request) -> web.Response:
    user = current_user(request)
    room_id = request.match_info["room_id"][:ID_MAX]
    fields = await form_fields(request, "username")
    try:
        other = await request.app[ACCOUNTS].find_user(fields["username"])
        if other is None:
            raise NotFound("There is no account with that username.")
        await request.app[ORGANISATION].assign_co_facilitator(
            user, RoomId(room_id), other, client_address(request)
        )
    except TelecircleError as exc:
        return await _room_page(request, room_id, exc.http_status, error=exc.message)
    return await _room_page(request, room_id, notice="Co-facilitator added.")


def parse_start(request: web.Request, day: str, start: str) -> float:
    try:
        moment = datetime.combine(
            date.fromisoformat(day.strip()), time.fromisoformat(start.strip()), zone(request)
        )
    except ValueError:
        raise InvalidInput("Enter the date as YYYY-MM-DD and the time as HH:MM.") from None
    return moment.timestamp()


@requires(Action.MANAGE_ROOMS)
async def schedule(request: web.Request) -> web.Response:
    user = current_user(request)
    room_id = request.match_info["room_id"][:ID_MAX]
    fields = await form_fields(request, "date", "start", "minutes")
    try:
        await request.app[ORGANISATION].schedule(
            user,
            RoomId(room_id),
            parse_start(request, fields["date"], fields["start"]),
            parse_int(fields["minutes"], "length"),
            client_address(request),
        )
    except TelecircleError as exc:
        return await _room_page(request, room_id, exc.http_status, error=exc.message)
    return await _room_page(request, room_id, notice="Session scheduled.")


@requires(Action.MANAGE_INVITES)
async def create_invite(request: web.Request) -> web.Response:
    user = current_user(request)
    room_id = request.match_info["room_id"][:ID_MAX]
    fields = await form_fields(request, "kind", "patient_name", "session_id")
    invites = request.app[INVITES]
    address = client_address(request)
    session_id = fields["session_id"][:ID_MAX] or None
    try:
        room, _ = await request.app[ORGANISATION].require_room(user, RoomId(room_id), owner=True)
        if session_id is not None:
            scheduled = await request.app[ORGANISATION].scheduled_session(session_id)
            if scheduled is None or scheduled.room_id != room.id:
                raise NotFound("There is no such session in this room.")
        if fields["kind"] == "group":
            if session_id is None:
                raise InvalidInput("A group link is made for one scheduled session.")
            _, token = await invites.create_group(user.id, room.id, session_id, address)
        else:
            _, token = await invites.create_personal(
                user.id, room.id, fields["patient_name"], session_id, address
            )
    except TelecircleError as exc:
        return await _room_page(request, room_id, exc.http_status, error=exc.message)
    return await _room_page(
        request,
        room_id,
        notice="Invite link made. Send it to the patient; it is shown only now.",
        new_link=link_url(request, f"/i/{token}"),
    )


@requires(Action.MANAGE_INVITES)
async def revoke_invite(request: web.Request) -> web.Response:
    user = current_user(request)
    room_id = request.match_info["room_id"][:ID_MAX]
    invite_id = request.match_info["invite_id"][:ID_MAX]
    invites = request.app[INVITES]
    try:
        room, _ = await request.app[ORGANISATION].require_room(user, RoomId(room_id), owner=True)
        invite = await invites.get_invite(invite_id)
        if invite is None or invite.room_id != room.id:
            raise NotFound("There is no such invite in this room.")
        await invites.revoke(user.id, invite_id, client_address(request))
    except TelecircleError as exc:
        return await _room_page(request, room_id, exc.http_status, error=exc.message)
    return await _room_page(request, room_id, notice="Invite withdrawn.")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/clinic", home)
    app.router.add_post("/clinic/rooms", create_room)
    app.router.add_get("/clinic/rooms/{room_id}", room_page)
    app.router.add_post("/clinic/rooms/{room_id}", edit_room)
    app.router.add_post("/clinic/rooms/{room_id}/co-facilitators", add_co_facilitator)
    app.router.add_post("/clinic/rooms/{room_id}/sessions", schedule)
    app.router.add_post("/clinic/rooms/{room_id}/invites", create_invite)
    app.router.add_post("/clinic/rooms/{room_id}/invites/{invite_id}/revoke", revoke_invite)
