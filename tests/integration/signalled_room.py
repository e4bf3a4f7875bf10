"""Adapts a socket.io test client to the room interface the synthetic media peer uses.

With it, ``tests.media.peer.SyntheticPeer`` negotiates through the real signalling
server exactly like a browser: publish offer -> answer, server's subscribe offer -> answer.
"""

from __future__ import annotations

from telecircle.domain.ids import ParticipantId
from telecircle.signalling.messages import SlotMids
from tests.conftest import RunningServer
from tests.media.peer import SyntheticPeer, encode_media
from tests.signalling.client import Client


class SignalledRoom:
    def __init__(self, client: Client) -> None:
        self.client = client

    async def publish(self, pid: ParticipantId, offer_sdp: str) -> str:
        ack = await self.client.call("publish", {"sdp": offer_sdp})
        if not ack["ok"]:
            raise RuntimeError(ack["error"]["code"])
        sdp: str = ack["data"]["sdp"]
        return sdp

    async def subscribe(
        self, pid: ParticipantId, slot_count: int
    ) -> tuple[str, list[SlotMids], str]:
        ack = await self.client.call("subscribe", {})
        if not ack["ok"]:
            raise RuntimeError(ack["error"]["code"])
        slots = [SlotMids(**slot) for slot in ack["data"]["slots"]]
        return ack["data"]["sdp"], slots, ack["data"]["screen_mid"]

    async def accept_subscribe_answer(self, pid: ParticipantId, answer_sdp: str) -> None:
        ack = await self.client.call("subscribe_answer", {"sdp": answer_sdp})
        if not ack["ok"]:
            raise RuntimeError(ack["error"]["code"])


async def join_with_media(
    server: RunningServer, code: str, name: str, colour: int, cookie: str | None = None
) -> tuple[Client, SyntheticPeer]:
    """Enter the room as ``cookie`` (default: a new co-facilitator called ``name``, who
    enters the session directly), then publish and subscribe through signalling."""
    if cookie is None:
        cookie = await server.clinician_cookie(code, name)
    client = await Client().connect(server.url, cookie)
    ack = await client.call("join", {"room_code": code})
    assert ack["ok"], ack
    assert ack["data"]["place"] == "plenary", "media needs a seat past the lobby"
    peer = SyntheticPeer(ack["data"]["participant_id"], encode_media(colour, frames=10))
    room = SignalledRoom(client)
    await peer.publish(room)  # type: ignore[arg-type]
    await peer.subscribe(room, 0)  # type: ignore[arg-type]
    return client, peer
