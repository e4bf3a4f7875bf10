"""A lossy UDP relay on loopback, put between one peer and the server.

The kernel here has no netem, so loss and jitter are injected in user space: every
datagram of a relayed peer connection goes through a :class:`RelayLink` of two UDP
sockets on 127.0.0.1. The peer is told (in the SDP it receives) that the server's
candidate is the link's *peer-facing* socket; the server is told (in the SDP it
receives) that the peer's candidate is the link's *server-facing* socket. So ICE, DTLS,
SRTP and SRTCP all take the relay in both directions, and each side sees the other at
a consistent address (a plain host candidate, nothing peer-reflexive).

Each direction drops a datagram with probability ``loss`` and delays the rest by a
delay drawn uniformly from ``[delay_min, delay_max]``, in order (a FIFO queue: jitter
from a queue that fills and drains, as on a real path, without reordering). Draws come
from a ``random.Random`` seeded per link and direction, so a run's sequence of draws is
reproducible (which datagram meets which draw still depends on timing).

Usage::

    relay = LossyRelay(seed=7)
    room = RelayedRoom(SignalledRoom(client), relay)  # negotiate through ``room``
    relay.impair(Impairment(loss=0.05, delay_min=0.02, delay_max=0.05))
    ...
    relay.close()
"""

from __future__ import annotations

import asyncio
import collections
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from telecircle.domain.ids import ParticipantId
from telecircle.signalling.messages import SlotMids
from tests.integration.signalled_room import SignalledRoom

RELAY_HOST = "127.0.0.1"
Address = tuple[str, int]

# Dropped RTP packets remembered per direction to notice their retransmission (audio is
# never retransmitted: the oldest are forgotten).
LOST_MEMORY = 4096

# a=candidate:<foundation> <component> <transport> <priority> <address> <port> typ ...
_CANDIDATE = re.compile(
    r"^(a=candidate:\S+ \d+ \S+ \d+ )(\S+) (\d+)( typ .*)$", re.MULTILINE | re.IGNORECASE
)


@dataclass(frozen=True)
class Impairment:
    """What one direction of a link does to each datagram.

    ``rate_bps`` (0: unlimited) makes the link a bottleneck, as a weak mobile link is:
    datagrams leave one after another at that rate, wait in a queue of at most
    ``queue_s`` seconds, and are dropped when it is full (the queue's delay is what a
    receiver's bandwidth estimate sees first, the drops what its reports show)."""

    loss: float = 0.0
    delay_min: float = 0.0
    delay_max: float = 0.0
    rate_bps: float = 0.0
    queue_s: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss < 1.0:
            raise ValueError("loss is a probability below 1")
        if not 0.0 <= self.delay_min <= self.delay_max:
            raise ValueError("delays must satisfy 0 <= delay_min <= delay_max")
        if self.rate_bps < 0 or self.queue_s <= 0:
            raise ValueError("rate_bps must be >= 0 (0: unlimited) and queue_s > 0")


CLEAN = Impairment()


def kind_of(data: bytes) -> str:
    """The protocol of a datagram, by RFC 7983's first-byte ranges (RTCP by its packet
    type, RFC 5761)."""
    if not data:
        return "empty"
    first = data[0]
    if first < 4:
        return "stun"
    if 20 <= first < 64:
        return "dtls"
    if 128 <= first < 192:
        return "rtcp" if len(data) > 1 and 192 <= data[1] <= 223 else "rtp"
    return "other"


def rtp_key(data: bytes) -> tuple[int, int] | None:
    """(SSRC, sequence number) of an SRTP packet (its header is in the clear)."""
    if kind_of(data) != "rtp" or len(data) < 12:
        return None
    return int.from_bytes(data[8:12], "big"), int.from_bytes(data[2:4], "big")


@dataclass
class DirectionStats:
    """Datagrams of one direction, by kind (see :func:`kind_of`), and RTP packets that
    were dropped and then got through when sent again (retransmissions after a NACK:
    the relay reads SSRC and sequence number from the clear SRTP header)."""

    forwarded: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    recovered: int = 0

    def add(self, other: DirectionStats) -> None:
        self.forwarded.update(other.forwarded)
        self.dropped.update(other.dropped)
        self.recovered += other.recovered

    def loss(self, kind: str) -> float:
        """The fraction of ``kind`` datagrams dropped (0 when none were seen)."""
        total = self.forwarded[kind] + self.dropped[kind]
        return self.dropped[kind] / total if total else 0.0


class Direction:
    """One way through a link: seeded loss, then an in-order delay line."""

    def __init__(self, rng: random.Random, send: Callable[[bytes], None]) -> None:
        self.impairment = CLEAN
        self.stats = DirectionStats()
        self._rng = rng
        self._send = send
        self._line: collections.deque[tuple[float, bytes]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self._last_due = 0.0
        self._bottleneck_free = 0.0
        self._lost: dict[tuple[int, int], None] = {}  # an ordered set

    def push(self, data: bytes) -> None:
        impairment = self.impairment
        kind = kind_of(data)
        key = rtp_key(data)
        if impairment.loss and self._rng.random() < impairment.loss:
            self.stats.dropped[kind] += 1
            if key is not None:
                self._lost[key] = None
                if len(self._lost) > LOST_MEMORY:
                    del self._lost[next(iter(self._lost))]
            return
        now = self._loop.time()
        delay = 0.0
        if impairment.rate_bps:
            # The bottleneck: this datagram leaves once those queued before it have.
            leaves = max(now, self._bottleneck_free) + len(data) * 8 / impairment.rate_bps
            if leaves - now > impairment.queue_s:
                self.stats.dropped[kind] += 1
                return
            self._bottleneck_free = leaves
            delay = leaves - now
        self.stats.forwarded[kind] += 1
        if key is not None and key in self._lost:
            del self._lost[key]
            self.stats.recovered += 1
        if impairment.delay_max == 0.0 and delay == 0.0 and not self._line:
            self._send(data)
            return
        delay += self._rng.uniform(impairment.delay_min, impairment.delay_max)
        # In order: a datagram never overtakes the one before it.
        due = max(now + delay, self._last_due)
        self._last_due = due
        self._line.append((due, data))
        if self._timer is None:
            self._timer = self._loop.call_at(due, self._release)

    def _release(self) -> None:
        self._timer = None
        now = self._loop.time()
        line = self._line
        while line and line[0][0] <= now:
            self._send(line.popleft()[1])
        if line:
            self._timer = self._loop.call_at(line[0][0], self._release)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._line.clear()


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, received: Callable[[bytes, Address], None]) -> None:
        self._received = received
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (CPython 3.11's selector datagram transport does not subclass DatagramTransport.)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self._received(data, addr)

    def sendto(self, data: bytes, addr: Address | None) -> None:
        if self.transport is not None and addr is not None and not self.transport.is_closing():
            self.transport.sendto(data, addr)

    @property
    def address(self) -> Address:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return str(host), int(port)


def candidate_addresses(sdp: str) -> set[Address]:
    return {(m.group(2), int(m.group(3))) for m in _CANDIDATE.finditer(sdp)}


def rewrite_candidates(sdp: str, old: Address, new: Address) -> str:
    """``sdp`` with every candidate (and m-line port) at ``old`` moved to ``new``."""

    def move(match: re.Match[str]) -> str:
        if (match.group(2), int(match.group(3))) != old:
            return match.group(0)
        return f"{match.group(1)}{new[0]} {new[1]}{match.group(4)}"

    moved = _CANDIDATE.sub(move, sdp)
    return re.sub(
        rf"^(m=\S+ ){old[1]}( )", rf"\g<1>{new[1]}\g<2>", moved, flags=re.MULTILINE
    ).replace(f"c=IN IP4 {old[0]}", f"c=IN IP4 {new[0]}")


class RelayLink:
    """The relay for one peer connection: a socket facing the peer (standing for the
    server) and one facing the server (standing for the peer). Datagrams from anyone but
    the expected address are ignored."""

    def __init__(self, seed: str) -> None:
        self.peer_addr: Address | None = None
        self.server_addr: Address | None = None
        self._peer_facing = _Socket(self._from_peer)
        self._server_facing = _Socket(self._from_server)
        self.upstream = Direction(
            random.Random(f"{seed}-up"),
            lambda data: self._server_facing.sendto(data, self.server_addr),
        )
        self.downstream = Direction(
            random.Random(f"{seed}-down"),
            lambda data: self._peer_facing.sendto(data, self.peer_addr),
        )

    async def open(self) -> RelayLink:
        loop = asyncio.get_running_loop()
        local = (RELAY_HOST, 0)
        await loop.create_datagram_endpoint(lambda: self._peer_facing, local_addr=local)
        await loop.create_datagram_endpoint(lambda: self._server_facing, local_addr=local)
        return self

    def _from_peer(self, data: bytes, addr: Address) -> None:
        if addr == self.peer_addr:
            self.upstream.push(data)

    def _from_server(self, data: bytes, addr: Address) -> None:
        if addr == self.server_addr:
            self.downstream.push(data)

    @staticmethod
    def _only_candidate(sdp: str, whose: str) -> Address:
        addresses = candidate_addresses(sdp)
        if len(addresses) != 1:
            raise ValueError(f"the relay takes one {whose} candidate, got {sorted(addresses)}")
        return addresses.pop()

    def expose_peer(self, sdp: str) -> str:
        """The peer's SDP (going to the server), pointing at the server-facing socket."""
        self.peer_addr = self._only_candidate(sdp, "peer")
        return rewrite_candidates(sdp, self.peer_addr, self._server_facing.address)

    def expose_server(self, sdp: str) -> str:
        """The server's SDP (going to the peer), pointing at the peer-facing socket."""
        self.server_addr = self._only_candidate(sdp, "server")
        return rewrite_candidates(sdp, self.server_addr, self._peer_facing.address)

    def impair(self, upstream: Impairment, downstream: Impairment) -> None:
        self.upstream.impairment = upstream
        self.downstream.impairment = downstream

    def close(self) -> None:
        for direction in (self.upstream, self.downstream):
            direction.close()
        for sock in (self._peer_facing, self._server_facing):
            if sock.transport is not None:
                sock.transport.close()


class LossyRelay:
    """Every link made for one peer; impairments apply to all of them."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.links: list[RelayLink] = []
        self._upstream = CLEAN
        self._downstream = CLEAN

    async def link(self) -> RelayLink:
        link = await RelayLink(f"{self.seed}-{len(self.links)}").open()
        link.impair(self._upstream, self._downstream)
        self.links.append(link)
        return link

    def impair(self, upstream: Impairment, downstream: Impairment | None = None) -> None:
        """Apply from now on (``downstream`` defaults to the same as ``upstream``)."""
        self._upstream = upstream
        self._downstream = upstream if downstream is None else downstream
        for link in self.links:
            link.impair(self._upstream, self._downstream)

    def stats(self) -> tuple[DirectionStats, DirectionStats]:
        """(upstream, downstream) totals over every link so far."""
        up, down = DirectionStats(), DirectionStats()
        for link in self.links:
            up.add(link.upstream.stats)
            down.add(link.downstream.stats)
        return up, down

    def close(self) -> None:
        for link in self.links:
            link.close()


class RelayedRoom:
    """A :class:`SignalledRoom` whose every peer connection is routed through ``relay``
    (the SDP in both directions is rewritten to the relay's sockets)."""

    def __init__(self, inner: SignalledRoom, relay: LossyRelay) -> None:
        self.inner = inner
        self.relay = relay
        self._subscribe_link: RelayLink | None = None

    async def publish(self, pid: ParticipantId, offer_sdp: str) -> str:
        link = await self.relay.link()
        answer = await self.inner.publish(pid, link.expose_peer(offer_sdp))
        return link.expose_server(answer)

    async def subscribe(
        self, pid: ParticipantId, slot_count: int
    ) -> tuple[str, list[SlotMids], str]:
        offer, slots, screen_mid = await self.inner.subscribe(pid, slot_count)
        link = await self.relay.link()
        self._subscribe_link = link
        return link.expose_server(offer), slots, screen_mid

    async def accept_subscribe_answer(self, pid: ParticipantId, answer_sdp: str) -> None:
        link = self._subscribe_link
        if link is None:
            raise RuntimeError("an answer without a subscribe offer")
        await self.inner.accept_subscribe_answer(pid, link.expose_peer(answer_sdp))
