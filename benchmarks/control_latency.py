"""Control latency: from a facilitator's mute to the last audio packet the SFU forwards,
and from "start pair work" to every pair seeing and hearing only each other.

Run from the repository root::

    .venv/bin/python -m benchmarks.control_latency               # 200 mutes, 50 breakouts
    .venv/bin/python -m benchmarks.control_latency --cycles 40 --breakout-cycles 20  # quick

(under a minute to set up, then roughly 0.4 s per mute cycle and 1 s per breakout cycle;
``--cycles 0`` or ``--breakout-cycles 0`` leaves one part out). Like
``benchmarks/sfu_bench.py``, whose server, room, participant and sampling machinery it
imports, it starts ``telecircle serve`` as a subprocess pinned to core 0 and runs the load
generator in this process on core 1. Ten participants share one room: its therapist, who
sends the controls, and nine patients. Each patient comes in the way a patient does: the
therapist makes a personal invite on the room page, the patient opens and redeems it with
its own cookies, fills in the pre-join page, joins over socket.io, waits in the lobby and
is admitted. Everyone publishes sfu_bench's synthetic media (VP8 640x360 30 fps, keyframe
every 2 s, Opus 20 ms frames) and receives everyone else.

Mute cycles (``--cycles``) each mute one patient (round robin): ``force_media
{audio_off: true}`` from the therapist. Figures:

- mute: from sending the command to the last audio packet of that patient that arrives
  at any of the nine other participants (0 when none arrives after the send); the
  cycle waits until that patient's audio has been quiet at every receiver for
  ``--quiet`` seconds (bounded) before taking it. Its resolution is one audio frame
  (20 ms): forwarding stops between that last packet and the next one the patient sent;
- ack: from sending the command to its ack;
- unmute: from sending ``audio_off: false`` (followed by the patient's own
  ``set_media {audio_on: true}``: being let speak does not make anyone live) to that
  patient's audio arriving at every receiver again;

as p50 / p99 / max, plus the audio packets that arrived after the ack (the ones already
on the wire). The issue's goal: mute p99 under 50 ms.

Breakout cycles (``--breakout-cycles``) each start pair work by hand from the plenary —
``start_pairs`` with the nine patients shuffled into four pairs and a trio — and end it
(``end_pairs``) once it has settled; ``--gap`` seconds of plenary follow. Every receiver
attributes what arrives on each of its receive slots (mids) to the publisher that fed the
slot in the plenary just before: slots are stable, and pair work only frees the slots of
people outside the pair, so during pair work nothing may arrive on those. Figures:

- start pairs: from sending ``start_pairs`` until all media is re-routed and every pair
  shows video, i.e. the later of
    - the last packet from outside a receiver's pair that arrives anywhere (the cycle
      waits for ``--quiet`` seconds without any, bounded; 0 when none arrives after the
      send), and
    - every patient having received the first packet of a new video frame from each
      partner (a partner's slot is kept, so its video goes on from the next frame);
- end pairs: from sending ``end_pairs`` until every receiver shows video from every
  other participant: a keyframe from everyone it was newly routed to (the SFU asks the
  publisher for one and forwards nothing on a re-fed slot before it), the next frame
  from its partners;
- both acks, and the packets from outside the pairs that arrived after the start's ack.

The issue's goal: start pairs p99 under 300 ms. Receipt times are taken in the generator,
so its own event-loop lateness (reported) adds to every figure.

Prints a table and writes ``benchmarks/results/control_latency.json``. Timings never
fail the run; it exits 1 only if something is broken (a refused command, a mute that
never silences, an unmute whose audio never comes back, pair work that never re-routes).
"""

from __future__ import annotations

import argparse
import asyncio
import html
import math
import os
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from yarl import URL

from benchmarks.raw_rtp import payload_start
from benchmarks.sfu_bench import (
    CALL_TIMEOUT,
    FLOW_TIMEOUT,
    GENERATOR_CORE,
    ROOT,
    SERVER_CORE,
    Broken,
    Sampler,
    SioParticipant,
    cpu_seconds,
    create_room,
    fmt,
    rss_mb,
    run_header,
    served,
    wait_flowing,
    write_report,
)
from benchmarks.synthetic import (
    EncodedMedia,
    Ledger,
    PacketNote,
    encode_media,
    vp8_keyframe_start,
)
from telecircle.domain.activities import pair_up
from telecircle.domain.ids import ParticipantId, RoomCode
from telecircle.media.ice_policy import IcePolicy
from telecircle.services.entry import PASS_COOKIE
from telecircle.storage import stores
from telecircle.storage.database import Database

RESULTS = ROOT / "benchmarks" / "results" / "control_latency.json"
PATIENTS = 9  # with the therapist, ten participants
GOAL_MUTE_P99_MS = 50.0
GOAL_BREAKOUT_P99_MS = 300.0
PAIRS_SECONDS = 600  # pair work that never runs out by itself here: each cycle ends it
BREAKOUT_TIMEOUT = 10.0  # pair work (or its end) not re-routed after this is broken
SILENCE_TIMEOUT = 5.0  # a mute whose audio is still arriving after this is broken
RESUME_TIMEOUT = 5.0
ADMIT_POLL = 0.2

_CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')
_NEW_LINK = re.compile(r'id="new-link" readonly value="([^"]*)"')
_AGREEMENT = re.compile(r'name="agreement_version" value="([^"]*)"')


# ---- who received whose audio, and when -------------------------------------------------


@dataclass
class AudioArrivals:
    """Audio packets arriving at the receivers, by owner (one event loop, no locks)."""

    last: dict[str, float] = field(default_factory=dict)  # owner -> perf_counter
    total: Counter[str] = field(default_factory=Counter)  # owner -> packets, all receivers
    # While an unmute is watched: the first arrival at each receiver since it was sent.
    watched: str | None = None
    first_since: dict[str, float] = field(default_factory=dict)

    def note(self, receiver: str, owner: str, now: float) -> None:
        self.last[owner] = now
        self.total[owner] += 1
        if owner == self.watched and receiver not in self.first_since:
            self.first_since[receiver] = now

    def watch(self, owner: str | None) -> None:
        self.watched = owner
        self.first_since = {}


def vp8_frame_start(payload: bytes) -> bool:
    """True on the first packet of a VP8 frame (RFC 7741: S bit set, partition 0)."""
    return bool(payload) and bool(payload[0] & 0x10) and not payload[0] & 0x07


@dataclass
class MidWatch:
    """What arrives on each of one participant's receive mids from ``since`` on."""

    since: float = math.inf  # perf_counter; nothing counts before it
    last: dict[str, float] = field(default_factory=dict)
    frame: dict[str, float] = field(default_factory=dict)  # first packet of a video frame
    keyframe: dict[str, float] = field(default_factory=dict)  # ... of a video keyframe
    packets: Counter[str] = field(default_factory=Counter)

    def reset(self, since: float) -> None:
        self.since = since
        self.last.clear()
        self.frame.clear()
        self.keyframe.clear()
        self.packets.clear()

    def note(self, mid: str, video: bool, payload: bytes, now: float) -> None:
        if now < self.since:
            return
        self.last[mid] = now
        self.packets[mid] += 1
        if video and vp8_frame_start(payload):
            self.frame.setdefault(mid, now)
            if vp8_keyframe_start(payload):
                self.keyframe.setdefault(mid, now)


class Member(SioParticipant):
    """An sfu_bench participant that also notes each audio packet it receives, by owner,
    and every packet by mid; its media lasts ``lifetime`` seconds (the whole run)."""

    arrivals: AudioArrivals
    watch: MidWatch

    def _also_note(self) -> PacketNote:
        owners, arrivals, watch = self.owner_of_mid, self.arrivals, self.watch

        def note(mid: str, kind: str, plain: bytes, now: float) -> None:
            if kind == "audio" and (owner := owners.get(mid)) is not None:
                arrivals.note(self.pid, owner, now)
            watch.note(mid, kind == "video", plain[payload_start(plain) :], now)

        return note

    def video_mids(self) -> dict[str, str]:
        """The video mid of each publisher this participant receives now (slots event)."""
        owners = self.owner_of_mid
        return {owners[video]: video for _, video in self.slot_mids.values() if video in owners}


class Patient(Member):
    """A patient: the join ack puts them in the lobby; once the therapist admits them
    the same seat is in the session, and sfu_bench's join goes on to publish and
    subscribe."""

    async def call(self, event: str, data: dict[str, Any]) -> Any:
        if event != "join":
            return await super().call(event, data)
        admitted = asyncio.Event()
        self.sio.on("admitted", lambda _data: admitted.set())  # before knocking
        joined = await super().call(event, data)
        if joined.get("place") == "lobby":
            try:
                async with asyncio.timeout(FLOW_TIMEOUT):
                    await admitted.wait()
            except TimeoutError:
                raise Broken(f"{self.name}: never admitted") from None
            joined = {**joined, "place": "plenary"}
        return joined


# ---- the patients' way in, over HTTP -------------------------------------------------


def _find(pattern: re.Pattern[str], text: str, what: str) -> str:
    match = pattern.search(text)
    if match is None:
        raise Broken(f"no {what} on the page")
    return html.unescape(match.group(1))


class Browser:
    """One cookie jar: reads a page, posts its form with the page's CSRF token."""

    def __init__(self, base_url: str, cookie: str | None = None) -> None:
        self.base_url = base_url
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        if cookie is not None:
            name, _, value = cookie.partition("=")
            self.http.cookie_jar.update_cookies({name: value}, URL(base_url))

    async def get(self, path: str) -> str:
        timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT)
        async with self.http.get(self.base_url + path, timeout=timeout) as response:
            if response.status != 200:
                raise Broken(f"GET {path.split('/')[1]} -> HTTP {response.status}")
            return await response.text()

    async def post(self, path: str, form_page: str, fields: dict[str, str]) -> str:
        token = _find(_CSRF, await self.get(form_page), "form")
        timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT)
        data = {"csrf_token": token, **fields}
        async with self.http.post(self.base_url + path, data=data, timeout=timeout) as response:
            if response.status != 200:
                raise Broken(f"POST {path.split('/')[1]} -> HTTP {response.status}")
            return await response.text()

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.http.cookie_jar if c.key == name), None)

    async def close(self) -> None:
        await self.http.close()


async def patient_cookies(
    base_url: str, db: Database, code: str, therapist_cookie: str
) -> list[str]:
    """One pass cookie per patient: a personal invite made by the therapist on the room
    page, opened and redeemed by a fresh browser, the pre-join page filled in. (Each
    patient opens the link twice, GET and POST: 18 openings, within the server's
    default 20 per address.)"""
    room = await stores.get_room_by_code(db, RoomCode(code))
    if room is None:
        raise Broken("the room is gone")
    room_page = f"/clinic/rooms/{room.id}"
    therapist = Browser(base_url, therapist_cookie)
    cookies = []
    try:
        for n in range(PATIENTS):
            page = await therapist.post(
                f"{room_page}/invites",
                room_page,
                {"kind": "personal", "patient_name": f"patient {n}", "session_id": ""},
            )
            link = URL(_find(_NEW_LINK, page, "invite link"))
            patient = Browser(base_url)
            try:
                page = await patient.post(link.path, link.path, {})  # redeem -> /join
                version = _find(_AGREEMENT, page, "agreement")
                await patient.post(
                    "/join",
                    "/join",
                    {
                        "display_name": f"patient {n}",
                        "agreement_version": version,
                        "accept_agreement": "on",
                        "location": "Home",
                        "emergency_contact": "Sam 0123",
                    },
                )
                secret = patient.cookie(PASS_COOKIE)
                if secret is None:
                    raise Broken("redeeming an invite set no pass cookie")
                cookies.append(f"{PASS_COOKIE}={secret}")
            finally:
                await patient.close()
    finally:
        await therapist.close()
    return cookies


# ---- the cycles ----------------------------------------------------------------------


@dataclass
class Figures:
    mute_s: list[float] = field(default_factory=list)
    ack_s: list[float] = field(default_factory=list)
    unmute_s: list[float] = field(default_factory=list)
    after_ack: list[int] = field(default_factory=list)  # audio packets, all receivers
    none_after_send: int = 0


async def quiet(arrivals: AudioArrivals, owner: str, quiet_s: float) -> None:
    """Until ``owner``'s audio has not arrived anywhere for ``quiet_s``; Broken after
    SILENCE_TIMEOUT."""
    deadline = time.perf_counter() + SILENCE_TIMEOUT
    while True:
        now = time.perf_counter()
        since = now - arrivals.last.get(owner, 0.0)
        if since >= quiet_s:
            return
        if now > deadline:
            raise Broken("a muted patient's audio kept arriving")
        await asyncio.sleep(quiet_s - since)


async def force(therapist: Member, target: str, audio_off: bool) -> None:
    await therapist.call("force_media", {"participant_id": target, "audio_off": audio_off})


async def cycle(
    therapist: Member, target: Member, everyone: list[Member], quiet_s: float, figures: Figures
) -> None:
    arrivals = therapist.arrivals
    receivers = {m.pid for m in everyone if m is not target}
    sent_at = time.perf_counter()
    await force(therapist, target.pid, audio_off=True)
    acked_at = time.perf_counter()
    at_ack = arrivals.total[target.pid]
    await quiet(arrivals, target.pid, quiet_s)
    last = arrivals.last.get(target.pid, 0.0)
    if last < sent_at:
        figures.none_after_send += 1
    figures.mute_s.append(max(0.0, last - sent_at))
    figures.ack_s.append(acked_at - sent_at)
    figures.after_ack.append(arrivals.total[target.pid] - at_ack)

    arrivals.watch(target.pid)
    resumed_at = time.perf_counter()
    await force(therapist, target.pid, audio_off=False)
    # Being let speak does not make her live; she unmutes herself (as her page would).
    await target.call("set_media", {"audio_on": True})
    deadline = resumed_at + RESUME_TIMEOUT
    while not arrivals.first_since.keys() >= receivers:
        if time.perf_counter() > deadline:
            raise Broken("an unmuted patient's audio did not come back everywhere")
        await asyncio.sleep(0.005)
    figures.unmute_s.append(max(arrivals.first_since.values()) - resumed_at)
    arrivals.watch(None)


async def admit_while_waiting(therapist: Member, joining: asyncio.Future[Any]) -> None:
    """Let the patients in as they knock, until all of them have joined."""
    while not joining.done():
        await therapist.call("admit_all", {})
        await asyncio.wait({joining}, timeout=ADMIT_POLL)


# ---- breakout cycles ------------------------------------------------------------------


@dataclass
class BreakoutFigures:
    start_s: list[float] = field(default_factory=list)  # the later of the next two
    reroute_s: list[float] = field(default_factory=list)  # last packet from outside a pair
    partner_video_s: list[float] = field(default_factory=list)  # a frame from every partner
    start_ack_s: list[float] = field(default_factory=list)
    end_s: list[float] = field(default_factory=list)  # everyone's video, keyframes relayed
    end_ack_s: list[float] = field(default_factory=list)
    cross_after_ack: list[int] = field(default_factory=list)  # packets, all receivers
    no_cross_after_send: int = 0  # cycles in which nothing from outside a pair arrived


def shuffled_groups(patients: Sequence[Member], rng: random.Random) -> list[list[str]]:
    """The patients in random pairs, the odd one out making a trio (as the server does)."""
    order = [ParticipantId(p.pid) for p in patients]
    rng.shuffle(order)
    return [[str(pid) for pid in group] for group in pair_up(order)]


async def until(condition: Any, deadline: float, what: str) -> None:
    """Poll ``condition()`` (every 5 ms) until true; Broken at ``deadline``."""
    while not condition():
        if time.perf_counter() > deadline:
            raise Broken(what)
        await asyncio.sleep(0.005)


async def breakout_cycle(
    therapist: Member,
    patients: Sequence[Member],
    rng: random.Random,
    quiet_s: float,
    figures: BreakoutFigures,
) -> None:
    everyone = [therapist, *patients]
    groups = shuffled_groups(patients, rng)
    mates: dict[str, set[str]] = {therapist.pid: set()}
    for group in groups:
        for pid in group:
            mates[pid] = set(group) - {pid}
    # The plenary's slots (stable through pair work): which mids carry what from whom.
    cross: dict[str, list[str]] = {}
    partner_video: dict[str, list[str]] = {}
    for m in everyone:
        owners = dict(m.owner_of_mid)
        if set(owners.values()) != {o.pid for o in everyone} - {m.pid}:
            raise Broken(f"{m.name} does not receive everyone before pair work")
        cross[m.pid] = [mid for mid, owner in owners.items() if owner not in mates[m.pid]]
        partner_video[m.pid] = [
            mid for owner, mid in m.video_mids().items() if owner in mates[m.pid]
        ]

    def last_cross() -> float:
        return max(
            (m.watch.last.get(mid, 0.0) for m in everyone for mid in cross[m.pid]), default=0.0
        )

    def cross_packets() -> int:
        return sum(m.watch.packets[mid] for m in everyone for mid in cross[m.pid])

    def settled() -> bool:
        partners = all(mid in m.watch.frame for m in everyone for mid in partner_video[m.pid])
        return partners and time.perf_counter() - max(last_cross(), started) >= quiet_s

    started = time.perf_counter()
    for m in everyone:
        m.watch.reset(started)
    await therapist.call("start_pairs", {"duration_seconds": PAIRS_SECONDS, "groups": groups})
    start_acked = time.perf_counter()
    at_ack = cross_packets()
    await until(settled, started + BREAKOUT_TIMEOUT, "pair work did not re-route in time")
    last = last_cross()
    if last < started:
        figures.no_cross_after_send += 1
    partners_at = max(m.watch.frame[mid] for m in everyone for mid in partner_video[m.pid])
    figures.reroute_s.append(max(0.0, last - started))
    figures.partner_video_s.append(partners_at - started)
    figures.start_s.append(max(last, partners_at) - started)
    figures.start_ack_s.append(start_acked - started)
    figures.cross_after_ack.append(cross_packets() - at_ack)

    # The end: every slot freed for pair work is fed again, from a keyframe.
    def shown(m: Member) -> list[float] | None:
        mids = m.video_mids()
        if mids.keys() != {o.pid for o in everyone} - {m.pid}:
            return None  # its slots event has not come yet
        times = []
        for owner, mid in mids.items():
            seen = m.watch.frame if owner in mates[m.pid] else m.watch.keyframe
            if mid not in seen:
                return None
            times.append(seen[mid])
        return times

    ended = time.perf_counter()
    for m in everyone:
        m.watch.reset(ended)
    await therapist.call("end_pairs", {})
    end_acked = time.perf_counter()
    await until(
        lambda: all(shown(m) is not None for m in everyone),
        ended + BREAKOUT_TIMEOUT,
        "the end of pair work did not bring everyone's video back in time",
    )
    figures.end_s.append(max(max(shown(m) or [ended]) for m in everyone) - ended)
    figures.end_ack_s.append(end_acked - ended)


def breakout_result(figures: BreakoutFigures) -> dict[str, Any]:
    return {
        "start_pairs_to_rerouted_and_video": stats(figures.start_s),
        "start_pairs_to_last_packet_from_outside_pair": stats(figures.reroute_s),
        "start_pairs_to_frame_from_every_partner": stats(figures.partner_video_s),
        "start_pairs_ack": stats(figures.start_ack_s),
        "end_pairs_to_everyones_video": stats(figures.end_s),
        "end_pairs_ack": stats(figures.end_ack_s),
        "packets_from_outside_pair_after_ack": {
            "total": sum(figures.cross_after_ack),
            "max_per_start": max(figures.cross_after_ack, default=0),
        },
        "starts_with_no_packet_from_outside_after_send": figures.no_cross_after_send,
        "goal_start_p99_ms": GOAL_BREAKOUT_P99_MS,
        "samples_ms": {
            "start": [round(1000 * s, 2) for s in figures.start_s],
            "reroute": [round(1000 * s, 2) for s in figures.reroute_s],
            "partner_video": [round(1000 * s, 2) for s in figures.partner_video_s],
            "end": [round(1000 * s, 2) for s in figures.end_s],
        },
    }


async def run_cycles(
    base_url: str, db: Database, ceiling: int, server_pid: int, media: EncodedMedia, args: Any
) -> dict[str, Any]:
    # sfu_bench's room: its first sign-in is the therapist who owns the room; the
    # other seats are taken by patients, so the remaining clinicians stay away.
    room = await create_room(db, PATIENTS + 1, ceiling)
    cookies = await patient_cookies(base_url, db, room.code, room.cookies[0])
    arrivals = AudioArrivals()
    # Media outlives every bounded wait below.
    lifetime = 120.0 + 3.0 * args.cycles + (2 * BREAKOUT_TIMEOUT + args.gap) * args.breakout_cycles
    ledger = Ledger()
    therapist = Member("therapist", media, ledger)
    patients = [Patient(f"patient-{n}", media, ledger) for n in range(PATIENTS)]
    everyone: list[Member] = [therapist, *patients]
    for member in everyone:
        member.arrivals, member.lifetime, member.watch = arrivals, lifetime, MidWatch()
    figures = Figures()
    breakouts = BreakoutFigures()
    rng = random.Random(args.seed)
    result: dict[str, Any] = {
        "participants": len(everyone),
        "cycles": args.cycles,
        "breakout_cycles": args.breakout_cycles,
    }
    try:
        async with asyncio.timeout(lifetime):
            await therapist.join(base_url, room.code, room.cookies[0])
            joining = asyncio.gather(
                *(p.join(base_url, room.code, c) for p, c in zip(patients, cookies, strict=True))
            )
            await admit_while_waiting(therapist, joining)
            await joining
            if not await wait_flowing(list(everyone), FLOW_TIMEOUT):
                raise Broken("media did not flow between everyone")
            await asyncio.sleep(args.warmup)
            sampler = Sampler(server_pid)
            sampling = asyncio.create_task(sampler.run(lifetime))
            cpu0, t0 = cpu_seconds(server_pid), time.perf_counter()
            try:
                for i in range(args.cycles):
                    target = patients[i % len(patients)]
                    await cycle(therapist, target, everyone, args.quiet, figures)
                for _ in range(args.breakout_cycles):
                    await breakout_cycle(therapist, patients, rng, args.quiet, breakouts)
                    await asyncio.sleep(args.gap)
            finally:
                sampling.cancel()
                await asyncio.gather(sampling, return_exceptions=True)
            elapsed = time.perf_counter() - t0
            result.update(
                {
                    "mute_to_last_audio": stats(figures.mute_s),
                    "ack": stats(figures.ack_s),
                    "unmute_to_audio_everywhere": stats(figures.unmute_s),
                    "audio_packets_after_ack": {
                        "total": sum(figures.after_ack),
                        "max_per_mute": max(figures.after_ack, default=0),
                    },
                    "mutes_with_no_packet_after_send": figures.none_after_send,
                    "goal_mute_p99_ms": GOAL_MUTE_P99_MS,
                    "run_s": round(elapsed, 1),
                    "server_cpu_core_pct": round(
                        100 * (cpu_seconds(server_pid) - cpu0) / elapsed, 1
                    ),
                    "server_rss_mb": round(rss_mb(server_pid), 1),
                    **sampler.summary(),
                    "samples_ms": {
                        "mute": [round(1000 * s, 2) for s in figures.mute_s],
                        "ack": [round(1000 * s, 2) for s in figures.ack_s],
                        "unmute": [round(1000 * s, 2) for s in figures.unmute_s],
                    },
                    "breakout": breakout_result(breakouts),
                }
            )
    finally:
        await asyncio.gather(*(m.leave() for m in everyone if hasattr(m, "sio")))
    return result


def stats(samples: list[float]) -> dict[str, float | int | None]:
    if not samples:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None, "samples": 0}
    values = np.asarray(samples) * 1000
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
        "max_ms": round(float(values.max()), 2),
        "samples": len(samples),
    }


# ---- orchestration and output -------------------------------------------------------------


async def run_all(args: Any) -> dict[str, Any]:
    media = encode_media()
    report: dict[str, Any] = {**run_header(media), "quiet_s": args.quiet}
    IcePolicy(("127.0.0.1",), 2.0, 10.0).install()
    workdir = Path(tempfile.mkdtemp(prefix="control-latency-"))
    try:
        async with served(workdir, report) as server:
            report["result"] = await run_cycles(
                server.base_url, server.db, server.ceiling, server.process.pid, media, args
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return report


def print_report(report: dict[str, Any]) -> None:
    r = report["result"]
    print(
        f"\nControl latency: {r['participants']} participants (the therapist and "
        f"{r['participants'] - 1} patients), {r['cycles']} mute/unmute cycles, "
        f"{r['breakout_cycles']} breakout start/end cycles; server on core {SERVER_CORE}, "
        f"generator on core {GENERATOR_CORE}"
    )
    print(f"{'':<34} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    rows = [
        ("mute -> last audio at any receiver", r["mute_to_last_audio"]),
        ("mute ack", r["ack"]),
        ("unmute -> audio at every receiver", r["unmute_to_audio_everywhere"]),
    ]
    b = r["breakout"]
    rows += [
        ("start pairs -> re-routed + video", b["start_pairs_to_rerouted_and_video"]),
        ("  last packet from outside a pair", b["start_pairs_to_last_packet_from_outside_pair"]),
        ("  a frame from every partner", b["start_pairs_to_frame_from_every_partner"]),
        ("start pairs ack", b["start_pairs_ack"]),
        ("end pairs -> everyone's video", b["end_pairs_to_everyones_video"]),
        ("end pairs ack", b["end_pairs_ack"]),
    ]
    for label, s in rows:
        print(f"{label:<34} {fmt(s['p50_ms']):>8} {fmt(s['p99_ms']):>8} {fmt(s['max_ms']):>8}")
    after = r["audio_packets_after_ack"]
    print(
        f"\naudio packets arriving after the ack: {after['total']} in all, at most "
        f"{after['max_per_mute']} per mute; mutes with no packet after the send: "
        f"{r['mutes_with_no_packet_after_send']}"
    )
    cross = b["packets_from_outside_pair_after_ack"]
    print(
        f"breakouts ({r['breakout_cycles']}: 4 pairs and a trio each): packets from outside "
        f"a pair arriving after the ack: {cross['total']} in all, at most "
        f"{cross['max_per_start']} per start; starts with none after the send: "
        f"{b['starts_with_no_packet_from_outside_after_send']}"
    )
    print(
        f"server CPU {r['server_cpu_core_pct']:.0f}% of a core, RSS {r['server_rss_mb']:.0f} MB; "
        f"generator loop lag max {r['generator_loop_lag_ms']['max']:.0f} ms; server "
        f"runnable-but-waiting {r['runqueue_wait_ms']['server_total']:.0f} ms in all"
    )
    goals = (
        ("mute", r["mute_to_last_audio"]["p99_ms"], GOAL_MUTE_P99_MS),
        ("start pairs", b["start_pairs_to_rerouted_and_video"]["p99_ms"], GOAL_BREAKOUT_P99_MS),
    )
    for what, p99, goal in goals:
        verdict = "not measured" if p99 is None else "met" if p99 < goal else "NOT met"
        print(f"goal: {what} p99 < {goal:.0f} ms -> {verdict}")
    problems = report.get("server_log_problems") or []
    if problems:
        print(f"\nserver log: {len(problems)} warning/error lines (first shown)")
        for line in problems[:5]:
            print("  " + line[:200])


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=200, help="mute/unmute cycles")
    parser.add_argument(
        "--breakout-cycles", type=int, default=50, help="pair work start/end cycles"
    )
    parser.add_argument(
        "--gap", type=float, default=0.6, help="seconds of plenary after each breakout cycle"
    )
    parser.add_argument("--seed", type=int, default=1, help="of the pairs' shuffling")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument(
        "--quiet",
        type=float,
        default=0.25,
        help="seconds without the muted patient's audio anywhere that end a mute",
    )
    args = parser.parse_args()
    if args.cycles < 0 or args.breakout_cycles < 0 or args.cycles + args.breakout_cycles < 1:
        parser.error("--cycles and --breakout-cycles are counts, and one must be at least 1")
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > GENERATOR_CORE:
        os.sched_setaffinity(0, {GENERATOR_CORE})
    started = time.monotonic()
    try:
        report = asyncio.run(run_all(args))
    except Broken as exc:
        print(f"BROKEN: {exc}", file=sys.stderr)
        return 1
    write_report(report, started, RESULTS, print_report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
