"""Every HTTP endpoint and every signalling event against every role (table-driven).

The tables below are the specification, written out by hand rather than derived from
``domain.access``: a change of permissions must change this file too. A route the
table does not know fails the test, so a new endpoint cannot slip in unchecked.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest
import socketio

from telecircle.domain.access import Role
from telecircle.domain.ids import RoomCode
from telecircle.signalling.messages import CLIENT_EVENTS
from telecircle.storage import accounts_store, stores
from tests.conftest import RunningServer
from tests.signalling.client import Client
from tests.web.site_client import SiteClient

EVERYONE = {"anonymous", "patient", "co_facilitator", "therapist", "administrator", "disabled"}
ACCOUNTS = {"co_facilitator", "therapist", "administrator"}
CLINICIANS = {"co_facilitator", "therapist"}
ADMIN = {"administrator"}
THERAPIST = {"therapist"}
PATIENT = {"patient"}

# (method, path pattern) -> who gets past the guard.
ROUTES: dict[tuple[str, str], set[str]] = {
    ("GET", "/"): EVERYONE,
    ("GET", "/healthz"): EVERYONE,
    ("GET", "/certificate"): EVERYONE,
    ("GET", "/certificate.crt"): EVERYONE,
    ("GET", "/setup/{token}"): EVERYONE,
    ("POST", "/setup/{token}"): EVERYONE,
    ("GET", "/password/{token}"): EVERYONE,
    ("POST", "/password/{token}"): EVERYONE,
    ("GET", "/login"): EVERYONE,
    ("POST", "/login"): EVERYONE,
    ("GET", "/login/second-factor"): EVERYONE,
    ("POST", "/login/second-factor"): EVERYONE,
    ("GET", "/i/{token}"): EVERYONE,
    ("POST", "/i/{token}"): EVERYONE,
    ("POST", "/logout"): ACCOUNTS,
    ("GET", "/account"): ACCOUNTS,
    ("POST", "/account/totp"): ACCOUNTS,
    ("POST", "/account/totp/confirm"): ACCOUNTS,
    ("POST", "/account/sign-out-everywhere"): ACCOUNTS,
    ("GET", "/admin"): ADMIN,
    ("POST", "/admin/accounts"): ADMIN,
    ("POST", "/admin/accounts/{user_id}/{what}"): ADMIN,
    ("GET", "/admin/settings"): ADMIN,
    ("POST", "/admin/settings"): ADMIN,
    ("GET", "/admin/audit"): ADMIN,
    ("GET", "/admin/rooms"): ADMIN,
    ("POST", "/admin/rooms/{room_id}"): ADMIN,
    ("GET", "/admin/feedback"): ADMIN,
    ("POST", "/admin/feedback"): ADMIN,
    ("GET", "/clinic"): CLINICIANS,
    ("POST", "/clinic/rooms"): THERAPIST,
    ("GET", "/clinic/rooms/{room_id}"): CLINICIANS,
    ("POST", "/clinic/rooms/{room_id}"): THERAPIST,
    ("POST", "/clinic/rooms/{room_id}/co-facilitators"): THERAPIST,
    ("POST", "/clinic/rooms/{room_id}/sessions"): THERAPIST,
    ("POST", "/clinic/rooms/{room_id}/invites"): THERAPIST,
    ("POST", "/clinic/rooms/{room_id}/invites/{invite_id}/revoke"): THERAPIST,
    ("GET", "/clinic/rooms/{room_id}/sessions"): CLINICIANS,
    ("GET", "/clinic/rooms/{room_id}/sessions/current"): CLINICIANS,
    ("GET", "/clinic/sessions/{session_id}"): CLINICIANS,
    ("GET", "/clinic/sessions/{session_id}/export.{format}"): CLINICIANS,
    ("GET", "/room/{room_id}"): CLINICIANS,
    ("GET", "/join"): PATIENT,
    ("POST", "/join"): PATIENT,
    ("GET", "/session"): PATIENT,
    ("GET", "/feedback"): PATIENT,
    ("POST", "/feedback"): PATIENT,
}

# Signalling events -> who may send them (a refused one gets "not_allowed").
EVENTS: dict[str, set[str]] = {
    "join": PATIENT | CLINICIANS,
    "publish": PATIENT | CLINICIANS,
    "subscribe": PATIENT | CLINICIANS,
    "subscribe_answer": PATIENT | CLINICIANS,
    "set_media": PATIENT | CLINICIANS,
    "leave": PATIENT | CLINICIANS,
    "admit": CLINICIANS,
    "admit_all": CLINICIANS,
    "deny": CLINICIANS,
    "force_media": CLINICIANS,
    "mute_all": CLINICIANS,
    "move_to_lobby": CLINICIANS,
    "lower_hand": CLINICIANS,
    "clear_moment": CLINICIANS,
    "remove": CLINICIANS,
    "lock": CLINICIANS,
    "end_session": CLINICIANS,
    "raise_hand": PATIENT | CLINICIANS,
    "need_moment": PATIENT | CLINICIANS,
    "share_screen": CLINICIANS,
    "start_pairs": CLINICIANS,
    "visit_pair": CLINICIANS,
    "message_pairs": CLINICIANS,
    "end_pairs": CLINICIANS,
    "extend": CLINICIANS,
    "start_segment": CLINICIANS,
    "queue_segment": CLINICIANS,
    "next_segment": CLINICIANS,
    "end_segment": CLINICIANS,
    "save_note": CLINICIANS,
    "list_notes": CLINICIANS,
}

# A well-formed payload of each event that needs one (the rest send {}).
PAYLOADS: dict[str, dict[str, object]] = {
    **{
        event: {"participant_id": "p_nobody"}
        for event in (
            "admit",
            "deny",
            "force_media",
            "move_to_lobby",
            "lower_hand",
            "clear_moment",
            "remove",
            "queue_segment",
        )
    },
    "lock": {"locked": False},
    "raise_hand": {"raised": False},
    "need_moment": {"needed": False},
    "publish": {"sdp": "v=0"},
    "subscribe_answer": {"sdp": "v=0"},
    "share_screen": {"on": False},
    "start_pairs": {"duration_seconds": 600, "groups": None},
    "visit_pair": {"group": None},
    "message_pairs": {"text": "Two minutes"},
    "extend": {"seconds": 60},
    "start_segment": {"participant_ids": ["p_nobody"], "others": "hold"},
    "save_note": {
        "session_id": "s_nobody",
        "note_id": "note-nobody",
        "save_id": "save-nobody",
        "text": "A note",
    },
}


def test_every_signalling_event_is_in_the_table() -> None:
    assert set(EVENTS) == set(CLIENT_EVENTS)


Identity = Callable[[], Awaitable[str | None]]


async def identities(server: RunningServer, code: str) -> dict[str, Identity]:
    """A maker of a fresh cookie (or none) for each role."""
    room = await stores.get_room_by_code(server.database, RoomCode(code))
    assert room is not None

    async def account(role: Role, *, disabled: bool = False, owner: bool = False) -> str:
        user_id = await server._user(role)
        if owner:
            from telecircle.storage import org_store

            await org_store.assign_clinician(server.database, room.id, user_id, "owner")
        cookie = await server.sign_in(user_id)
        if disabled:
            await accounts_store.set_disabled(server.database, user_id, True, time.time())
        return cookie

    async def anonymous() -> str | None:
        return None

    async def patient() -> str:
        return await server.patient_cookie(code)

    async def co_facilitator() -> str:
        return await server.clinician_cookie(code)

    async def therapist() -> str:
        return await account(Role.THERAPIST, owner=True)

    async def administrator() -> str:
        return await account(Role.ADMINISTRATOR)

    async def disabled() -> str:
        return await account(Role.THERAPIST, owner=True, disabled=True)

    return {
        "anonymous": anonymous,
        "patient": patient,
        "co_facilitator": co_facilitator,
        "therapist": therapist,
        "administrator": administrator,
        "disabled": disabled,
    }


def concrete(path: str, room_id: str) -> str:
    return (
        path.replace("{token}", "x" * 10)
        .replace("{room_id}", room_id)
        .replace("{user_id}", "u_nobody")
        .replace("{what}", "enable")
        .replace("{invite_id}", "i_nobody")
        .replace("{session_id}", "s_nobody")
        .replace("{format}", "json")
    )


async def test_every_route_is_in_the_table(server: RunningServer) -> None:
    found = set()
    for route in server.app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path") or info.get("prefix", "")
        if path.startswith(("/socket.io", "/static")) or route.method == "HEAD":
            continue
        found.add((route.method, path))
    assert found == set(ROUTES)


async def test_every_route_refuses_every_role_it_does_not_serve(server: RunningServer) -> None:
    code = await server.create_room()
    room = await stores.get_room_by_code(server.database, RoomCode(code))
    assert room is not None
    makers = await identities(server, code)
    wrong: list[str] = []
    for role, make in makers.items():
        for (method, pattern), allowed in ROUTES.items():
            client = SiteClient(server.url, await make())
            try:
                home = await client.get("/login" if role in ("anonymous", "disabled") else "/")
                path = concrete(pattern, room.id)
                if method == "GET":
                    page = await client.get(path, follow=False)
                else:
                    page = await client.post(path, {}, csrf=home.csrf, follow=False)
                refused = page.headers.get("X-Telecircle-Refused")
                if refused == "csrf":
                    wrong.append(f"{role} {method} {pattern}: CSRF refused a valid token")
                elif (refused is None) != (role in allowed):
                    wrong.append(f"{role} {method} {pattern}: refused={refused} ({page.status})")
                assert page.status < 500, f"{role} {method} {pattern}: {page.status}"
            finally:
                await client.close()
    assert wrong == []


async def test_every_event_refuses_every_role_it_does_not_serve(server: RunningServer) -> None:
    code = await server.create_room()
    makers = await identities(server, code)
    for role in ("anonymous", "disabled"):
        with pytest.raises(socketio.exceptions.ConnectionError):
            await Client().connect(server.url, await makers[role]())
    wrong = []
    for role in ("patient", "co_facilitator", "therapist", "administrator"):
        for event, allowed in EVENTS.items():
            client = await Client().connect(server.url, await makers[role]())
            try:
                payload = {"room_code": code} if event == "join" else PAYLOADS.get(event, {})
                ack = await client.call(event, payload)
                refused = not ack["ok"] and ack["error"]["code"] == "not_allowed"
                if refused == (role in allowed):
                    wrong.append(f"{role} {event}: {ack}")
            finally:
                await client.close()
    assert wrong == []
