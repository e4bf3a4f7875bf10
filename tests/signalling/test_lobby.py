"""The lobby through real socket.io clients: patients wait, clinicians admit or deny."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
import socketio

from telecircle.domain.access import Role
from telecircle.domain.ids import RoomCode
from telecircle.web.keys import CHECKINS, ROOMS
from tests.conftest import RunningServer
from tests.signalling.client import Client


async def _enter(server: RunningServer, cookie: str, code: str) -> tuple[Client, dict[str, Any]]:
    client = await Client().connect(server.url, cookie)
    ack = await client.call("join", {"room_code": code})
    assert ack["ok"], ack
    return client, ack["data"]


async def test_a_patient_waits_until_a_clinician_admits_them(server: RunningServer) -> None:
    code = await server.create_room(limit=4)
    therapist, seat = await _enter(server, await server.clinician_cookie(code, "Dr Ada"), code)
    assert (seat["role"], seat["place"]) == ("clinician", "plenary")
    patient, waiting = await _enter(server, await server.patient_cookie(code, "Bo"), code)
    try:
        assert (waiting["role"], waiting["place"]) == ("patient", "lobby")
        assert waiting["participants"] == []
        # The clinicians see who waits, with the check-in only they may see.
        await therapist.wait_for(lambda: bool((therapist.last("lobby") or {}).get("waiting")))
        [entry] = therapist.last("lobby")["waiting"]
        assert (entry["display_name"], entry["location"]) == ("Bo", "Home")
        # Nobody in the session sees the waiting patient; they get no roster either.
        assert all(
            p["id"] != waiting["participant_id"]
            for p in (therapist.last("roster") or {}).get("participants", [])
        )
        assert patient.last("roster") is None
        # A waiting patient sends and receives no media.
        refused = await patient.call("subscribe", {})
        assert refused["error"]["code"] == "still_waiting"

        ack = await therapist.call("admit", {"participant_id": waiting["participant_id"]})
        assert ack["ok"], ack
        await patient.wait_for(lambda: patient.last("admitted") is not None)
        names = {p["display_name"] for p in patient.last("admitted")["participants"]}
        assert names == {"Dr Ada", "Bo"}
        await therapist.wait_for(lambda: therapist.last("lobby")["waiting"] == [])
    finally:
        await patient.close()
        await therapist.close()


async def test_a_denied_patient_is_told_the_clinicians_message(server: RunningServer) -> None:
    code = await server.create_room()
    therapist, _ = await _enter(server, await server.clinician_cookie(code), code)
    patient, waiting = await _enter(server, await server.patient_cookie(code), code)
    try:
        ack = await therapist.call(
            "deny",
            {"participant_id": waiting["participant_id"], "message": "Please call the office."},
        )
        assert ack["ok"], ack
        await patient.wait_for(lambda: patient.last("closed") is not None)
        assert patient.last("closed") == {
            "reason": "denied",
            "message": "Please call the office.",
        }
    finally:
        await patient.close()
        await therapist.close()


async def test_patients_cannot_run_the_lobby(server: RunningServer) -> None:
    code = await server.create_room()
    therapist, _ = await _enter(server, await server.clinician_cookie(code), code)
    first, one = await _enter(server, await server.patient_cookie(code, "One"), code)
    second, two = await _enter(server, await server.patient_cookie(code, "Two"), code)
    try:
        await therapist.call("admit", {"participant_id": one["participant_id"]})
        ack = await first.call("admit", {"participant_id": two["participant_id"]})
        assert ack["error"]["code"] == "not_allowed"
        ack = await first.call("admit_all", {})
        assert ack["error"]["code"] == "not_allowed"
    finally:
        for client in (first, second, therapist):
            await client.close()


async def test_admit_all_stops_at_the_limit(server: RunningServer) -> None:
    code = await server.create_room(limit=3)
    therapist, _ = await _enter(server, await server.clinician_cookie(code), code)
    patients = [
        await _enter(server, await server.patient_cookie(code, f"P{n}"), code) for n in range(3)
    ]
    try:
        ack = await therapist.call("admit_all", {})
        assert ack == {"ok": True, "data": {"admitted": 2}}
        await therapist.wait_for(lambda: len(therapist.last("lobby")["waiting"]) == 1)
        assert therapist.last("lobby")["waiting"][0]["display_name"] == "P2"
    finally:
        for client, _ in patients:
            await client.close()
        await therapist.close()


async def test_a_connection_without_a_pass_or_sign_in_is_refused(server: RunningServer) -> None:

    with pytest.raises(socketio.exceptions.ConnectionError):
        await Client().connect(server.url)


async def test_a_reconnecting_patient_returns_to_their_seat_without_the_lobby(
    server: RunningServer,
) -> None:
    code = await server.create_room()
    therapist, _ = await _enter(server, await server.clinician_cookie(code), code)
    cookie = await server.patient_cookie(code)
    patient, waiting = await _enter(server, cookie, code)
    try:
        await therapist.call("admit", {"participant_id": waiting["participant_id"]})
        await patient.wait_for(lambda: patient.last("admitted") is not None)
        await patient.sio.eio.disconnect(abort=True)  # dropped, no goodbye
        back, seat = await _enter(server, cookie, code)
        assert seat["participant_id"] == waiting["participant_id"]
        assert (seat["place"], seat["returned"]) == ("plenary", True)
        await back.close()
    finally:
        await therapist.close()


async def test_fifty_concurrent_openings_of_a_personal_link_give_one_seat(
    server: RunningServer,
) -> None:
    import asyncio

    from telecircle.web.keys import INVITES

    code = await server.create_room()
    token = await server.personal_invite(code, "Robin")
    invites = server.app[INVITES]
    redemptions = await asyncio.gather(*(invites.redeem(token, "127.0.0.1") for _ in range(50)))
    connected = []
    for redemption in redemptions:
        with contextlib.suppress(socketio.exceptions.ConnectionError):
            connected.append(await Client().connect(server.url, f"tc_pass={redemption.secret}"))
    try:
        assert len(connected) == 1
        newest = max(redemptions, key=lambda r: r.pass_record.generation)
        assert newest.pass_record.generation == 50
    finally:
        for client in connected:
            await client.close()


async def test_opening_a_personal_link_on_a_second_device_moves_the_seat(
    server: RunningServer,
) -> None:
    code = await server.create_room()
    token = await server.personal_invite(code, "Robin")
    cookies = [await server.open_invite(token, "Robin") for _ in range(2)]
    therapist, _ = await _enter(server, await server.clinician_cookie(code), code)
    # The first device's pass was replaced by the second's: it can no longer connect,
    # and the seat is the second device's.
    with pytest.raises(socketio.exceptions.ConnectionError):
        await Client().connect(server.url, cookies[0])
    phone, seat = await _enter(server, cookies[1], code)
    try:
        assert seat["place"] == "lobby"
    finally:
        await phone.close()
        await therapist.close()


async def test_a_second_device_of_a_personal_link_takes_the_seat_through_the_lobby(
    server: RunningServer,
) -> None:
    code = await server.create_room()
    token = await server.personal_invite(code, "Robin")

    async def device() -> str:
        return await server.open_invite(token, "Robin")

    therapist, _ = await _enter(server, await server.clinician_cookie(code), code)
    laptop, first = await _enter(server, await device(), code)
    await therapist.call("admit", {"participant_id": first["participant_id"]})
    await laptop.wait_for(lambda: laptop.last("admitted") is not None)
    phone, second = await _enter(server, await device(), code)
    try:
        # One seat per personal link: the laptop's seat ends and it learns why; the
        # phone is another device, so it waits to be let in (a forwarded link does
        # not put a stranger straight into the group).
        await laptop.wait_for(lambda: laptop.last("closed") is not None)
        assert laptop.last("closed")["reason"] == "seat_moved"
        assert (second["place"], second["returned"]) == ("lobby", False)
        await therapist.wait_for(
            lambda: (
                [w["id"] for w in therapist.last("lobby")["waiting"]] == [second["participant_id"]]
            )
        )
        # The check-in is the new device's, and it survives the move.
        assert therapist.last("lobby")["waiting"][0]["location"] == "Home"
        roster = therapist.last("roster")["participants"]
        assert first["participant_id"] not in {p["id"] for p in roster}
    finally:
        await phone.close()
        await therapist.close()


async def test_withdrawing_an_invite_or_disabling_an_account_ends_live_seats(
    server: RunningServer,
) -> None:
    from telecircle.storage import invites_store, org_store, stores
    from telecircle.web.keys import ACCOUNTS, INVITES

    code = await server.create_room()
    room = await stores.get_room_by_code(server.database, RoomCode(code))
    assert room is not None
    therapist, _ = await _enter(server, await server.clinician_cookie(code, "Dr A"), code)
    helper_cookie = await server.clinician_cookie(code, "Dr B")
    helper, _ = await _enter(server, helper_cookie, code)
    patient, seat = await _enter(server, await server.patient_cookie(code, "Robin"), code)
    try:
        await therapist.call("admit", {"participant_id": seat["participant_id"]})
        await patient.wait_for(lambda: patient.last("admitted") is not None)
        [listing] = await invites_store.list_invites(server.database, room.id, 0.0)
        owner = next(
            u
            for u, r in await org_store.clinicians_of_room(server.database, room.id)
            if r == "owner"
        )
        await server.app[INVITES].revoke(owner, listing.invite.id, "127.0.0.1")
        await patient.wait_for(lambda: patient.last("closed") is not None)
        assert patient.last("closed")["reason"] == "revoked"

        admin_id = await server._user(Role.ADMINISTRATOR)
        users = await server.app[ACCOUNTS].list_users()
        helper_id = next(u.id for u in users if u.display_name == "Dr B")
        await server.app[ACCOUNTS].disable(admin_id, helper_id, "127.0.0.1")
        await helper.wait_for(lambda: helper.last("closed") is not None)
        assert helper.last("closed")["reason"] == "revoked"
        await therapist.wait_for(
            lambda: (
                {p["display_name"] for p in therapist.last("roster")["participants"]} == {"Dr A"}
            )
        )
    finally:
        for client in (patient, helper, therapist):
            await client.close()


async def test_a_denied_patient_cannot_knock_again_this_session(server: RunningServer) -> None:
    code = await server.create_room()
    therapist, _ = await _enter(server, await server.clinician_cookie(code), code)
    cookie = await server.patient_cookie(code)
    patient, waiting = await _enter(server, cookie, code)
    try:
        await therapist.call("deny", {"participant_id": waiting["participant_id"]})
        await patient.wait_for(lambda: patient.last("closed") is not None)
        # Their check-in went with the seat; filling in the page again does not help.
        again = await Client().connect(server.url, cookie)
        ack = await again.call("join", {"room_code": code})
        assert ack["error"]["code"] == "not_allowed"
        await again.close()
        key = next(iter(server.app[ROOMS].live_room(RoomCode(code)).denied))  # type: ignore[union-attr]
        server.app[CHECKINS].record(key, "Home", "Sam")
        again = await Client().connect(server.url, cookie)
        ack = await again.call("join", {"room_code": code})
        assert ack["error"]["code"] == "denied"
        await again.close()
    finally:
        await patient.close()
        await therapist.close()


async def test_signing_out_everywhere_closes_the_call_of_that_account(
    server: RunningServer,
) -> None:
    from telecircle.web.keys import ACCOUNTS, SIGNALLING

    code = await server.create_room()
    therapist, seat = await _enter(server, await server.clinician_cookie(code, "Dr A"), code)
    other, _ = await _enter(server, await server.clinician_cookie(code, "Dr B"), code)
    try:
        users = await server.app[ACCOUNTS].list_users()
        doctor = next(u for u in users if u.display_name == "Dr A")
        await server.app[ACCOUNTS].sign_out_everywhere(doctor.id, "127.0.0.1")
        await server.app[SIGNALLING].end_connections("user:" + doctor.id, "signed_out")
        await therapist.wait_for(lambda: therapist.last("closed") is not None)
        assert therapist.last("closed")["reason"] == "signed_out"
        await other.wait_for(
            lambda: (
                seat["participant_id"]
                not in {p["id"] for p in other.last("roster")["participants"]}
            )
        )
    finally:
        await therapist.close()
        await other.close()


async def test_a_late_drop_of_an_older_connection_does_not_mark_the_seat_away(
    server: RunningServer,
) -> None:
    code = await server.create_room()
    cookie = await server.clinician_cookie(code)
    first, seat = await _enter(server, cookie, code)
    second, again = await _enter(server, cookie, code)  # the same account, a new socket
    try:
        assert again["participant_id"] == seat["participant_id"] and again["returned"]
        rooms = server.app[ROOMS]
        # The first connection's drop, arriving after the second took the seat over.
        await rooms.disconnect(RoomCode(code), seat["participant_id"], 1)
        live = rooms.live_room(RoomCode(code))
        assert live is not None
        participant = live.state.find(seat["participant_id"])
        assert participant is not None and not participant.away
        # Without the epoch (as before), the same drop would have marked it away.
        await rooms.disconnect(RoomCode(code), seat["participant_id"])
        participant = live.state.find(seat["participant_id"])
        assert participant is not None and participant.away
    finally:
        await first.close()
        await second.close()


async def test_an_admit_that_lands_while_the_join_finishes_is_not_lost(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The clinician admits the patient in the moment between the seat being taken and
    the join being answered: the patient must still learn they are in the session."""
    from telecircle.web.keys import SIGNALLING

    code = await server.create_room()
    therapist, clinician_seat = await _enter(server, await server.clinician_cookie(code), code)
    entry = server.app[SIGNALLING]._entry
    assert entry is not None
    original = entry.resolve
    rooms = server.app[ROOMS]
    calls = 0

    async def resolve_then_admit(session: str | None, patient_pass: str | None) -> object:
        nonlocal calls
        principal = await original(session, patient_pass)
        if patient_pass is not None:
            calls += 1
            if calls == 3:  # connect, join's check, then the re-check after the seat
                live = rooms.live_room(RoomCode(code))
                assert live is not None
                [waiting] = live.state.waiting()
                await rooms.admit(RoomCode(code), clinician_seat["participant_id"], waiting.id)
        return principal

    monkeypatch.setattr(entry, "resolve", resolve_then_admit)
    patient = await Client().connect(server.url, await server.patient_cookie(code))
    try:
        ack = await patient.call("join", {"room_code": code})
        assert ack["ok"], ack
        assert calls == 3
        # Either the answer already says so, or the admitted event follows.
        if ack["data"]["place"] != "plenary":
            await patient.wait_for(lambda: patient.last("admitted") is not None)
    finally:
        await patient.close()
        await therapist.close()
