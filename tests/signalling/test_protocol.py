"""Signalling against the real server on loopback with real socket.io clients."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from telecircle.signalling.schema import render
from tests.conftest import SFU, RunningServer
from tests.signalling.client import Client

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def clients(server: RunningServer) -> AsyncIterator[Callable[[], asyncio.Future[Client]]]:
    made: list[Client] = []

    def make() -> asyncio.Future[Client]:
        client = Client()
        made.append(client)
        return asyncio.ensure_future(client.connect(server.url))

    yield make
    for client in made:
        if client.sio.connected:
            await client.close()


async def test_join_unknown_room_is_refused_clearly(server: RunningServer, clients) -> None:
    client = await clients()
    ack = await client.call("join", {"room_code": "nope", "display_name": "A"})
    assert ack["ok"] is False
    assert ack["error"]["code"] == "no_such_room"
    assert "link" in ack["error"]["message"]


def roster_ids(client: Client) -> list[str]:
    return [p["id"] for p in (client.last("roster") or {}).get("participants", [])]


def connected_flags(client: Client) -> dict[str, bool]:
    return {p["id"]: p["connected"] for p in client.last("roster")["participants"]}


async def test_join_announces_roster_and_leave_removes(server: RunningServer, clients) -> None:
    code = await server.create_room()
    first, second = await clients(), await clients()
    ack = await first.call("join", {"room_code": code, "display_name": "First"})
    assert ack["ok"] is True, ack
    first_id = ack["data"]["participant_id"]
    ack = await second.call("join", {"room_code": code, "display_name": "Second"})
    assert [p["display_name"] for p in ack["data"]["participants"]] == ["First", "Second"]
    await first.wait_for(lambda: len(roster_ids(first)) == 2)
    assert (await second.call("leave"))["ok"] is True
    await first.wait_for(lambda: roster_ids(first) == [first_id])
    await second.close()
    # A closing page sends a leave beacon with its seat's token: it leaves at once.
    third = await clients()
    ack = await third.call("join", {"room_code": code, "display_name": "Third"})
    await first.wait_for(lambda: len(roster_ids(first)) == 2)
    seat = {"participant_id": ack["data"]["participant_id"], "resume_token": "wrong"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.url}/r/{code}/leave", data=json.dumps(seat)) as reply:
            assert reply.status == 204
        assert len(roster_ids(first)) == 2, "a wrong token ends nothing"
        seat["resume_token"] = ack["data"]["resume_token"]
        async with http.post(f"{server.url}/r/{code}/leave", data=json.dumps(seat)) as reply:
            assert reply.status == 204
        async with http.post(f"{server.url}/r/{code}/leave", data="not json") as reply:
            assert reply.status == 400
    await first.wait_for(lambda: roster_ids(first) == [first_id])
    await third.sio.eio.disconnect(abort=True)


async def test_a_dropped_connection_comes_back_into_the_same_seat(
    server: RunningServer, clients
) -> None:
    code = await server.create_room(limit=2)
    watcher, dropper = await clients(), await clients()
    await watcher.call("join", {"room_code": code, "display_name": "W"})
    ack = await dropper.call("join", {"room_code": code, "display_name": "D"})
    seat = {"participant_id": ack["data"]["participant_id"], "token": ack["data"]["resume_token"]}
    await watcher.wait_for(lambda: len(roster_ids(watcher)) == 2)

    await dropper.sio.eio.disconnect(abort=True)  # no goodbye: a network drop
    await watcher.wait_for(lambda: connected_flags(watcher)[seat["participant_id"]] is False)
    # The held seat still counts against the limit of 2.
    stranger = await clients()
    refused = await stranger.call("join", {"room_code": code, "display_name": "S"})
    assert refused["error"]["code"] == "room_full"

    wrong = await clients()
    bad = {"room_code": code, "participant_id": seat["participant_id"], "resume_token": "x" * 43}
    assert (await wrong.call("resume", bad))["error"]["code"] == "seat_expired"

    back = await clients()
    resume = {
        "room_code": code,
        "participant_id": seat["participant_id"],
        "resume_token": seat["token"],
    }
    ack = await back.call("resume", resume)
    assert ack["ok"], ack
    assert ack["data"]["participant_id"] == seat["participant_id"]
    await watcher.wait_for(lambda: connected_flags(watcher)[seat["participant_id"]] is True)
    # The watcher never saw the seat leave: every roster it got had both participants.
    rosters = [data for name, data in watcher.events if name == "roster"]
    assert all(len(r["participants"]) == 2 for r in rosters[1:])
    assert (await back.call("set_media", {"audio_on": False}))["ok"]


async def test_resuming_from_a_second_window_moves_the_seat(server: RunningServer, clients) -> None:
    code = await server.create_room()
    first = await clients()
    ack = await first.call("join", {"room_code": code, "display_name": "A"})
    resume = {
        "room_code": code,
        "participant_id": ack["data"]["participant_id"],
        "resume_token": ack["data"]["resume_token"],
    }
    second = await clients()
    assert (await second.call("resume", resume))["ok"]
    await first.wait_for(lambda: first.last("closed") is not None)
    assert first.last("closed")["reason"] == "seat_moved"
    for _ in range(100):
        if not first.sio.connected:
            break
        await asyncio.sleep(0.05)
    assert not first.sio.connected
    assert (await second.call("set_media", {"video_on": False}))["ok"]
    assert len(roster_ids(second) or [1]) == 1


async def test_a_seat_not_taken_back_in_time_is_freed(tmp_path) -> None:
    from tests.conftest import start_server

    server = await start_server(tmp_path, reconnect_grace=0.5)
    watcher, dropper = Client(), Client()
    try:
        code = await server.create_room()
        await watcher.connect(server.url)
        await dropper.connect(server.url)
        await watcher.call("join", {"room_code": code, "display_name": "W"})
        ack = await dropper.call("join", {"room_code": code, "display_name": "D"})
        await watcher.wait_for(lambda: len(roster_ids(watcher)) == 2)
        await dropper.sio.eio.disconnect(abort=True)
        await watcher.wait_for(lambda: len(roster_ids(watcher)) == 1, timeout=15)
        late = Client()
        await late.connect(server.url)
        resume = {
            "room_code": code,
            "participant_id": ack["data"]["participant_id"],
            "resume_token": ack["data"]["resume_token"],
        }
        assert (await late.call("resume", resume))["error"]["code"] == "seat_expired"
        await late.close()
    finally:
        await watcher.close()
        await server.runner.cleanup()


async def test_room_limit_is_atomic_under_concurrent_joins(server: RunningServer, clients) -> None:
    code = await server.create_room(limit=10)
    people = await asyncio.gather(*(clients() for _ in range(30)))
    acks = await asyncio.gather(
        *(
            c.call("join", {"room_code": code, "display_name": f"P{i}"})
            for i, c in enumerate(people)
        )
    )
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
        ("join", {"room_code": "x"}, "invalid_message"),
        ("join", {"room_code": 5, "display_name": "A"}, "invalid_message"),
        ("join", {"room_code": "x", "display_name": "A", "extra": 1}, "invalid_message"),
        ("join", ["not", "an", "object"], "invalid_message"),
        ("publish", {"sdp": "v=0"}, "not_joined"),
    ],
)
async def test_bad_messages_get_error_acks_and_keep_the_connection(
    server: RunningServer, clients, event: str, payload: object, code: str
) -> None:
    client = await clients()
    ack = await client.call(event, payload)
    assert ack["ok"] is False
    assert ack["error"]["code"] == code
    assert client.sio.connected
    assert "not an" not in ack["error"]["message"], "validation errors never echo input"


async def test_oversized_message_gets_error_ack_not_a_dropped_socket(
    server: RunningServer, clients
) -> None:
    client = await clients()
    big = "x" * (server.settings.max_message_bytes + 10)
    ack = await client.call("join", {"room_code": big, "display_name": "A"})
    assert ack["error"]["code"] == "message_too_large"
    assert client.sio.connected
    ack = await client.call("join", {"room_code": "ok", "display_name": "A"})
    assert ack["error"]["code"] == "no_such_room"


async def test_repeated_malformed_messages_disconnect(server: RunningServer, clients) -> None:
    client = await clients()
    for _ in range(server.settings.malformed_message_limit):
        ack = await client.call("bogus", {})
        assert ack["error"]["code"] == "unknown_event"
    for _ in range(100):
        if not client.sio.connected:
            break
        await asyncio.sleep(0.05)
    assert not client.sio.connected


async def test_flooding_is_rate_limited(server: RunningServer, clients) -> None:
    client = await clients()
    acks = await asyncio.gather(
        *(
            client.call("set_media", {"audio_on": True})
            for _ in range(server.settings.message_burst + 10)
        )
    )
    codes = [a["error"]["code"] for a in acks if not a["ok"]]
    assert "rate_limited" in codes


async def test_one_connections_events_are_handled_in_order(server: RunningServer, clients) -> None:
    """join, publish and set_media sent back to back, without waiting for acks: each
    runs after the one before (publish needs the seat join is still writing)."""
    from aiortc import RTCPeerConnection

    from tests.media.peer import ReplayTrack, encode_media

    code = await server.create_room()
    client = await clients()
    media = encode_media(0, frames=2)
    pc = RTCPeerConnection()
    pc.addTransceiver(ReplayTrack("audio", media.audio), direction="sendonly")
    pc.addTransceiver(ReplayTrack("video", media.video), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    order: list[str] = []
    done = asyncio.Event()

    def acked(name: str) -> Callable[[dict], None]:
        def callback(ack: dict) -> None:
            order.append(name if ack["ok"] else f"{name}:{ack['error']['code']}")
            if len(order) == 3:
                done.set()

        return callback

    join = {"room_code": code, "display_name": "A"}
    await client.sio.emit("join", join, callback=acked("join"))
    await client.sio.emit("publish", {"sdp": pc.localDescription.sdp}, callback=acked("publish"))
    await client.sio.emit("set_media", {"audio_on": False}, callback=acked("set_media"))
    await asyncio.wait_for(done.wait(), 20)
    await pc.close()
    assert order == ["join", "publish", "set_media"]


async def test_invalid_sdp_is_refused_and_leaves_no_peer_connection(
    server: RunningServer, clients
) -> None:
    code = await server.create_room()
    client = await clients()
    await client.call("join", {"room_code": code, "display_name": "A"})
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
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/r/doesnotexist") as response:
            assert response.status == 404
            assert "No such room" in await response.text()
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        async with http.get(f"{server.url}/healthz") as response:
            assert response.status == 200


def test_committed_protocol_schema_is_current() -> None:
    from pathlib import Path

    committed = Path(__file__).parents[2] / "webclient/src/generated/protocol.schema.json"
    assert committed.read_text(encoding="utf-8") == render()


async def test_logs_carry_ids_not_names(
    server: RunningServer, clients, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    code = await server.create_room()
    client = await clients()
    secret_name = "Zebulon Quixote-Marchetti"
    ack = await client.call("join", {"room_code": code, "display_name": secret_name})
    assert ack["ok"]
    await client.call("set_media", {"audio_on": False})
    await client.call("leave")
    text_logged = "\n".join(f"{record.getMessage()} {vars(record)}" for record in caplog.records)
    assert "joined" in text_logged
    assert "Zebulon" not in text_logged


async def test_silent_dead_connection_frees_the_seat(tmp_path) -> None:
    """A client that vanishes without closing (no FIN, no close frame) is noticed by
    engine.io's ping timeout: shown as reconnecting, then its seat is freed."""
    from tests.conftest import start_server

    server = await start_server(
        tmp_path, socket_ping_interval=1.0, socket_ping_timeout=1.0, reconnect_grace=1.0
    )
    watcher, ghost = Client(), Client()
    try:
        code = await server.create_room()
        await watcher.connect(server.url)
        await ghost.connect(server.url)
        await watcher.call("join", {"room_code": code, "display_name": "W"})
        await ghost.call("join", {"room_code": code, "display_name": "G"})
        await watcher.wait_for(lambda: len(watcher.last("roster")["participants"]) == 2)

        async def swallow(*args: object, **kwargs: object) -> None:
            return None

        ghost.sio.eio._send_packet = swallow  # the ghost stops answering pings
        await watcher.wait_for(lambda: False in connected_flags(watcher).values(), timeout=15)
        await watcher.wait_for(lambda: len(watcher.last("roster")["participants"]) == 1, timeout=15)
    finally:
        await watcher.close()
        await server.runner.cleanup()


async def test_a_late_disconnect_of_the_old_socket_does_not_end_a_resumed_seat(
    tmp_path,
) -> None:
    """The old socket's disconnect waits behind its own slow request while the seat is
    resumed from a new socket; when it finally runs, the seat must stay."""
    from tests.conftest import SIGNALLING, start_server

    server = await start_server(tmp_path, reconnect_grace=0.3)
    watcher, old, new = Client(), Client(), Client()
    try:
        code = await server.create_room()
        for client in (watcher, old, new):
            await client.connect(server.url)
        await watcher.call("join", {"room_code": code, "display_name": "W"})
        ack = await old.call("join", {"room_code": code, "display_name": "O"})
        pid = ack["data"]["participant_id"]
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
        resume = {
            "room_code": code,
            "participant_id": pid,
            "resume_token": ack["data"]["resume_token"],
        }
        assert (await new.call("resume", resume))["ok"]
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
    server: RunningServer, clients
) -> None:
    code = await server.create_room()
    watcher, abuser = await clients(), await clients()
    await watcher.call("join", {"room_code": code, "display_name": "W"})
    await abuser.call("join", {"room_code": code, "display_name": "A"})
    await watcher.wait_for(lambda: len(roster_ids(watcher)) == 2)
    for _ in range(server.settings.malformed_message_limit):
        await abuser.call("bogus", {})
    # Removed at once: no reconnect window, nobody shown "reconnecting".
    await watcher.wait_for(lambda: len(roster_ids(watcher)) == 1, timeout=10)
    assert all(connected_flags(watcher).values())
