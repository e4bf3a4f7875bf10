"""Loss and jitter between one participant and the server: video recovers by NACK/PLI
and keeps flowing, both ways, and the session stays healthy.

Three synthetic participants (real aiortc peers through the real signalling server, each
decoding what it receives); "Lossy" reaches the server through a :class:`LossyRelay`
on loopback (this kernel has no netem) that drops 5 % or 10 % of the datagrams (seeded)
and delays the rest by 20-50 ms, in both directions. "Ann" and "Ben" are on a clean path:
what they send each other is the baseline of the same run.

Asserted (robust properties only, never a time): after a warm-up, video keeps arriving
from and to Lossy in every whole second in which it arrives between Ann and Ben; dropped
packets came back (the relay saw packets it had dropped get through when sent again
after a NACK); once the path is clean again, video flows on every path and Ann and Ben
decode Lossy's picture (what the SFU lost from Lossy, it got back: it asks again for a
lost packet until it comes, see media/lost_packets.py); nothing was reported lost and
no peer connection was replaced. The frame rates and pictures decoded, their ratio to
the clean pair, the NACK/PLI counts and the relay's loss are printed
(benchmarks/lossy_link.py runs longer phases and writes JSON).

Lossy's own receivers are aiortc's, which ask again for a lost packet only when another
is lost: on a clean path one of them may wait for good for a packet whose
retransmission was lost (the SFU answers every NACK it gets; a browser asks again by
itself). Their pictures are reported, not asserted.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import start_server
from tests.integration.lossy_relay import CLEAN, Impairment, LossyRelay, candidate_addresses
from tests.integration.lossy_session import (
    CLEAN_NAMES,
    CLEAN_PAIRS,
    DOWNLINK,
    LOSSY_NAME,
    UPLINK,
    Member,
    Sampler,
    describe,
    everyone_decodes_everyone,
    hold_phase,
    join,
    lost_packets_of,
    media_room,
    peer_connections,
)
from tests.media.peer import wait_until

pytestmark = [pytest.mark.media, pytest.mark.timeout(120)]

SEED = 7
JITTER_S = (0.020, 0.050)
WARM_UP_S = 2.0
MEASURE_S = 10.0


def healthy(members: list[Member], server_pcs: int, expected_pcs: int) -> None:
    assert all(m.media_lost_events() == 0 for m in members), "no media path was reported lost"
    assert server_pcs == expected_pcs, "no peer connection was closed or replaced"
    for member in members:
        for pc in (member.peer.publish_pc, member.peer.subscribe_pc):
            assert pc is not None and pc.connectionState == "connected", member.name


@pytest.mark.parametrize("loss", [0.05, 0.10])
async def test_video_recovers_from_loss_and_jitter(tmp_path: Path, loss: float) -> None:
    server = await start_server(tmp_path)
    relay = LossyRelay(seed=SEED)
    members: list[Member] = []
    sampler: Sampler | None = None
    try:
        code = await server.create_room(limit=4)
        lossy = await join(server, code, LOSSY_NAME, 1, relay)
        members.append(lossy)
        members.append(await join(server, code, CLEAN_NAMES[0], 2))
        members.append(await join(server, code, CLEAN_NAMES[1], 3))
        await everyone_decodes_everyone(members)
        expected_pcs = peer_connections(server)
        pcs_before = [pc for m in members for pc in (m.peer.publish_pc, m.peer.subscribe_pc)]
        room = media_room(server, code)
        server_pcs_before = {pid: p.connection.pc for pid, p in room._publishers.items()}

        sampler = Sampler(members, limit_s=60)
        sampler.start()
        relay.impair(Impairment(loss, *JITTER_S))
        await asyncio.sleep(WARM_UP_S)
        figures = await hold_phase(f"{loss:.0%}", sampler, relay, MEASURE_S)
        print("\n" + describe(figures, Impairment(loss, *JITTER_S), SEED))

        # Video kept arriving on the lossy paths in every whole second in which it arrived
        # on the clean ones (those show this process was not stalled by a busy machine).
        seconds = figures.control_seconds(CLEAN_PAIRS)
        assert len(seconds) >= MEASURE_S / 2, "the clean path itself stalled"
        for pair in UPLINK + DOWNLINK:
            each = figures.pairs[pair].frames_each_second
            assert all(each[k] > 0 for k in seconds), (pair, each)
        # The relay did drop packets both ways, and some came back by retransmission.
        assert figures.upstream.dropped["rtp"] > 0 and figures.downstream.dropped["rtp"] > 0
        assert figures.upstream.recovered + figures.downstream.recovered > 0
        assert sum(f.nacks for f in figures.asked.values()) > 0

        lost = lost_packets_of(room, lossy)
        print(
            f"  server asked Lossy again for {lost.asked_again} packets, gave up "
            f"{lost.given_up} (then asked for a keyframe)"
        )

        # Back to a clean path: frames go on arriving on every path, and what the server
        # lost from Lossy is back: Ann and Ben decode Lossy's pictures again.
        relay.impair(CLEAN)
        now = sampler.sample()
        await wait_until(
            lambda: all(
                r.frames_from(s) >= now.frames[(s.name, r.name)] + 10
                for s in members
                for r in members
                if s is not r
            ),
            timeout=15,
        )
        for member in members:
            member.peer.received.colours.clear()
        by_name = {m.name: m for m in members}
        await wait_until(
            lambda: all(
                by_name[r].decoded_colours(by_name[s])[by_name[s].colour] > 0
                for s, r in UPLINK + CLEAN_PAIRS
            ),
            timeout=15,
        )
        healthy(members, peer_connections(server), expected_pcs)
        pcs_after = [pc for m in members for pc in (m.peer.publish_pc, m.peer.subscribe_pc)]
        assert pcs_after == pcs_before
        assert {pid: p.connection.pc for pid, p in room._publishers.items()} == server_pcs_before
    finally:
        if sampler is not None:
            await sampler.stop()
        for member in members:
            await member.client.close()
            await member.peer.close()
        relay.close()
        await server.runner.cleanup()


async def test_the_relay_drops_its_share_and_keeps_the_order() -> None:
    """The relay itself: a seeded share of datagrams dropped, the rest delayed in order."""
    loop = asyncio.get_running_loop()
    got: list[bytes] = []
    receiver, _ = await loop.create_datagram_endpoint(
        lambda: Collect(got), local_addr=("127.0.0.1", 0)
    )
    sender, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    relay = LossyRelay(seed=SEED)
    try:
        link = await relay.link()
        peer_sdp = (
            f"a=candidate:1 1 udp 1 127.0.0.1 {sender.get_extra_info('sockname')[1]} typ host"
        )
        server_sdp = (
            f"a=candidate:1 1 udp 1 127.0.0.1 {receiver.get_extra_info('sockname')[1]} typ host"
        )
        link.expose_peer(peer_sdp)
        peer_facing = candidate_addresses(link.expose_server(server_sdp)).pop()
        relay.impair(Impairment(0.1, 0.001, 0.005))
        count = 2000
        for i in range(count):
            sender.sendto(b"\x80\x60" + i.to_bytes(2, "big") + bytes(20), peer_facing)
            if i % 20 == 19:  # paced: a burst must not overflow a socket buffer
                await asyncio.sleep(0.002)
        up, _ = relay.stats()
        # Generous: a loaded machine's loop may be slow to read them all.
        await wait_until(lambda: len(got) == up.forwarded["rtp"], timeout=30)
        numbers = [int.from_bytes(data[2:4], "big") for data in got]
        assert numbers == sorted(numbers), "in order"
        print(f"\nrelay: dropped {up.dropped['rtp']} of {count} at 10 %")
        assert up.dropped["rtp"] + up.forwarded["rtp"] == count
        assert 0.07 * count < up.dropped["rtp"] < 0.13 * count  # binomial: > 4 sigma
    finally:
        relay.close()
        sender.close()
        receiver.close()


def host_candidate(transport: asyncio.BaseTransport) -> str:
    port = transport.get_extra_info("sockname")[1]
    return f"a=candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host\r\n"


class Collect(asyncio.DatagramProtocol):
    def __init__(self, into: list[bytes]) -> None:
        self.into = into

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.into.append(data)
