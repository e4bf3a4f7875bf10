"""Control latency: from a facilitator's mute to the last audio packet the SFU forwards.

Run from the repository root::

    .venv/bin/python -m benchmarks.control_latency               # 200 mute/unmute cycles
    .venv/bin/python -m benchmarks.control_latency --cycles 40   # a quick run

(about a minute to set up, then roughly 0.4 s per cycle). Like ``benchmarks/sfu_bench.py``,
whose server, room, participant and sampling machinery it imports, it starts ``telecircle
serve`` as a subprocess pinned to core 0 and runs the load generator in this process on
core 1. Ten participants share one room: its therapist, who sends the controls, and nine
patients. Each patient comes in the way a patient does: the therapist makes a personal
invite on the room page, the patient opens and redeems it with its own cookies, fills
in the pre-join page, joins over socket.io, waits in the lobby and is admitted. Everyone
publishes sfu_bench's synthetic media (VP8 640x360 30 fps, Opus 20 ms frames) and
receives everyone else.

Each cycle mutes one patient (round robin): ``force_media {audio_off: true}`` from the
therapist. Figures:

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
on the wire). The issue's goal: mute p99 under 50 ms. Receipt times are taken in the
generator, so its own event-loop lateness (reported) adds to every figure.

Prints a table and writes ``benchmarks/results/control_latency.json``. Timings never
fail the run; it exits 1 only if something is broken (a refused command, a mute that
never silences, an unmute whose audio never comes back).

TODO (issue 5): breakout re-route latency ("start breakout" to all media re-routed and
every pair showing video), once breakout pairs exist.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import os
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiortc.rtp import RtpPacket
from yarl import URL

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
from benchmarks.synthetic import EncodedMedia, Ledger, Publication, encode_media, make_publication
from telecircle.domain.ids import RoomCode
from telecircle.media.ice_policy import IcePolicy
from telecircle.services.entry import PASS_COOKIE
from telecircle.storage import stores
from telecircle.storage.database import Database

RESULTS = ROOT / "benchmarks" / "results" / "control_latency.json"
PATIENTS = 9  # with the therapist, ten participants
GOAL_MUTE_P99_MS = 50.0
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


class Member(SioParticipant):
    """An sfu_bench participant that also notes each audio packet it receives, by owner,
    and whose media lasts ``lifetime`` seconds (the whole run)."""

    arrivals: AudioArrivals
    lifetime: float

    async def _publish_offer(self) -> Publication:
        stop_at = asyncio.get_running_loop().time() + self.lifetime
        self.publication = await make_publication(self.media, stop_at)
        return self.publication

    def _tap_subscribe(self) -> None:
        super()._tap_subscribe()  # sfu_bench's counting handler on every receiver
        for transceiver in self.subscribe_pc.getTransceivers():
            if transceiver.kind == "audio":
                self._note_audio(transceiver)

    def _note_audio(self, transceiver: Any) -> None:
        receiver = transceiver.receiver
        counted = receiver._handle_rtp_packet
        mid = str(transceiver.mid)
        owners, arrivals = self.owner_of_mid, self.arrivals

        async def handle(packet: RtpPacket, arrival_time_ms: int) -> None:
            owner = owners.get(mid)
            if owner is not None:
                arrivals.note(self.pid, owner, time.perf_counter())
            await counted(packet, arrival_time_ms)

        receiver._handle_rtp_packet = handle


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


async def run_cycles(
    base_url: str, db: Database, ceiling: int, server_pid: int, media: EncodedMedia, args: Any
) -> dict[str, Any]:
    # sfu_bench's room: its first sign-in is the therapist who owns the room; the
    # other seats are taken by patients, so the remaining clinicians stay away.
    room = await create_room(db, PATIENTS + 1, ceiling)
    cookies = await patient_cookies(base_url, db, room.code, room.cookies[0])
    arrivals = AudioArrivals()
    lifetime = 120.0 + 3.0 * args.cycles  # media outlives every bounded wait below
    ledger = Ledger()
    therapist = Member("therapist", media, ledger)
    patients = [Patient(f"patient-{n}", media, ledger) for n in range(PATIENTS)]
    everyone: list[Member] = [therapist, *patients]
    for member in everyone:
        member.arrivals, member.lifetime = arrivals, lifetime
    figures = Figures()
    result: dict[str, Any] = {"participants": len(everyone), "cycles": args.cycles}
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
        f"{r['participants'] - 1} patients), {r['cycles']} mute/unmute cycles; server on "
        f"core {SERVER_CORE}, generator on core {GENERATOR_CORE}"
    )
    print(f"{'':<34} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    rows = (
        ("mute -> last audio at any receiver", r["mute_to_last_audio"]),
        ("mute ack", r["ack"]),
        ("unmute -> audio at every receiver", r["unmute_to_audio_everywhere"]),
    )
    for label, s in rows:
        print(f"{label:<34} {fmt(s['p50_ms']):>8} {fmt(s['p99_ms']):>8} {fmt(s['max_ms']):>8}")
    after = r["audio_packets_after_ack"]
    p99 = r["mute_to_last_audio"]["p99_ms"]
    met = p99 is not None and p99 < GOAL_MUTE_P99_MS
    print(
        f"\naudio packets arriving after the ack: {after['total']} in all, at most "
        f"{after['max_per_mute']} per mute; mutes with no packet after the send: "
        f"{r['mutes_with_no_packet_after_send']}"
    )
    print(
        f"server CPU {r['server_cpu_core_pct']:.0f}% of a core, RSS {r['server_rss_mb']:.0f} MB; "
        f"generator loop lag max {r['generator_loop_lag_ms']['max']:.0f} ms; server "
        f"runnable-but-waiting {r['runqueue_wait_ms']['server_total']:.0f} ms in all"
    )
    print(f"goal: mute p99 < {GOAL_MUTE_P99_MS:.0f} ms -> {'met' if met else 'NOT met'}")
    problems = report.get("server_log_problems") or []
    if problems:
        print(f"\nserver log: {len(problems)} warning/error lines (first shown)")
        for line in problems[:5]:
            print("  " + line[:200])


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument(
        "--quiet",
        type=float,
        default=0.25,
        help="seconds without the muted patient's audio anywhere that end a mute",
    )
    args = parser.parse_args()
    if args.cycles < 1:
        parser.error("--cycles must be at least 1")
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
