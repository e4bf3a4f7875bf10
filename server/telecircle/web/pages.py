"""The session page: the clinicians' entry (the patients' is in patient_pages)."""

from __future__ import annotations

from aiohttp import web

from telecircle.domain.access import Action
from telecircle.domain.ids import RoomId
from telecircle.errors import TelecircleError
from telecircle.storage.stores import RoomRecord
from telecircle.web.identity import current_user, requires
from telecircle.web.keys import ORGANISATION
from telecircle.web.render import refusal, render

ROOM_CODE_MAX = 64


def session_page(request: web.Request, room: RoomRecord, limit: int, role: str) -> web.Response:
    """The call page: the webclient enters ``room`` as whoever the cookies say."""
    return render(
        request,
        "room.html",
        title=room.name,
        room_code=room.code,
        room_name=room.name,
        participant_limit=limit,
        role=role,
    )


@requires(Action.ENTER_AS_CLINICIAN)
async def clinician_room(request: web.Request) -> web.Response:
    user = current_user(request)
    organisation = request.app[ORGANISATION]
    try:
        room, _ = await organisation.require_room(user, RoomId(request.match_info["room_id"][:64]))
    except TelecircleError as exc:
        return refusal(request, exc)
    return session_page(request, room, await organisation.effective_limit(room), "clinician")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/room/{room_id}", clinician_room)
