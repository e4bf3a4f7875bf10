"""Hostile UDP at every server ICE port of a live session: media keeps flowing to everyone.

Four participants publish and subscribe (everyone sees everyone: 24 streams). A flooder
in its own process (tests/media/hostile_udp.py) fires, at every server ICE port and from
three loopback source addresses, one phase after another:

- ``random``: every length 0..1500 (and oversize ones up to 65,507) with random content;
- ``stun``: forged binding requests (no or wrong MESSAGE-INTEGRITY, wrong USERNAME or
  FINGERPRINT, attributes of huge or wrong lengths, inconsistent or truncated headers)
  and responses for transactions never sent;
- ``dtls``: records of every content type with bad lengths and epochs, alerts,
  handshakes, undecryptable application data, DTLS 1.3 headers;
- ``rtp``: SRTP/SRTCP lookalikes with random and real SSRCs, bad authentication tags,
  truncated headers, CSRC count 15 without CSRCs, extensions past the end, RTCP with
  absurd lengths.

Meanwhile every arrival at every subscriber is logged per (receiver, sender, kind). The
test asserts that every stream kept flowing in every phase and afterwards, that no peer
connection closed, no path was reported lost, no nominated pair moved, the attacker got
nothing back, and nothing was raised into the event loop. It asserts nothing about
timing: continuity figures (packets per second per stream, gaps) are printed and
written to benchmarks/results/hostile_udp.json.

The seed is random per run and printed; set TELECIRCLE_HOSTILE_UDP_SEED to replay one.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import secrets
import statistics
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiortc.rtp import RtpPacket

from telecircle.media import aiortc_tap
from telecircle.media.room import MediaRoom
from telecircle.media.sfu import Sfu

from .conftest import RoomEvents, everyone_sees_everyone
from .hostile_udp import (
    ATTACK_SOURCES,
    MAX_LENGTH,
    OVERSIZE_LENGTHS,
    Phase,
    PhaseReport,
    Plan,
    Target,
)
from .peer import EncodedMedia, SyntheticPeer, wait_until

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "hostile_udp.json"
SEED_VARIABLE = "TELECIRCLE_HOSTILE_UDP_SEED"
PEERS = 4
RATE = 5000.0  # datagrams per second, all ports together
PHASES = (
    # Every length once at every port (bounded by count), then fixed durations.
    Phase("random", duration=6.0, per_target=MAX_LENGTH + 1 + len(OVERSIZE_LENGTHS)),
    Phase("stun", duration=2.0),
    Phase("dtls", duration=2.0),
    Phase("rtp", duration=2.0),
)
BASELINE = 2.0
GAP_REPORTED = 0.25  # seconds: gaps longer than this are listed
# aiortc/aioice/asyncio/SFU warnings during the attack would mean a datagram got
# further than it should (e.g. aiortc logs the exception that ends a DTLS transport).
WATCHED_LOGGERS = ("aiortc", "aioice", "asyncio", "telecircle.media")


@dataclass(frozen=True)
class Stream:
    viewer: str
    owner: str
    kind: str
    mid: str

    @property
    def label(self) -> str:
        return f"{self.owner}->{self.viewer} {self.kind}"


class ArrivalLog:
    """When each RTP packet reached each subscriber, per mid (on the event loop's clock)."""

    def __init__(self) -> None:
        self.times: dict[tuple[str, str], list[float]] = defaultdict(list)

    def watch(self, peer: SyntheticPeer) -> None:
        assert peer.subscribe_pc is not None
        loop = asyncio.get_running_loop()
        for transceiver in peer.subscribe_pc.getTransceivers():
            times = self.times[(peer.pid, str(transceiver.mid))]

            async def note(packet: RtpPacket, times: list[float] = times) -> None:
                times.append(loop.time())

            aiortc_tap.tap_rtp(transceiver.receiver, note)

    def of(self, stream: Stream) -> list[float]:
        return self.times[(stream.viewer, stream.mid)]


def streams_of(peers: list[SyntheticPeer], events: RoomEvents) -> list[Stream]:
    streams = []
    for viewer in peers:
        assignments = events.slots[viewer.pid]
        for owner in peers:
            if owner is not viewer:
                audio_mid, video_mid = viewer.mids_of(assignments, owner.pid)
                streams.append(Stream(viewer.pid, owner.pid, "audio", audio_mid))
                streams.append(Stream(viewer.pid, owner.pid, "video", video_mid))
    return streams


def server_ice(room: MediaRoom) -> list[Any]:
    """The aioice connection under each of the room's (bundled) peer connections."""
    return [
        connection.pc.getTransceivers()[0].sender.transport.transport._connection
        for connection in room._connections
    ]


def targets_of(room: MediaRoom) -> tuple[Target, ...]:
    return tuple(
        Target(protocol.local_candidate.port, f"{ice.local_username}:{ice.remote_username}")
        for ice in server_ice(room)
        for protocol in ice._protocols
    )


def nominated_paths(room: MediaRoom) -> dict[int, Any]:
    return {
        id(ice): {c: (p.local_addr, p.remote_addr) for c, p in ice._nominated.items()}
        for ice in server_ice(room)
    }


def publisher_ssrcs(peers: list[SyntheticPeer]) -> tuple[int, ...]:
    ssrcs: list[int] = []
    for peer in peers:
        assert peer.publish_pc is not None
        ssrcs.extend(sender._ssrc for sender in peer.publish_pc.getSenders())
    return tuple(ssrcs)


def window_figures(
    name: str, start: float, end: float, streams: list[Stream], log: ArrivalLog
) -> dict[str, Any]:
    """Continuity in [start, end): packets per second (1 s bins) per stream, and gaps."""
    seconds = end - start
    # Whole seconds (a partial last one is left out); a window under a second is one bin.
    bins = max(int(seconds), 1)
    width = min(seconds, 1.0)
    figures: dict[str, Any] = {"window": name, "seconds": round(seconds, 2)}
    long_gaps: list[tuple[str, float]] = []
    for kind in ("audio", "video"):
        rates: list[float] = []
        stream_minimums: list[float] = []
        max_gap = 0.0
        for stream in (s for s in streams if s.kind == kind):
            inside = [t for t in log.of(stream) if start <= t < end]
            counts = [0] * bins
            for t in inside:
                index = int((t - start) / width)
                if index < bins:
                    counts[index] += 1
            stream_rates = [round(count / width, 1) for count in counts]
            rates.extend(stream_rates)
            stream_minimums.append(min(stream_rates))
            edges = [start, *inside, end]
            for before, after in itertools.pairwise(edges):
                gap = after - before
                max_gap = max(max_gap, gap)
                if gap > GAP_REPORTED:
                    long_gaps.append((stream.label, round(gap * 1000)))
        figures[kind] = {
            "min_pps": min(rates),
            "median_pps": statistics.median(rates),
            "median_of_stream_minimums": statistics.median(stream_minimums),
            "max_gap_ms": round(max_gap * 1000),
        }
    figures["gaps_over_ms"] = {"threshold": round(GAP_REPORTED * 1000), "count": len(long_gaps)}
    figures["worst_gaps"] = sorted(long_gaps, key=lambda g: -g[1])[:5]
    return figures


def packets_in(log: ArrivalLog, stream: Stream, start: float, end: float) -> int:
    return sum(1 for t in log.of(stream) if start <= t < end)


async def run_flooder(plan: Plan) -> list[PhaseReport]:
    """Run tests/media/hostile_udp.py in its own process; it stops by itself."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.media.hostile_udp",
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(sum(p.duration for p in plan.phases) + 30):
            out, err = await process.communicate(plan.to_json().encode())
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    reports = []
    for line in out.decode().splitlines():
        raw = json.loads(line)
        raw.pop("rate")
        reports.append(PhaseReport(**raw))
    return reports


def report_figures(
    seed: int,
    plan: Plan,
    streams: list[Stream],
    log: ArrivalLog,
    baseline: tuple[float, float],
    reports: list[PhaseReport],
) -> None:
    """Print the attack and continuity figures; write them to benchmarks/results."""
    windows = [window_figures("baseline", *baseline, streams, log)]
    windows += [window_figures(r.name, r.start, r.end, streams, log) for r in reports]
    windows.append(window_figures("whole attack", reports[0].start, reports[-1].end, streams, log))
    phases = [
        {
            "phase": r.name,
            "seconds": round(r.end - r.start, 2),
            "datagrams": r.sent,
            "rate_per_s": round(r.rate),
            "megabytes": round(r.sent_bytes / 1e6, 2),
            "replies_to_attacker": r.replies,
        }
        for r in reports
    ]
    results = {
        "seed": seed,
        "participants": PEERS,
        "streams": len(streams),
        "ports": len(plan.targets),
        "sources": len(ATTACK_SOURCES),
        "phases": phases,
        "continuity": windows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{len(streams)} streams, {len(plan.targets)} ports, {len(ATTACK_SOURCES)} sources")
    for phase in phases:
        print(
            f"  {phase['phase']:>6}: {phase['datagrams']} datagrams in {phase['seconds']} s"
            f" ({phase['rate_per_s']}/s, {phase['megabytes']} MB),"
            f" replies {phase['replies_to_attacker']}"
        )
    print(
        "  window          audio pps min/median  video pps min/median  max gap a/v ms  gaps>250ms"
    )
    for w in windows:
        audio, video = w["audio"], w["video"]
        print(
            f"  {w['window']:<14}  {audio['min_pps']:>8} / {audio['median_pps']:<8}"
            f"  {video['min_pps']:>8} / {video['median_pps']:<8}"
            f"  {audio['max_gap_ms']:>5} / {video['max_gap_ms']:<5}  {w['gaps_over_ms']['count']}"
        )
    print(f"  figures written to {RESULTS.relative_to(ROOT)}")


async def test_hostile_udp_at_every_ice_port(
    sfu: Sfu,
    room: MediaRoom,
    events: RoomEvents,
    media_library: list[EncodedMedia],
    caplog: pytest.LogCaptureFixture,
) -> None:
    seed = int(os.environ.get(SEED_VARIABLE) or secrets.randbits(32))
    print(f"\nhostile UDP seed {seed} (replay: {SEED_VARIABLE}={seed})")
    peers = [SyntheticPeer(f"p{i}", media_library[i]) for i in range(PEERS)]
    log = ArrivalLog()
    loop = asyncio.get_running_loop()
    raised: list[dict[str, Any]] = []
    previous_handler = loop.get_exception_handler()
    try:
        await asyncio.gather(*(peer.publish(room) for peer in peers))
        await asyncio.gather(*(peer.subscribe(room, slot_count=PEERS - 1) for peer in peers))
        for peer in peers:
            log.watch(peer)
        room.set_audiences(everyone_sees_everyone([peer.pid for peer in peers]))
        await wait_until(lambda: all(peer.pid in events.slots for peer in peers))
        streams = streams_of(peers, events)
        assert len(streams) == PEERS * (PEERS - 1) * 2
        await wait_until(lambda: all(len(log.of(s)) >= 10 for s in streams), timeout=30)

        pcs = [connection.pc for connection in room._connections]
        assert len(pcs) == 2 * PEERS
        paths = nominated_paths(room)
        counts_before = sfu.counts()
        plan = Plan(
            seed=seed,
            rate=RATE,
            targets=targets_of(room),
            phases=PHASES,
            ssrcs=publisher_ssrcs(peers),
        )
        assert len(plan.targets) == 2 * PEERS  # one bundled port per peer connection

        baseline_start = loop.time()
        await asyncio.sleep(BASELINE)
        baseline_end = loop.time()
        loop.set_exception_handler(lambda _, context: raised.append(context))
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            reports = await run_flooder(plan)
        loop.set_exception_handler(previous_handler)
        report_figures(seed, plan, streams, log, (baseline_start, baseline_end), reports)

        # Nothing broke: no path lost, every peer connection up, the same nominated
        # pairs, nothing raised into the event loop or logged as a warning.
        assert events.lost == [], seed
        assert all(pc.connectionState == "connected" for pc in pcs), seed
        for peer in peers:
            for pc in (peer.publish_pc, peer.subscribe_pc):
                assert pc is not None and pc.connectionState == "connected", (peer.pid, seed)
        assert sfu.counts() == counts_before, seed
        assert nominated_paths(room) == paths, seed
        assert raised == [], (seed, [c.get("message") for c in raised][:5])
        noisy = [
            (r.name, r.getMessage()[:200])
            for r in caplog.records
            if r.levelno >= logging.WARNING and r.name.startswith(WATCHED_LOGGERS)
        ]
        assert noisy == [], (seed, noisy[:5])
        random_phase = PHASES[0]
        assert reports[0].sent == random_phase.per_target * len(plan.targets), (
            "not every length reached every port"
        )
        # Requests from anywhere but the nominated pair go unanswered, and media only
        # ever goes to the nominated pair: the attacker's sockets got nothing at all.
        assert all(r.sent > 0 and r.replies == {} for r in reports), (
            seed,
            [(r.name, r.sent, r.replies) for r in reports],
        )
        # Every stream kept flowing through every phase (however well: the figures say),
        # and still flows afterwards.
        for report in reports:
            starved = [
                s.label for s in streams if packets_in(log, s, report.start, report.end) == 0
            ]
            assert starved == [], (report.name, seed, starved)
        after = {s: len(log.of(s)) for s in streams}
        try:
            await wait_until(lambda: all(len(log.of(s)) >= after[s] + 5 for s in streams))
        except TimeoutError:
            stalled = [s.label for s in streams if len(log.of(s)) < after[s] + 5]
            raise AssertionError(f"no media after the attack: {stalled} (seed {seed})") from None
    finally:
        loop.set_exception_handler(previous_handler)
        await asyncio.gather(*(peer.close() for peer in peers))
        await room.close()
