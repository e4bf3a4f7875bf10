"""Signalling against the real server on loopback with real socket.io clients."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from telecircle.domain.ids import RoomCode
from telecircle.signalling.schema import render
from telecircle.storage import stores
from tests.conftest import ROOMS, SFU, RunningServer
from tests.signalling.client import Client

pytestmark = pytest.mark.timeout(60)


Connect = Callable[[str], Awaitable[Client]]


@pytest.fixture
async def clients(server: RunningServer) -> AsyncIterator[Connect]:
    """Connects a new client as whoever the given Cookie header says."""
    made: list[Client] = []

    async def connect(cookie: str) -> Client:
        client = Client()
        made.append(client)
        return await client.connect(server.url, cookie)

    yield connect
    for client in made:
        if client.sio.connected:
            await client.close()


@pytest.fixture
async def someone(server: RunningServer, clients: Connect) -> Client:
    """A signed-in clinician's connection, not in any room yet."""
    code = await server.create_room()
    return await clients(await server.clinician_cookie(code))


async def enter(client: Client, code: str) -> dict[str, Any]:
    ack = await client.call("join", {"room_code": code})
    assert ack["ok"], ack
    data: dict[str, Any] = ack["data"]
    return data


async def clinician(server: RunningServer, clients: Connect, code: str, name: str) -> Client:
    """A co-facilitator of the room, connected and in the session."""
    client = await clients(await server.clinician_cookie(code, name))
    await enter(client, code)
    return client


async def page_csrf_token(server: RunningServer, cookie: str, code: str | None = None) -> str:
    """The CSRF token the session page hands its script, as a browser gets it: a
    clinician's page of the room ``code``, or (no code) the patient's session page."""
    path = "/session"
    if code is not None:
        room = await stores.get_room_by_code(server.database, RoomCode(code))
        assert room is not None
        path = f"/room/{room.id}"
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.url + path, headers={"Cookie": cookie}) as page,
    ):
        assert page.status == 200
        found = re.search(r'data-csrf-token="([^"]+)"', await page.text())
    assert found is not None
    return found.group(1)


async def test_join_unknown_room_is_refused_clearly(someone: Client) -> None:
    ack = await someone.call("join", {"room_code": "nope"})
    assert ack["ok"] is False
    assert ack["error"]["code"] == "no_such_room"
    assert "link" in ack["error"]["message"]


async def test_entry_is_checked_against_the_room(server: RunningServer, clients: Connect) -> None:
    """Identity comes from the cookie; whether it may enter is checked per room."""
    mine, other = await server.create_room("Mine"), await server.create_room("Other")
    outsider = await clients(await server.clinician_cookie(mine))
    refused = await outsider.call("join", {"room_code": other})
    assert refused["error"]["code"] == "not_allowed"
    patient = await clients(await server.patient_cookie(mine))
    refused = await patient.call("join", {"room_code": other})
    assert refused["error"]["code"] == "not_allowed"
    # Neither refusal opened a session or left a seat behind.
    assert server.app[ROOMS].live_room(RoomCode(other)) is None
    assert (await enter(patient, mine))["place"] == "lobby"


async def test_a_connection_has_one_seat(server: RunningServer, clients: Connect) -> None:
    code = await server.create_room()
    client = await clinician(server, clients, code, "A")
    again = await client.call("join", {"room_code": code})
    assert again["error"]["code"] == "already_joined"


def roster_ids(client: Client) -> list[str]:
    return [p["id"] for p in (client.last("roster") or {}).get("participants", [])]


def connected_flags(client: Client) -> dict[str, bool]:
    return {p["id"]: p["connected"] for p in client.last("roster")["participants"]}


async def test_join_announces_roster_and_leave_removes(
    server: RunningServer, clients: Connect
) -> None:
    code = await server.create_room()
    first = await clients(await server.clinician_cookie(code, "First"))
    second = await clients(await server.clinician_cookie(code, "Second"))
    seat = await enter(first, code)
    assert (seat["role"], seat["place"], seat["returned"]) == ("clinician", "plenary", False)
    first_id = seat["participant_id"]
    seat = await enter(second, code)
    assert [p["display_name"] for p in seat["participants"]] == ["First", "Second"]
    assert {p["role"] for p in seat["participants"]} == {"clinician"}
    await first.wait_for(lambda: len(roster_ids(first)) == 2)
    assert (await second.call("leave"))["ok"] is True
    await first.wait_for(lambda: roster_ids(first) == [first_id])
    await second.close()


async def test_a_patient_who_arrives_first_is_shown_to_the_first_clinician(
    server: RunningServer, clients: Connect
) -> None:
    code = await server.create_room()
    patient = await clients(await server.patient_cookie(code, "Early"))
    pid = (await enter(patient, code))["participant_id"]
    doctor = await clinician(server, clients, code, "Dr A")
    await doctor.wait_for(lambda: doctor.last("lobby") is not None)
    assert [w["id"] for w in doctor.last("lobby")["waiting"]] == [pid]
    assert (await doctor.call("admit", {"participant_id": pid}))["ok"]
    await patient.wait_for(lambda: patient.last("admitted") is not None)


async def test_a_patient_admitted_while_away_returns_into_the_session(
    server: RunningServer, clients: Connect
) -> None:
    code = await server.create_room()
    doctor = await clinician(server, clients, code, "Dr A")
    cookie = await server.patient_cookie(code, "Bo")
    patient = await clients(cookie)
    pid = (await enter(patient, code))["participant_id"]
    await patient.sio.eio.disconnect(abort=True)
    await doctor.wait_for(lambda: doctor.last("lobby")["waiting"][0]["connected"] is False)
    assert (await doctor.call("admit", {"participant_id": pid}))["ok"]
    back = await clients(cookie)
    seat = await enter(back, code)
    assert (seat["participant_id"], seat["place"], seat["returned"]) == (pid, "plenary", True)
    assert {p["display_name"] for p in seat["participants"]} == {"Dr A", "Bo"}
    # And they hear of later changes like everyone in the session.
    assert (await doctor.call("set_media", {"audio_on": False}))["ok"]
    await back.wait_for(
        lambda: any(
            p["display_name"] == "Dr A" and not p["audio_on"]
            for p in (back.last("roster") or {}).get("participants", [])
        )
    )


async def test_a_dropped_connection_comes_back_into_the_same_seat(
    server: RunningServer, clients: Connect
) -> None:
    code = await server.create_room(limit=2)
    watcher = await clinician(server, clients, code, "W")
    cookie = await server.clinician_cookie(code, "D")
    dropper = await clients(cookie)
    seat = await enter(dropper, code)
    pid = seat["participant_id"]
    await watcher.wait_for(lambda: len(roster_ids(watcher)) == 2)

    await dropper.sio.eio.disconnect(abort=True)  # no goodbye: a network drop
    await watcher.wait_for(lambda: connected_flags(watcher)[pid] is False)
    # The held seat still counts against the limit of 2: nobody else takes it.
    stranger = await clients(await server.clinician_cookie(code, "S"))
    refused = await stranger.call("join", {"room_code": code})
    assert refused["error"]["code"] == "room_full"

    # The same person (same cookie) on a new connection gets the seat back.
    back = await clients(cookie)
    returned = await enter(back, code)
    assert returned["participant_id"] == pid
    assert (returned["place"], returned["returned"]) == ("plenary", True)
    await watcher.wait_for(lambda: connected_flags(watcher)[pid] is True)
    # The watcher never saw the seat leave: every roster it got had both participants.
    rosters = [data for name, data in watcher.events if name == "roster"]
    assert all(len(r["participants"]) == 2 for r in rosters[1:])
    assert (await back.call("set_media", {"audio_on": False}))["ok"]


async def test_joining_from_a_second_window_moves_the_seat(
    server: RunningServer, clients: Connect
) -> None:
    code = await server.create_room()
    cookie = await server.clinician_cookie(code, "A")
    first = await clients(cookie)
    seat = await enter(first, code)
    second = await clients(cookie)
    moved = await enter(second, code)
    assert (moved["participant_id"], moved["returned"]) == (seat["participant_id"], True)
    await first.wait_for(lambda: first.last("closed") is not None)
    assert first.last("closed")["reason"] == "seat_moved"
    for _ in range(100):
        if not first.sio.connected:
            break
        await asyncio.sleep(0.05)
    assert not first.sio.connected
    assert (await second.call("set_media", {"video_on": False}))["ok"]
    assert len(roster_ids(second) or [1]) == 1


async def test_a_seat_not_taken_back_in_time_is_freed(tmp_path: Path) -> None:
    from tests.conftest import start_server

    server = await start_server(tmp_path, reconnect_grace=0.5)
    watcher, dropper, late = Client(), Client(), Client()
    try:
        code = await server.create_room()
        cookie = await server.clinician_cookie(code, "D")
        await watcher.connect(server.url, await server.clinician_cookie(code, "W"))
        await dropper.connect(server.url, cookie)
        await enter(watcher, code)
        seat = await enter(dropper, code)
        await watcher.wait_for(lambda: len(roster_ids(watcher)) == 2)
        await dropper.sio.eio.disconnect(abort=True)
        await watcher.wait_for(lambda: len(roster_ids(watcher)) == 1, timeout=15)
        # Too late to return: the same person enters afresh, in a new seat.
        await late.connect(server.url, cookie)
        fresh = await enter(late, code)
        assert fresh["returned"] is False
        assert fresh["participant_id"] != seat["participant_id"]
        await watcher.wait_for(lambda: len(roster_ids(watcher)) == 2)
        await late.close()
    finally:
        await watcher.close()
        await server.runner.cleanup()


async def test_room_limit_is_atomic_under_concurrent_joins(
    server: RunningServer, clients: Connect
) -> None:
    code = await server.create_room(limit=10)
    cookies = [await server.clinician_cookie(code, f"P{i}") for i in range(30)]
    people = await asyncio.gather(*(clients(cookie) for cookie in cookies))
    acks = await asyncio.gather(*(c.call("join", {"room_code": code}) for c in people))
    admitted = [a for a in acks if a["ok"]]
    refused = [a for a in acks if not a["ok"]]
    assert len(admitted) == 10
    assert len(refused) == 20
    assert {a["error"]["code"] for a in refused} == {"room_full"}
    assert all("full" in a["error"]["message"] for a in refused)


@pytest.mark.parametrize(
    ("event", "payload", "code"),
    [
        ("no_such_event", {}, "unknown_event"),
        ("join", {}, "invalid_message"),
        ("join", {"room_code": ""}, "invalid_message"),
        ("join", {"room_code": 5}, "invalid_message"),
        # Identity comes from the cookie: a name in the message is refused, not used.
        ("join", {"room_code": "x", "display_name": "A"}, "invalid_message"),
        ("join", ["not", "an", "object"], "invalid_message"),
        ("resume", {"room_code": "x"}, "unknown_event"),
        ("publish", {"sdp": "v=0"}, "not_joined"),
        ("admit", {"participant_id": "p_x"}, "not_joined"),
    ],
)
async def test_bad_messages_get_error_acks_and_keep_the_connection(
    someone: Client, event: str, payload: object, code: str
) -> None:
    ack = await someone.call(event, payload)
    assert ack["ok"] is False
    assert ack["error"]["code"] == code
    assert someone.sio.connected
    assert "not an" not in ack["error"]["message"], "validation errors never echo input"


async def test_oversized_message_gets_error_ack_not_a_dropped_socket(
    server: RunningServer, someone: Client
) -> None:
    big = "x" * (server.settings.max_message_bytes + 10)
    ack = await someone.call("join", {"room_code": big})
    assert ack["error"]["code"] == "message_too_large"
    assert someone.sio.connected
    ack = await someone.call("join", {"room_code": "ok"})
    assert ack["error"]["code"] == "no_such_room"


async def test_repeated_malformed_messages_disconnect(
    server: RunningServer, someone: Client
) -> None:
    for _ in range(server.settings.malformed_message_limit):
        ack = await someone.call("bogus", {})
        assert ack["error"]["code"] == "unknown_event"
    for _ in range(100):
        if not someone.sio.connected:
            break
        await asyncio.sleep(0.05)
    assert not someone.sio.connected


async def test_flooding_is_rate_limited(server: RunningServer, someone: Client) -> None:
    acks = await asyncio.gather(
        *(
            someone.call("set_media", {"audio_on": True})
            for _ in range(server.settings.message_burst + 10)
        )
    )
    codes = [a["error"]["code"] for a in acks if not a["ok"]]
    assert "rate_limited" in codes


async def test_one_connections_events_are_handled_in_order(
    server: RunningServer, clients: Connect
) -> None:
    """join, publish and set_media sent back to back, without waiting for acks: each
    runs after the one before (publish needs the seat join is still writing)."""
    from aiortc import RTCPeerConnection

    from tests.media.peer import ReplayTrack, encode_media

    code = await server.create_room()
    client = await clients(await server.clinician_cookie(code))
    media = encode_media(0, frames=2)
    pc = RTCPeerConnection()
    pc.addTransceiver(ReplayTrack("audio", media.audio), direction="sendonly")
    pc.addTransceiver(ReplayTrack("video", media.video), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    order: list[str] = []
    done = asyncio.Event()

    def acked(name: str) -> Callable[[dict[str, Any]], None]:
        def callback(ack: dict[str, Any]) -> None:
            order.append(name if ack["ok"] else f"{name}:{ack['error']['code']}")
            if len(order) == 3:
                done.set()

        return callback

    await client.sio.emit("join", {"room_code": code}, callback=acked("join"))
    await client.sio.emit("publish", {"sdp": pc.localDescription.sdp}, callback=acked("publish"))
    await client.sio.emit("set_media", {"audio_on": False}, callback=acked("set_media"))
    await asyncio.wait_for(done.wait(), 20)
    await pc.close()
    assert order == ["join", "publish", "set_media"]


async def test_invalid_sdp_is_refused_and_leaves_no_peer_connection(
    server: RunningServer, clients: Connect
) -> None:
    code = await server.create_room()
    client = await clinician(server, clients, code, "A")
    ack = await client.call("publish", {"sdp": "this is not sdp"})
    assert ack["ok"] is False
    assert ack["error"]["code"] == "invalid_sdp"
    assert client.sio.connected
    assert server.app[SFU].counts().peer_connections == 0


async def test_long_polling_is_refused(server: RunningServer) -> None:
    polling = f"{server.url}/socket.io/?EIO=4&transport=polling"
    async with aiohttp.ClientSession() as http, http.get(polling) as response:
        assert response.status == 400


async def test_pages_no_such_room_and_health(server: RunningServer) -> None:
    code = await server.create_room()
    cookie = await server.clinician_cookie(code)
    async with aiohttp.ClientSession() as http:
        # The old open room links are gone.
        async with http.get(f"{server.url}/r/{code}", allow_redirects=False) as response:
            assert response.status == 404
        missing = f"{server.url}/room/r_doesnotexist"
        async with http.get(missing, headers={"Cookie": cookie}) as response:
            assert response.status == 404
            assert "no such room" in (await response.text()).lower()
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        async with http.get(f"{server.url}/healthz") as response:
            assert response.status == 200


def test_committed_protocol_schema_is_current() -> None:
    committed = Path(__file__).parents[2] / "webclient/src/generated/protocol.schema.json"
    assert committed.read_text(encoding="utf-8") == render()


async def test_logs_carry_ids_not_names(
    server: RunningServer, clients: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    code = await server.create_room()
    secret_name = "Zebulon Quixote-Marchetti"
    client = await clients(await server.clinician_cookie(code, secret_name))
    await enter(client, code)
    patients = [
        await clients(await server.patient_cookie(code, name))
        for name in ("Philomena Ashdown-Vey", "Cuthbert Lindqvist-Oyelaran")
    ]
    admitted, denied = [(await enter(p, code))["participant_id"] for p in patients]
    assert (await client.call("admit", {"participant_id": admitted}))["ok"]
    assert (await client.call("deny", {"participant_id": denied, "message": "Call Zebulon"}))["ok"]
    await client.call("set_media", {"audio_on": False})
    await client.call("leave")
    text_logged = "\n".join(f"{record.getMessage()} {vars(record)}" for record in caplog.records)
    assert "joined" in text_logged and "knocked" in text_logged
    for name in ("Zebulon", "Philomena", "Cuthbert"):
        assert name not in text_logged


async def test_silent_dead_connection_frees_the_seat(tmp_path: Path) -> None:
    """A client that vanishes without closing (no FIN, no close frame) is noticed by
    engine.io's ping timeout: shown as reconnecting, then its seat is freed."""
    from tests.conftest import start_server

    server = await start_server(
        tmp_path, socket_ping_interval=1.0, socket_ping_timeout=1.0, reconnect_grace=1.0
    )
    watcher, ghost = Client(), Client()
    try:
        code = await server.create_room()
        await watcher.connect(server.url, await server.clinician_cookie(code, "W"))
        await ghost.connect(server.url, await server.clinician_cookie(code, "G"))
        await enter(watcher, code)
        await enter(ghost, code)
        await watcher.wait_for(lambda: len(watcher.last("roster")["participants"]) == 2)

        async def swallow(*args: object, **kwargs: object) -> None:
            return None

        ghost.sio.eio._send_packet = swallow  # the ghost stops answering pings
        await watcher.wait_for(lambda: False in connected_flags(watcher).values(), timeout=15)
        await watcher.wait_for(lambda: len(watcher.last("roster")["participants"]) == 1, timeout=15)
    finally:
        await watcher.close()
        await server.runner.cleanup()


async def test_a_late_disconnect_of_the_old_socket_does_not_end_a_returned_seat(
    tmp_path: Path,
) -> None:
    """The old socket's disconnect waits behind its own slow request while the same
    person takes the seat back from a new socket; when it finally runs, the seat stays."""
    from tests.conftest import SIGNALLING, start_server

    server = await start_server(tmp_path, reconnect_grace=0.3)
    watcher, old, new = Client(), Client(), Client()
    try:
        code = await server.create_room()
        cookie = await server.clinician_cookie(code, "O")
        await watcher.connect(server.url, await server.clinician_cookie(code, "W"))
        await old.connect(server.url, cookie)
        await new.connect(server.url, cookie)
        await enter(watcher, code)
        pid = (await enter(old, code))["participant_id"]
        signalling = server.app[SIGNALLING]
        old_connection = next(
            c for c in signalling._connections.values() if c.participant_id == pid
        )
        await old_connection.lock.acquire()  # as if a slow publish were in progress
        await old.sio.eio.disconnect(abort=True)
        for _ in range(100):
            if old_connection.sid not in signalling._connections:
                break
            await asyncio.sleep(0.02)
        returned = await enter(new, code)
        assert (returned["participant_id"], returned["returned"]) == (pid, True)
        old_connection.lock.release()  # the old socket's disconnect now runs
        await asyncio.sleep(0.8)  # past the reconnect window, had it been started
        assert connected_flags(watcher) == {p: True for p in connected_flags(watcher)}, (
            "nobody is shown reconnecting"
        )
        assert pid in roster_ids(watcher)
        assert (await new.call("set_media", {"audio_on": False}))["ok"]
    finally:
        for client in (watcher, new):
            await client.close()
        await server.runner.cleanup()


async def test_an_abusive_connection_loses_its_seat_for_good(
    server: RunningServer, clients: Connect
) -> None:
    code = await server.create_room()
    watcher = await clinician(server, clients, code, "W")
    abuser = await clinician(server, clients, code, "A")
    await watcher.wait_for(lambda: len(roster_ids(watcher)) == 2)
    for _ in range(server.settings.malformed_message_limit):
        await abuser.call("bogus", {})
    # Removed at once: no reconnect window, nobody shown "reconnecting".
    await watcher.wait_for(lambda: len(roster_ids(watcher)) == 1, timeout=10)
    assert all(connected_flags(watcher).values())
