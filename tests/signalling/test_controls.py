"""The facilitator's controls through real socket.io clients and the real server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import socketio

from telecircle.domain.ids import RoomCode
from telecircle.storage import audit_store, stores
from telecircle.web.keys import CHECKINS, ROOMS
from tests.conftest import RunningServer
from tests.signalling.client import Client


@dataclass
class Session:
    code: str
    therapist: Client
    ann: Client
    bo: Client
    ann_id: str
    bo_id: str
    bo_cookie: str


async def _enter(server: RunningServer, cookie: str, code: str) -> tuple[Client, dict[str, Any]]:
    client = await Client().connect(server.url, cookie)
    ack = await client.call("join", {"room_code": code})
    assert ack["ok"], ack
    return client, ack["data"]


async def open_session(server: RunningServer, *, may_unmute: bool = True) -> Session:
    code = await server.create_room()
    if not may_unmute:
        room = await stores.get_room_by_code(server.database, RoomCode(code))
        assert room is not None
        await stores.update_room(
            server.database,
            room.id,
            name=room.name,
            participant_limit=room.participant_limit,
            recording_consent_required=None,
            notes_retention_days=None,
            patients_may_unmute=False,
        )
    therapist, _ = await _enter(server, await server.owner_cookie(code), code)
    ann, a = await _enter(server, await server.patient_cookie(code, "Ann"), code)
    bo_cookie = await server.patient_cookie(code, "Bo")
    bo, b = await _enter(server, bo_cookie, code)
    assert (await therapist.call("admit_all", {}))["ok"]
    for patient in (ann, bo):
        await patient.wait_for(lambda p=patient: p.last("admitted") is not None)  # type: ignore[misc]
    return Session(code, therapist, ann, bo, a["participant_id"], b["participant_id"], bo_cookie)


@pytest.fixture
async def s(server: RunningServer) -> AsyncIterator[Session]:
    running = await open_session(server)
    yield running
    for client in (running.therapist, running.ann, running.bo):
        await client.close()


def view(client: Client, pid: str) -> dict[str, Any] | None:
    roster = client.last("roster") or client.last("admitted") or {"participants": []}
    return next((p for p in roster["participants"] if p["id"] == pid), None)


async def test_a_muted_patient_is_shown_muted_and_released_by_their_own_unmute(
    s: Session,
) -> None:
    ack = await s.therapist.call("force_media", {"participant_id": s.ann_id, "audio_off": True})
    assert ack["ok"], ack
    for client in (s.ann, s.bo, s.therapist):
        await client.wait_for(lambda c=client: (view(c, s.ann_id) or {}).get("audio_forced_off"))  # type: ignore[misc]
    # This room lets patients unmute themselves: doing so releases the mute.
    assert (await s.ann.call("set_media", {"audio_on": True}))["ok"]
    await s.bo.wait_for(lambda: view(s.bo, s.ann_id)["audio_forced_off"] is False)  # type: ignore[index]


async def test_where_the_room_forbids_it_a_muted_patient_must_be_let_speak(
    server: RunningServer,
) -> None:
    s = await open_session(server, may_unmute=False)
    try:
        await s.therapist.call("force_media", {"participant_id": s.ann_id, "audio_off": True})
        refused = await s.ann.call("set_media", {"audio_on": True})
        assert refused["error"]["code"] == "not_allowed"
        assert (await s.ann.call("raise_hand", {"raised": True}))["ok"]
        await s.therapist.wait_for(lambda: s.therapist.last("lobby")["hands"] == [s.ann_id])
        await s.therapist.call("force_media", {"participant_id": s.ann_id, "audio_off": False})
        await s.therapist.wait_for(lambda: s.therapist.last("lobby")["hands"] == [])
        assert (await s.ann.call("set_media", {"audio_on": True}))["ok"]
    finally:
        for client in (s.therapist, s.ann, s.bo):
            await client.close()


async def test_a_moment_is_seen_by_the_clinicians_only(s: Session) -> None:
    before = len(s.bo.events)
    assert (await s.ann.call("need_moment", {"needed": True}))["ok"]
    await s.ann.wait_for(lambda: s.ann.last("moment") == {"needed": True})
    await s.therapist.wait_for(
        lambda: [m["id"] for m in s.therapist.last("lobby")["moments"]] == [s.ann_id]
    )
    # Bo hears nothing of it, not even an unchanged roster at that moment: a round trip
    # on his own socket (whose messages keep their order) shows nothing came before.
    assert (await s.bo.call("raise_hand", {"raised": False}))["ok"]
    assert s.bo.events[before:] == []
    assert (await s.therapist.call("clear_moment", {"participant_id": s.ann_id}))["ok"]
    await s.therapist.wait_for(lambda: s.therapist.last("lobby")["moments"] == [])
    await s.ann.wait_for(lambda: s.ann.last("moment") == {"needed": False})  # she learns it


async def test_patients_cannot_use_the_controls(s: Session) -> None:
    for event, payload in (
        ("force_media", {"participant_id": s.bo_id, "audio_off": True}),
        ("mute_all", {}),
        ("move_to_lobby", {"participant_id": s.bo_id}),
        ("remove", {"participant_id": s.bo_id, "revoke": True}),
        ("lock", {"locked": True}),
        ("end_session", {}),
        ("lower_hand", {"participant_id": s.bo_id}),
    ):
        ack = await s.ann.call(event, payload)
        assert ack["error"]["code"] == "not_allowed", (event, ack)


async def test_back_to_the_lobby_and_in_again(s: Session) -> None:
    assert (await s.therapist.call("move_to_lobby", {"participant_id": s.bo_id}))["ok"]
    await s.bo.wait_for(lambda: s.bo.last("moved_to_lobby") is not None)
    await s.ann.wait_for(lambda: view(s.ann, s.bo_id) is None)
    refused = await s.bo.call("subscribe", {})
    assert refused["error"]["code"] == "still_waiting"
    await s.therapist.call("admit", {"participant_id": s.bo_id})
    await s.ann.wait_for(lambda: view(s.ann, s.bo_id) is not None)


async def test_removing_with_the_link_withdrawn_keeps_them_out(
    server: RunningServer, s: Session
) -> None:
    ack = await s.therapist.call("remove", {"participant_id": s.bo_id, "revoke": True})
    assert ack["ok"], ack
    await s.bo.wait_for(lambda: s.bo.last("closed") is not None)
    assert s.bo.last("closed")["reason"] == "removed"
    with pytest.raises(socketio.exceptions.ConnectionError):
        await Client().connect(server.url, s.bo_cookie)
    entries = await audit_store.list_entries(server.database, offset=0, limit=10, action="remove")
    assert [e.target for e in entries.entries] == [s.bo_id]


async def test_a_locked_session_admits_nobody(server: RunningServer, s: Session) -> None:
    assert (await s.therapist.call("lock", {"locked": True}))["ok"]
    cy, seat = await _enter(server, await server.patient_cookie(s.code, "Cy"), s.code)
    try:
        await s.therapist.wait_for(lambda: s.therapist.last("lobby")["locked"] is True)
        refused = await s.therapist.call("admit", {"participant_id": seat["participant_id"]})
        assert refused["error"]["code"] == "session_locked"
        await s.therapist.call("lock", {"locked": False})
        assert (await s.therapist.call("admit", {"participant_id": seat["participant_id"]}))["ok"]
    finally:
        await cy.close()


async def test_end_session_for_all_closes_everyone_and_the_room(
    server: RunningServer, s: Session
) -> None:
    assert (await s.therapist.call("end_session", {}))["ok"]
    # The ender's answer comes first (the same socket keeps order), then its notice.
    assert s.therapist.last("closed") is None
    for client in (s.ann, s.bo, s.therapist):
        await client.wait_for(lambda c=client: c.last("closed") is not None)  # type: ignore[misc]
        assert client.last("closed")["reason"] == "session_ended"
    assert server.app[ROOMS].live_room(RoomCode(s.code)) is None


async def test_a_removed_patient_cannot_knock_again_and_co_facilitators_cannot_revoke(
    server: RunningServer, s: Session
) -> None:
    helper = await Client().connect(server.url, await server.clinician_cookie(s.code, "Dr Co"))
    try:
        assert (await helper.call("join", {"room_code": s.code}))["ok"]
        refused = await helper.call("remove", {"participant_id": s.bo_id, "revoke": True})
        assert refused["error"]["code"] == "not_allowed"
        assert (await helper.call("remove", {"participant_id": s.bo_id, "revoke": False}))["ok"]
        await s.bo.wait_for(lambda: s.bo.last("closed") is not None)
        # His link still works and he fills in the page again, but not for this session.
        live = server.app[ROOMS].live_room(RoomCode(s.code))
        assert live is not None and len(live.denied) == 1
        server.app[CHECKINS].record(next(iter(live.denied)), "Home", "Sam")
        again = await Client().connect(server.url, s.bo_cookie)
        ack = await again.call("join", {"room_code": s.code})
        assert ack["error"]["code"] == "denied"
        await again.close()
    finally:
        await helper.close()
