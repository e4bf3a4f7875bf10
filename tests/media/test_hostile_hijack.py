"""Only a participant's own validated address decides where its media goes.

The attacker here is as strong as one on the participant's network gets without being
on the path: it holds a binding request the participant's agent signed (STUN integrity
does not cover the source address, so one captured off the wire will do), replays it
from its own address (127.0.0.2: the whole of 127/8 is loopback on Linux), and relays
whatever STUN the server then sends it to the participant and the answers back, so the
server's checks towards the attacker's address succeed. Media it relays nowhere.

Against upstream aioice 0.13 that takes the path: the server nominates the attacker's
address and sends the participant's media there (the last test shows it, so the
attack is known to be real). With the SFU's guard (media/datagram_guard.py,
``off_nominated_path``) the replay is dropped unanswered and nothing moves.

The participant's own agent answers the relayed checks as upstream aioice (or a
browser) does: the guard is process-wide, and the test peers share the process.
"""

from __future__ import annotations

import asyncio
import types
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

import aioice.ice
import pytest

from telecircle.media.room import MediaRoom
from telecircle.media.sfu import Sfu

from .conftest import RoomEvents, everyone_sees_everyone
from .hostile_udp import reply_kind
from .peer import EncodedMedia, SyntheticPeer, wait_until

ATTACKER = "127.0.0.2"
# Bounded attack: the replay is sent this many times, this far apart.
REPLAYS = 4
REPLAY_INTERVAL = 0.5


def ice_of(pc: Any) -> Any:
    """The aioice connection under a (bundled) peer connection."""
    return pc.getTransceivers()[0].sender.transport.transport._connection


def upstream_request_received() -> Any:
    """aioice's own request handler, from under the SFU's wrapper."""
    handler = aioice.ice.Connection.request_received
    assert hasattr(handler, "__wrapped__"), "the ICE policy is not installed"
    return handler.__wrapped__


def answer_as_upstream(ice: Any) -> None:
    """This one connection handles binding requests as upstream aioice does."""
    ice.request_received = types.MethodType(upstream_request_received(), ice)


def signed_request(ice: Any) -> bytes:
    """A binding request as the participant's agent sends it on its nominated pair (with
    USE-CANDIDATE when it is controlling, as a browser's checks there carry it), signed
    with the server's password: what an eavesdropper can capture."""
    pair = ice._nominated[1]
    request = ice.build_request(pair, nominate=True)
    request.add_message_integrity(ice.remote_password.encode("utf8"))
    return bytes(request)


class StunRelay(asyncio.DatagramProtocol):
    """The attacker's socket: relays STUN between the server and the participant, and
    counts what the server sends it (media it keeps)."""

    def __init__(self, server: tuple[str, int], participant: tuple[str, int]) -> None:
        self.server = server
        self.participant = participant
        self.from_server: Counter[str] = Counter()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        if addr == self.server:
            kind = reply_kind(data)
            self.from_server[kind] += 1
            if kind == "stun":
                self.transport.sendto(data, self.participant)
        elif addr == self.participant and reply_kind(data) == "stun":
            self.transport.sendto(data, self.server)

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return (host, port)

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data, self.server)


@dataclass
class Session:
    room: MediaRoom
    alice: SyntheticPeer
    bob: SyntheticPeer

    def connections(self, peer: SyntheticPeer, role: str) -> tuple[Any, Any]:
        """(server side, participant side) aioice connections of peer's ``role`` pc."""
        if role == "publish":
            server_pc, client_pc = self.room._publishers[peer.pid].connection.pc, peer.publish_pc
        else:
            server_pc, client_pc = self.room._subscribers[peer.pid].connection.pc, peer.subscribe_pc
        return ice_of(server_pc), ice_of(client_pc)


def received(peer: SyntheticPeer) -> int:
    return sum(peer.received.packets.values())


@pytest.fixture
async def session(
    sfu: Sfu, room: MediaRoom, media_library: list[EncodedMedia]
) -> AsyncIterator[Session]:
    alice = SyntheticPeer("alice", media_library[0])
    bob = SyntheticPeer("bob", media_library[1])
    try:
        for peer in (alice, bob):
            await peer.publish(room)
            await peer.subscribe(room, slot_count=1)
        room.set_audiences(everyone_sees_everyone([alice.pid, bob.pid]))
        await wait_until(lambda: received(alice) >= 10 and received(bob) >= 10)
        yield Session(room, alice, bob)
    finally:
        await alice.close()
        await bob.close()
        await room.close()


async def start_attack(server_ice: Any, client_ice: Any) -> StunRelay:
    """Open the attacker's relay and replay the participant's request from it."""
    answer_as_upstream(client_ice)
    server_addr = server_ice._nominated[1].local_addr
    participant_addr = client_ice._nominated[1].local_addr
    _, relay = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: StunRelay(server_addr, participant_addr), local_addr=(ATTACKER, 0)
    )
    relay.send(signed_request(client_ice))
    return relay


@pytest.mark.parametrize("role", ["subscribe", "publish"])
async def test_a_replayed_request_and_a_relay_cannot_move_the_path(
    session: Session, events: RoomEvents, role: str
) -> None:
    # The server is ICE-controlling on subscribe connections (it offers), controlled on
    # publish connections: aioice takes a new path differently in each role.
    server_ice, client_ice = session.connections(session.alice, role)
    path = server_ice._nominated[1].remote_addr
    relay = await start_attack(server_ice, client_ice)
    try:
        request = signed_request(client_ice)
        for _ in range(REPLAYS):
            relay.send(request)
            await asyncio.sleep(REPLAY_INTERVAL)
        assert server_ice._nominated[1].remote_addr == path
        assert relay.from_server == Counter(), "the server answered the attacker"
        # Both directions of alice's media still flow to and from alice's own address.
        alice, bob = received(session.alice), received(session.bob)
        await wait_until(
            lambda: received(session.alice) >= alice + 10 and received(session.bob) >= bob + 10
        )
        assert relay.from_server == Counter()
        assert events.lost == []
    finally:
        assert relay.transport is not None
        relay.transport.close()


@pytest.mark.parametrize("role", ["subscribe", "publish"])
async def test_without_the_guard_the_replay_and_relay_take_the_path(
    session: Session, role: str
) -> None:
    """The attack above is real: against aioice's own handler it moves the path."""
    server_ice, client_ice = session.connections(session.alice, role)
    answer_as_upstream(server_ice)
    relay = await start_attack(server_ice, client_ice)
    try:
        await wait_until(lambda: server_ice._nominated[1].remote_addr == relay.address, timeout=10)
        if role == "subscribe":
            # Bob's media for alice now goes to the attacker (SRTP it cannot read, but
            # alice no longer gets it).
            await wait_until(lambda: relay.from_server["rtp"] >= 10, timeout=10)
    finally:
        assert relay.transport is not None
        relay.transport.close()
