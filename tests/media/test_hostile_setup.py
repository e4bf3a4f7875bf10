"""Hostile datagrams while a connection is being set up (before and during ICE and DTLS).

tests/media/test_hostile_udp.py attacks sessions already connected; these attack the
seconds in which a participant joins or reconnects, when aioice 0.13 queues non-STUN
datagrams for aiortc without reading them and OpenSSL is in its handshake
(media/datagram_guard.py, check 4).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from aioice import stun
from aiortc import RTCPeerConnection

from telecircle.media.connection import new_peer_connection
from telecircle.media.datagram_guard import MAX_QUEUED_DATAGRAMS
from telecircle.media.sfu import Sfu

ATTACKER = "127.0.0.2"
# Loops are bounded by count and by these limits.
SPRAY_ROUNDS = 2000
SETUP_LIMIT = 20.0


def dtls_alert(sequence: int) -> bytes:
    """A plaintext (epoch 0) DTLS 1.2 fatal alert, "handshake failure"."""
    return (
        struct.pack("!BHH", 21, 0xFEFD, 0)
        + sequence.to_bytes(6, "big")
        + struct.pack("!H", 2)
        + b"\x02\x28"
    )


def ice_ports(sdp: str) -> list[int]:
    return [int(p) for p in re.findall(r"a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 (\d+)", sdp)]


def ice_of(pc: RTCPeerConnection) -> Any:
    return pc.getTransceivers()[0].sender.transport.transport._connection


@contextmanager
def attacker_socket() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind((ATTACKER, 0))
    try:
        yield sock
    finally:
        sock.close()


def send_quietly(sock: socket.socket, data: bytes, port: int) -> None:
    # The attacker's own buffer full: that datagram is lost, as on a network.
    with contextlib.suppress(BlockingIOError):
        sock.sendto(data, ("127.0.0.1", port))


@asynccontextmanager
async def offer_and_answer() -> AsyncIterator[tuple[RTCPeerConnection, RTCPeerConnection]]:
    """Two of the SFU's peer connections, offer and answer exchanged only on one side:
    the answerer is waiting for the offerer's checks (call ``finish`` to connect)."""
    offerer, answerer = new_peer_connection(), new_peer_connection()
    try:
        offerer.addTransceiver("audio", direction="sendrecv")
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())
        yield offerer, answerer
    finally:
        await offerer.close()
        await answerer.close()


async def settled(*pcs: RTCPeerConnection) -> list[str]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETUP_LIMIT
    while loop.time() < deadline:
        if all(pc.connectionState in ("connected", "failed", "closed") for pc in pcs):
            break
        await asyncio.sleep(0.05)
    return [pc.connectionState for pc in pcs]


async def test_forged_dtls_alerts_cannot_stop_a_connection(sfu: Sfu) -> None:
    """One forged plaintext alert during the handshake would end it: a spray of them at
    both sides' ports from another address while they connect changes nothing."""
    async with offer_and_answer() as (offerer, answerer):
        ports = ice_ports(offerer.localDescription.sdp + answerer.localDescription.sdp)
        assert len(ports) == 2
        stop = asyncio.Event()

        async def spray() -> int:
            sent = 0
            with attacker_socket() as sock:
                for round_ in range(SPRAY_ROUNDS):
                    if stop.is_set():
                        break
                    for port in ports:
                        for k in range(10):
                            send_quietly(sock, dtls_alert(round_ * 10 + k), port)
                            sent += 1
                    await asyncio.sleep(0.002)
            return sent

        sprayer = asyncio.get_running_loop().create_task(spray())
        await offerer.setRemoteDescription(answerer.localDescription)
        states = await settled(offerer, answerer)
        stop.set()
        sent = await sprayer
        assert sent > 0
        assert states == ["connected", "connected"]


async def test_junk_before_the_connection_is_up_is_not_queued(sfu: Sfu) -> None:
    """An offer waiting for its answer: DTLS-looking datagrams of every size from an
    address the connection never paired with are not kept (aioice's queue has no bound,
    and nobody reads it until DTLS starts)."""
    pc = new_peer_connection()
    try:
        pc.addTransceiver("video", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        [port] = ice_ports(pc.localDescription.sdp)
        with attacker_socket() as sock:
            for i in range(600):
                size = (13, 200, 1400, 1500, 1501, 9000)[i % 6]
                send_quietly(sock, bytes([22]) + bytes(size - 1), port)
                if i % 20 == 0:
                    await asyncio.sleep(0.001)
        await asyncio.sleep(0.3)
        assert ice_of(pc)._queue.qsize() == 0
    finally:
        await pc.close()


async def test_the_queue_is_bounded_even_for_the_peer_itself(sfu: Sfu) -> None:
    """The peer's own address (in the check list) before DTLS reads: at most the bound."""
    async with offer_and_answer() as (offerer, answerer):
        ice = ice_of(answerer)
        [offerer_port] = ice_ports(offerer.localDescription.sdp)
        [answerer_port] = ice_ports(answerer.localDescription.sdp)
        # Stand in for the offerer: its socket, released first, is the paired address.
        offerer_ice = ice_of(offerer)
        await offerer_ice.close()
        assert any(pair.remote_addr == ("127.0.0.1", offerer_port) for pair in ice._check_list)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            sock.bind(("127.0.0.1", offerer_port))
            for i in range(MAX_QUEUED_DATAGRAMS * 3):
                send_quietly(sock, bytes([22]) + bytes(99), answerer_port)
                if i % 20 == 0:
                    await asyncio.sleep(0.001)
            await asyncio.sleep(0.3)
        finally:
            sock.close()
        assert 0 < ice._queue.qsize() <= MAX_QUEUED_DATAGRAMS


async def test_an_authenticated_request_without_priority_is_dropped_quietly(sfu: Sfu) -> None:
    """aioice reads PRIORITY unchecked when it learns an address from a request: without
    the guard each such datagram is a traceback in the event loop."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        async with offer_and_answer() as (_, answerer):
            ice = ice_of(answerer)
            [port] = ice_ports(answerer.localDescription.sdp)
            for _ in range(200):  # until aioice handles checks as they come
                if ice._early_checks_done:
                    break
                await asyncio.sleep(0.01)
            assert ice._early_checks_done
            request = stun.Message(
                message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST
            )
            request.attributes["USERNAME"] = f"{ice.local_username}:{ice.remote_username}"
            request.attributes["ICE-CONTROLLING"] = 1
            request.add_message_integrity(ice.local_password.encode("utf8"))
            request.add_fingerprint()
            with attacker_socket() as sock:
                for _ in range(20):
                    send_quietly(sock, bytes(request), port)
                await asyncio.sleep(0.3)
            assert not any(pair.remote_addr[0] == ATTACKER for pair in ice._check_list)
    finally:
        loop.set_exception_handler(previous)
    assert errors == []
