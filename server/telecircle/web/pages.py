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


def session_page(
    request: web.Request, room: RoomRecord, limit: int, role: str, user_id: str = ""
) -> web.Response:
    """The call page: the webclient enters ``room`` as whoever the cookies say. A
    clinician's page carries their account id: their notes drafts in the browser are
    kept per account (a seat id changes after a long absence)."""
    return render(
        request,
        "room.html",
        title=room.name,
        room_code=room.code,
        room_name=room.name,
        participant_limit=limit,
        role=role,
        user_id=user_id,
    )


@requires(Action.ENTER_AS_CLINICIAN)
async def clinician_room(request: web.Request) -> web.Response:
    user = current_user(request)
    organisation = request.app[ORGANISATION]
    try:
        room, _ = await organisation.require_room(user, RoomId(request.match_info["room_id"][:64]))
    except TelecircleError as exc:
        return refusal(request, exc)
    limit = await organisation.effective_limit(room)
    return session_page(request, room, limit, "clinician", user_id=user.id)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/room/{room_id}", clinician_room)
