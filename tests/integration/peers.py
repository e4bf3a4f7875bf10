"""Signalled participants with real aiortc peers, and the faults tests inflict on them."""

from __future__ import annotations

from typing import Any

from tests.conftest import RunningServer
from tests.integration.signalled_room import SignalledRoom
from tests.media.peer import EncodedMedia, SyntheticPeer, wait_until
from tests.signalling.client import Client

# Polling step of the short waits (s).
STEP = 0.01


async def join_signalled(
    server: RunningServer, code: str, cookie: str, media: EncodedMedia
) -> tuple[Client, SyntheticPeer]:
    """Connect as ``cookie``, join (into the session: a clinician), publish ``media`` and
    subscribe, all through signalling. Pre-encoded ``media`` is shared: encoding it per
    participant would weigh on the process's memory."""
    client = await Client().connect(server.url, cookie)
    ack = await client.call("join", {"room_code": code})
    assert ack["ok"], ack
    assert ack["data"]["place"] == "plenary", "media needs a seat past the lobby"
    peer = SyntheticPeer(ack["data"]["participant_id"], media)
    room = SignalledRoom(client)
    await peer.publish(room)  # type: ignore[arg-type]
    await peer.subscribe(room, 0)  # type: ignore[arg-type]
    return client, peer


def cut_network(peer: SyntheticPeer) -> None:
    """The peer's UDP stops both ways, without any goodbye (no DTLS alert): its sockets
    stay open but send and receive nothing, as behind a dead network link."""
    for pc in (peer.publish_pc, peer.subscribe_pc):
        if pc is None:
            continue
        for transceiver in pc.getTransceivers():
            connection: Any = transceiver.sender.transport.transport._connection
            for protocol in connection._protocols:
                protocol.transport.sendto = lambda *args, **kwargs: None
                protocol.datagram_received = lambda *args, **kwargs: None


async def drop_socket(client: Client) -> None:
    """The TCP connection under the websocket is cut: no close frame, no engine.io close."""
    ws: Any = client.sio.eio.ws
    ws._conn.transport.abort()
    await wait_until(lambda: client.sio.eio.state != "connected", 10, STEP)
    await client.sio.eio.disconnect(abort=True)


def publishing(peer: SyntheticPeer) -> bool:
    pc = peer.publish_pc
    return pc is not None and all(
        t.sender.transport.state == "connected" for t in pc.getTransceivers()
    )


def video_mid_of(client: Client, peer: SyntheticPeer, owner: str) -> str | None:
    """The mid on which ``peer`` receives ``owner``'s video (from the last slots event)."""
    slots = client.last("slots")
    for slot in [] if slots is None else slots["slots"]:
        if slot["participant_id"] == owner and slot["index"] in peer.slot_mids:
            return peer.slot_mids[slot["index"]][1]
    return None


async def receives_video(client: Client, peer: SyntheticPeer, owner: str, packets: int = 2) -> None:
    """Wait until ``peer`` has received ``packets`` more of ``owner``'s video."""
    await wait_until(lambda: video_mid_of(client, peer, owner) is not None, 15, STEP)
    mid = video_mid_of(client, peer, owner)
    assert mid is not None
    target = peer.received.packets[mid] + packets
    await wait_until(lambda: peer.received.packets[mid] >= target, 15, STEP)
