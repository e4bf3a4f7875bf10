"""HTML pages: the landing page, the room page, and friendly error pages."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from telecircle.domain.ids import ParticipantId, RoomCode
from telecircle.storage import stores
from telecircle.web.keys import DATABASE, ROOMS, SETTINGS, TEMPLATES

ROOM_CODE_MAX = 64


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    html = request.app[TEMPLATES].get_template(template).render(**context)
    return web.Response(
        text=html, content_type="text/html", status=status, headers={"Cache-Control": "no-store"}
    )


async def index(request: web.Request) -> web.Response:
    return render(
        request,
        "message.html",
        title="Telecircle",
        heading="Telecircle is running",
        body="To join a group, open the link your therapist sent you.",
    )


async def room_page(request: web.Request) -> web.Response:
    code = request.match_info["code"]
    room = None
    if 0 < len(code) <= ROOM_CODE_MAX:
        room = await stores.get_room_by_code(request.app[DATABASE], RoomCode(code))
    if room is None:
        return render(
            request,
            "message.html",
            status=404,
            title="No such room",
            heading="No such room",
            body="This link does not lead to a room. Please check the link, "
            "or ask your therapist for a new one.",
        )
    settings = request.app[SETTINGS]
    return render(
        request,
        "room.html",
        room_code=room.code,
        room_name=room.name,
        participant_limit=min(room.participant_limit, settings.room_limit_ceiling),
        asset_version=asset_version(request),
    )


async def leave_beacon(request: web.Request) -> web.Response:
    """``POST /r/{code}/leave`` — sent by a closing page with ``navigator.sendBeacon``,
    body ``{"participant_id": ..., "resume_token": ...}``: its seat ends at once instead
    of being held for the reconnect window. The token is the proof; 204 either way, so
    the endpoint tells a prober nothing."""
    try:
        body = json.loads(await request.text())
        pid = str(body["participant_id"])[:64]
        token = str(body["resume_token"])[:128]
    except (ValueError, KeyError, TypeError):
        raise web.HTTPBadRequest(text="Expected participant_id and resume_token.") from None
    code = RoomCode(request.match_info["code"][:ROOM_CODE_MAX])
    await request.app[ROOMS].leave_with_token(code, ParticipantId(pid), token)
    return web.Response(status=204)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def asset_version(request: web.Request) -> str:
    bundle = request.app[SETTINGS].webclient_dist / "app.js"
    try:
        return str(int(bundle.stat().st_mtime))
    except OSError:
        return "0"
