"""Junk UDP datagrams sent to the SFU's ICE ports never end a healthy session.

A quick check of the datagrams that once did (or were logged as errors); the full
attack on a live session of four is test_hostile_udp.py, the path hijack
test_hostile_hijack.py.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Any

import pytest
from aioice import stun

from telecircle.media.datagram_guard import MAX_SRTP_PACKET, could_be_media, strict_stun_parser
from telecircle.media.room import MediaRoom
from telecircle.media.sfu import Sfu

from .conftest import RoomEvents, everyone_sees_everyone
from .peer import EncodedMedia, SyntheticPeer, wait_until

# First bytes from every RFC 7983 range: STUN, ZRTP, DTLS, TURN channel, RTP/RTCP, other.
FIRST_BYTES = (0, 1, 3, 17, 20, 22, 23, 63, 64, 100, 128, 144, 191, 200, 255)
MAX_JUNK = 15


def stun_with_attribute(kind: int, value: bytes) -> bytes:
    body = struct.pack("!HH", kind, len(value)) + value + bytes(-len(value) % 4)
    return struct.pack("!HHI12s", 0x0001, len(body), stun.COOKIE, bytes(12)) + body


# A PRIORITY of 3 bytes: aioice 0.13's parser raises struct.error instead of ValueError.
MALFORMED_STUN = stun_with_attribute(0x0024, b"abc")


def junk_datagrams() -> list[bytes]:
    datagrams = [b""] * 3
    for first in FIRST_BYTES:
        for length in range(1, MAX_JUNK + 1):
            datagrams.append(bytes([first]) + bytes((first + i) % 256 for i in range(length - 1)))
    # SRTP-looking datagrams too long for aiortc's SRTP session (ValueError ended the
    # DTLS transport), and STUN that aioice's parser choked on.
    for length in (MAX_SRTP_PACKET + 1, 9000, 65507):
        datagrams.extend((b"\x80" + bytes(length - 1), b"\x81\xc9" + bytes(length - 2)))
    datagrams.append(MALFORMED_STUN)
    return datagrams


def server_ice_ports(room: MediaRoom) -> set[int]:
    ports: set[int] = set()
    for connection in room._connections:
        for transceiver in connection.pc.getTransceivers():
            gatherer = transceiver.sender.transport.transport.iceGatherer
            ports.update(c.port for c in gatherer.getLocalCandidates() if c.ip == "127.0.0.1")
    return ports


def media_counts(peers: list[SyntheticPeer]) -> list[int]:
    return [sum(peer.received.packets.values()) for peer in peers]


def test_could_be_media() -> None:
    assert not could_be_media(b"")
    assert not could_be_media(b"\x16" * 12)  # shorter than a DTLS record header
    assert could_be_media(b"\x15\xfe\xfd" + bytes(10))  # a bare 13-byte DTLS header
    assert could_be_media(b"\x15\xfe\xfd" + bytes(12))  # a 15-byte plaintext DTLS alert
    assert not could_be_media(b"\x80" * 11)
    assert could_be_media(b"\x80" * 12)
    assert could_be_media(b"\x81\xc8" + bytes(20))  # SRTCP sender report size
    assert not could_be_media(b"\x00" * 40)  # failed STUN parse: aiortc ignores it
    assert not could_be_media(b"\x40" * 40)  # TURN channel range: aiortc ignores it
    assert could_be_media(b"\x80" * MAX_SRTP_PACKET)
    assert not could_be_media(b"\x80" * (MAX_SRTP_PACKET + 1))  # beyond aiortc's SRTP buffer
    assert not could_be_media(b"\xbf" + bytes(65506))
    assert could_be_media(b"\x17\xfe\xfd" + bytes(1497))  # OpenSSL drops junk DTLS itself
    assert not could_be_media(b"\x17\xfe\xfd" + bytes(1498))  # beyond a path MTU


def test_strict_stun_parser() -> None:
    parse = strict_stun_parser(stun.parse_message)
    with pytest.raises(ValueError, match="invalid length"):
        parse(MALFORMED_STUN)
    for kind, value in ((0x802A, b"abcd"), (0x8028, b"ab"), (0x000C, b"")):
        with pytest.raises(ValueError):
            parse(stun_with_attribute(kind, value))
    with pytest.raises(ValueError):
        parse(b"\x00\x01")  # aioice's own ValueError passes through
    request = stun.Message(stun.Method.BINDING, stun.Class.REQUEST)
    request.attributes["PRIORITY"] = 12345
    request.add_fingerprint()
    assert parse(bytes(request)).attributes["PRIORITY"] == 12345


async def test_junk_datagrams_do_not_end_the_session(
    sfu: Sfu, room: MediaRoom, events: RoomEvents, media_library: list[EncodedMedia]
) -> None:
    alice = SyntheticPeer("alice", media_library[0])
    bob = SyntheticPeer("bob", media_library[1])
    peers = [alice, bob]
    attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for peer in peers:
            await peer.publish(room)
            await peer.subscribe(room, slot_count=1)
        room.set_audiences(everyone_sees_everyone([alice.pid, bob.pid]))
        await wait_until(lambda: min(media_counts(peers)) >= 10)

        ports = server_ice_ports(room)
        assert len(ports) == 4  # publish + subscribe connection per peer, bundled
        pcs: list[Any] = [c.pc for c in room._connections]
        assert all(pc.connectionState == "connected" for pc in pcs)
        raised: list[dict[str, Any]] = []
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: raised.append(context))
        for _ in range(2):
            for port in sorted(ports):
                for datagram in junk_datagrams():
                    attacker.sendto(datagram, ("127.0.0.1", port))
            await asyncio.sleep(0.05)

        before = media_counts(peers)
        await wait_until(
            lambda: all(n >= b + 20 for n, b in zip(media_counts(peers), before, strict=True)),
            timeout=10,
        )
        assert events.lost == []
        assert all(pc.connectionState == "connected" for pc in pcs)
        assert sfu.counts().peer_connections == 4
        assert raised == []
    finally:
        asyncio.get_running_loop().set_exception_handler(None)
        attacker.close()
        for peer in peers:
            await peer.close()
        await room.close()
