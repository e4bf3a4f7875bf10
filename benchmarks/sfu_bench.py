"""SFU benchmark: CPU per forwarded packet, added delay and late-join time of the real server.

Run from the repository root::

    .venv/bin/python -m benchmarks.sfu_bench

(about 4 minutes: the SFU with N = 2, 3, 4, 6, 8, 10, MediaRelay with N = 2, 3, Janus with
N = 2, 4, 10; options ``--sizes 2,4``, ``--relay-sizes ''``, ``--janus-sizes ''``,
``--janus-rooms 1,2`` (R rooms of each Janus size at once), ``--warmup 3``, ``--window 8``).

It starts ``telecircle serve`` as a subprocess pinned to core 0 (``taskset -c 0``) and runs
the load generator in this process pinned to core 1. For each room size N, N synthetic
participants join one room over socket.io exactly like the webclient (join, publish,
subscribe, subscribe_answer; SDP sent with only the sha-256 fingerprint, as browsers do,
see ``synthetic.browser_like_sdp``), each publishing pre-encoded VP8 (640x360, 30 fps,
~500 kbit/s, keyframe every 2 s, a PLI restarts at a keyframe) and Opus (20 ms frames);
the N-th joins after the others are flowing and its join-to-first-packet times are taken.
The participants are the room's clinicians (they enter the session directly, no lobby):
before each size the benchmark writes the room, its clinicians and their sign-ins into the
server's database, as a therapist would set them up in the web UI, and each participant's
socket.io connection carries its sign-in cookie.
After a warm-up the window measures forwarded packets/s (all subscribers' received RTP
packets), the server's CPU (utime+stime from /proc), CPU µs per forwarded packet, RSS,
and the delay the server adds per packet (send stamp at the publisher vs. receipt, keyed
by the payload tail; on loopback this also includes both sides' SRTP and the generator's
own event-loop scheduling). Then the same load goes through aiortc's MediaRelay
(``benchmarks/relay_reference.py``: decode + re-encode) for comparison, and through Janus 1.1's
VideoRoom (``benchmarks/janus_reference.py``, the reference C SFU: needs root and
``scripts/setup --bench``, else skipped with the reason) with the ratio of Telecircle's CPU
per forwarded packet to Janus's.

Prints a table and writes ``benchmarks/results/sfu_bench.json``. Timings never fail the
run; it exits 1 only if something is broken (no server, no packets forwarded).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import aiortc
import numpy as np
import socketio
from aiortc import RTCSessionDescription

from benchmarks.synthetic import (
    EncodedMedia,
    FirstPackets,
    Ledger,
    PacketNote,
    Publication,
    browser_like_sdp,
    count_subscriber,
    encode_media,
    make_publication,
    new_pc,
    start_sending,
)
from telecircle.config import load_settings
from telecircle.crypto.tokens import new_secret, secret_hash
from telecircle.domain.access import Role
from telecircle.domain.ids import new_room_code
from telecircle.media.ice_policy import IcePolicy
from telecircle.services.entry import SESSION_COOKIE
from telecircle.storage import accounts_store, org_store, stores
from telecircle.storage.database import Database, open_database

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "sfu_bench.json"
BIN = Path(sys.executable).parent
SERVER_CORE, GENERATOR_CORE = 0, 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
CALL_TIMEOUT = 15.0
FLOW_TIMEOUT = 20.0
MEASUREMENT_TIMEOUT = 90.0  # hard bound on one measurement, set-up to teardown
MEDIA_LIFETIME = 80.0  # every replay track ends by itself after this many seconds
SIGN_IN_SECONDS = 3600.0  # the participants' sign-ins outlive any run


class Broken(Exception):
    """Something that is not a timing went wrong: the benchmark cannot report figures."""


# ---- processes and /proc -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pinned(command: list[str]) -> list[str]:
    taskset = shutil.which("taskset")
    return [taskset, "-c", str(SERVER_CORE), *command] if taskset else command


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def runqueue_wait_s(pid: int) -> float:
    """Seconds the process's main thread spent runnable but waiting for a CPU."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[1]) / 1e9


def udp_errors() -> dict[str, int]:
    """System-wide UDP counters: RcvbufErrors counts datagrams dropped on a full socket."""
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return {k: int(v) for k, v in zip(rows[0][1:], rows[1][1:], strict=True)}


class Sampler:
    """Samples, every ``step`` s: this loop's lateness and the server's CPU use."""

    def __init__(self, pid: int, step: float = 0.1) -> None:
        self.pid, self.step = pid, step
        self.lags: list[float] = []
        self.cpu_pct: list[float] = []
        self.server_wait_ms: list[float] = []
        self.own_wait_ms: list[float] = []

    async def run(self, duration: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + duration
        me = os.getpid()
        last_cpu, last_t = cpu_seconds(self.pid), loop.time()
        last_wait, last_own = runqueue_wait_s(self.pid), runqueue_wait_s(me)
        while loop.time() < end:
            expected = loop.time() + self.step
            await asyncio.sleep(self.step)
            now = loop.time()
            self.lags.append(now - expected)
            cpu, wait, own = cpu_seconds(self.pid), runqueue_wait_s(self.pid), runqueue_wait_s(me)
            self.cpu_pct.append(100 * (cpu - last_cpu) / max(1e-6, now - last_t))
            self.server_wait_ms.append(1000 * (wait - last_wait))
            self.own_wait_ms.append(1000 * (own - last_own))
            last_cpu, last_t, last_wait, last_own = cpu, now, wait, own

    def summary(self) -> dict[str, Any]:
        lags = np.asarray(self.lags or [0.0]) * 1000
        cpu = np.asarray(self.cpu_pct or [0.0])
        return {
            "generator_loop_lag_ms": {
                "p50": round(float(np.percentile(lags, 50)), 1),
                "max": round(float(lags.max()), 1),
            },
            "server_cpu_pct_per_100ms": {
                "max": round(float(cpu.max()), 1),
                "min": round(float(cpu.min()), 1),
            },
            # Time the main threads were runnable but not running (other processes'
            # load on the shared cores): total over the window and worst 100 ms.
            "runqueue_wait_ms": {
                "server_total": round(sum(self.server_wait_ms), 1),
                "server_worst_100ms": round(max(self.server_wait_ms or [0.0]), 1),
                "generator_total": round(sum(self.own_wait_ms), 1),
                "generator_worst_100ms": round(max(self.own_wait_ms or [0.0]), 1),
            },
        }


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise Broken(f"process exited with {process.returncode} before it was ready")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise Broken(f"{url} not healthy after {timeout} s")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def log_problems(path: Path) -> list[str]:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return [
        line
        for line in lines
        if " ERROR " in line or " WARNING " in line or "Traceback" in line or "CRITICAL" in line
    ]


# ---- participants ----------------------------------------------------------------------


@dataclass
class Participant:
    """One synthetic participant: a publish and a subscribe peer connection."""

    name: str
    media: EncodedMedia
    ledger: Ledger
    pid: str = ""
    publication: Publication | None = None
    subscribe_pc: Any = None
    owner_of_mid: dict[str, str] = field(default_factory=dict)
    first: FirstPackets = field(default_factory=FirstPackets)
    joined_at: float = 0.0
    negotiated_at: float = 0.0
    lifetime: float = MEDIA_LIFETIME  # its media ends by itself this many seconds after publishing

    async def _publish_offer(self) -> Publication:
        stop_at = asyncio.get_running_loop().time() + self.lifetime
        self.publication = await make_publication(self.media, stop_at)
        return self.publication

    def _tap_subscribe(self) -> None:
        """Count what the subscribe connection receives; call after its answer is set."""
        count_subscriber(
            self.subscribe_pc, self.owner_of_mid, self.ledger, self.first, self._also_note()
        )

    def _also_note(self) -> PacketNote | None:
        """What else sees each received packet (subclasses that watch more)."""
        return None

    async def close_pcs(self) -> None:
        if self.publication is not None:
            await self.publication.close()
        if self.subscribe_pc is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self.subscribe_pc.close()


class SioParticipant(Participant):
    """Talks to Telecircle over socket.io like the webclient."""

    sio: socketio.AsyncClient
    slot_mids: dict[int, tuple[str, str]]
    answer_chars: tuple[int, int] = (0, 0)  # subscribe answer: aiortc's, sent

    async def call(self, event: str, data: dict[str, Any]) -> Any:
        ack = await self.sio.call(event, data, timeout=CALL_TIMEOUT)
        if not isinstance(ack, dict) or not ack.get("ok"):
            raise Broken(f"{self.name}: {event} refused: {ack}")
        return ack.get("data")

    def _on_slots(self, data: dict[str, Any]) -> None:
        owners: dict[str, str] = {}
        for slot in data.get("slots", []):
            mids = self.slot_mids.get(slot["index"])
            if mids and slot["participant_id"]:
                owners[mids[0]] = owners[mids[1]] = slot["participant_id"]
        self.owner_of_mid.clear()
        self.owner_of_mid.update(owners)

    async def join(self, base_url: str, room_code: str, cookie: str) -> None:
        """Connect as the clinician ``cookie`` signs in, enter the room, negotiate."""
        self.slot_mids = {}
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sio.on("slots", self._on_slots)
        await self.sio.connect(
            base_url, transports=["websocket"], wait_timeout=10, headers={"Cookie": cookie}
        )
        joined = await self.call("join", {"room_code": room_code})
        self.joined_at = time.perf_counter()
        self.pid = joined["participant_id"]
        if joined.get("place") != "plenary":
            raise Broken(f"{self.name}: entered the {joined.get('place')}, not the session")
        publication = await self._publish_offer()
        offer_sdp = browser_like_sdp(publication.pc.localDescription.sdp)
        answer = await self.call("publish", {"sdp": offer_sdp})
        await publication.pc.setRemoteDescription(
            RTCSessionDescription(sdp=answer["sdp"], type="answer")
        )
        start_sending(publication, self.pid, self.ledger)
        offer = await self.call("subscribe", {})
        self.slot_mids = {s["index"]: (s["audio_mid"], s["video_mid"]) for s in offer["slots"]}
        self.subscribe_pc = new_pc()
        await self.subscribe_pc.setRemoteDescription(
            RTCSessionDescription(sdp=offer["sdp"], type="offer")
        )
        await self.subscribe_pc.setLocalDescription(await self.subscribe_pc.createAnswer())
        self._tap_subscribe()
        raw = self.subscribe_pc.localDescription.sdp
        self.answer_chars = (len(raw), len(browser_like_sdp(raw)))
        await self.call("subscribe_answer", {"sdp": browser_like_sdp(raw)})
        self.negotiated_at = time.perf_counter()

    async def leave(self) -> None:
        with contextlib.suppress(Exception):
            if self.sio.connected:
                await self.sio.call("leave", {}, timeout=5)
        await self.close_pcs()
        with contextlib.suppress(Exception):
            await self.sio.disconnect()


class RelayParticipant(Participant):
    """Talks to benchmarks/relay_reference.py over HTTP."""

    http: aiohttp.ClientSession
    base: str

    async def post(self, path: str, body: dict[str, Any]) -> Any:
        timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT)
        async with self.http.post(self.base + path, json=body, timeout=timeout) as response:
            if response.status != 200:
                raise Broken(f"{self.name}: {path} -> HTTP {response.status}")
            return await response.json()

    async def publish(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http, self.base, self.pid = http, base, self.name
        publication = await self._publish_offer()
        answer = await self.post(
            "/publish", {"id": self.pid, "sdp": publication.pc.localDescription.sdp}
        )
        await publication.pc.setRemoteDescription(
            RTCSessionDescription(sdp=answer["sdp"], type="answer")
        )
        start_sending(publication, self.pid, self.ledger)

    async def subscribe(self) -> None:
        offer = await self.post("/subscribe", {"id": self.pid})
        self.owner_of_mid.update(offer["owners"])
        self.subscribe_pc = new_pc()
        await self.subscribe_pc.setRemoteDescription(
            RTCSessionDescription(sdp=offer["sdp"], type="offer")
        )
        await self.subscribe_pc.setLocalDescription(await self.subscribe_pc.createAnswer())
        self._tap_subscribe()
        await self.post("/answer", {"id": self.pid, "sdp": self.subscribe_pc.localDescription.sdp})


async def wait_flowing(participants: list[Participant], timeout: float) -> bool:
    """True once every participant has received packets from every other one."""
    pids = {p.pid for p in participants}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(p.first.from_owners >= pids - {p.pid} for p in participants):
            return True
        await asyncio.sleep(0.1)
    return False


# ---- one measurement ------------------------------------------------------------------


def percentiles(samples: list[float]) -> dict[str, float | None]:
    if not samples:
        return {"p50_ms": None, "p99_ms": None, "samples": 0}
    values = np.asarray(samples) * 1000
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 2),
        "p99_ms": round(float(np.percentile(values, 99)), 2),
        "samples": len(samples),
    }


async def measure(
    server_pid: int, ledger: Ledger, n: int, warmup: float, window: float
) -> dict[str, Any]:
    await asyncio.sleep(warmup)
    sent0, received0 = dict(ledger.sent), dict(ledger.received)
    frames0 = ledger.video_frames
    for samples in ledger.delays.values():
        samples.clear()
    sampler = Sampler(server_pid)
    udp0 = udp_errors()
    cpu0, gen0, t0 = cpu_seconds(server_pid), own_cpu_seconds(), time.perf_counter()
    ledger.measuring = True
    await sampler.run(window)
    ledger.measuring = False
    cpu1, gen1, t1 = cpu_seconds(server_pid), own_cpu_seconds(), time.perf_counter()
    udp1 = udp_errors()
    elapsed = t1 - t0
    received = {k: ledger.received[k] - received0[k] for k in received0}
    sent = {k: ledger.sent[k] - sent0[k] for k in sent0}
    total = sum(received.values())
    expected = sum(sent.values()) * (n - 1)
    cpu = cpu1 - cpu0
    return {
        "window_s": round(elapsed, 2),
        "forwarded_pps": round(total / elapsed, 1),
        "forwarded_pps_by_kind": {k: round(v / elapsed, 1) for k, v in received.items()},
        "published_pps": round(sum(sent.values()) / elapsed, 1),
        "delivered_ratio": round(total / expected, 3) if expected else None,
        "video_fps_per_stream": round(
            (ledger.video_frames - frames0) / elapsed / max(1, n * (n - 1)), 1
        ),
        "server_cpu_s": round(cpu, 3),
        "server_cpu_core_pct": round(100 * cpu / elapsed, 1),
        "server_cpu_us_per_packet": round(1e6 * cpu / total, 1) if total else None,
        "server_rss_mb": round(rss_mb(server_pid), 1),
        "generator_cpu_core_pct": round(100 * (gen1 - gen0) / elapsed, 1),
        "added_delay": {k: percentiles(v) for k, v in ledger.delays.items()},
        "unmatched_stamps": dict(ledger.unmatched),
        "udp_rcvbuf_errors_systemwide": udp1["RcvbufErrors"] - udp0["RcvbufErrors"],
        **sampler.summary(),
        "received_packets": total,
    }


async def run_sfu(
    n: int, base_url: str, room: BenchRoom, server_pid: int, media: EncodedMedia, args: Any
) -> dict[str, Any]:
    ledger = Ledger()
    people = [SioParticipant(f"bench-{i}", media, ledger) for i in range(n)]
    early, late = people[:-1], people[-1]
    result: dict[str, Any] = {"n": n}
    try:
        async with asyncio.timeout(MEASUREMENT_TIMEOUT):
            seats = zip(early, room.cookies[: len(early)], strict=True)
            await asyncio.gather(*(p.join(base_url, room.code, cookie) for p, cookie in seats))
            result["early_flowing"] = await wait_flowing(early, FLOW_TIMEOUT)
            await asyncio.sleep(1.0)
            await late.join(base_url, room.code, room.cookies[-1])
            others = {p.pid for p in early}
            deadline = time.monotonic() + FLOW_TIMEOUT
            while time.monotonic() < deadline and not late.first.keyframe_by_owner.keys() >= others:
                await asyncio.sleep(0.01)
            first = late.first
            all_keys = (
                max(first.keyframe_by_owner.values())
                if first.keyframe_by_owner.keys() >= others
                else None
            )
            result["late_join"] = {
                "signalling_done_ms": round(1000 * (late.negotiated_at - late.joined_at), 1),
                "first_packet_ms": (
                    round(1000 * (first.any - late.joined_at), 1) if first.any else None
                ),
                "first_keyframe_ms": (
                    round(1000 * (first.keyframe - late.joined_at), 1) if first.keyframe else None
                ),
                "subscribe_answer_chars": {
                    "aiortc": late.answer_chars[0],
                    "sent_sha256_only": late.answer_chars[1],
                },
                "keyframes_from_all_ms": (
                    round(1000 * (all_keys - late.joined_at), 1) if all_keys else None
                ),
            }
            result["late_join"]["keyframe_requests_to_early_ms"] = [
                [
                    round(1000 * (t - late.joined_at))
                    for t in p.publication.video.request_times
                    if late.joined_at <= t <= late.joined_at + 3
                ]
                for p in early
                if p.publication
            ]
            result["all_flowing"] = await wait_flowing(people, FLOW_TIMEOUT)
            result.update(await measure(server_pid, ledger, n, args.warmup, args.window))
            result["keyframe_requests_answered"] = sum(
                p.publication.video.keyframe_requests for p in people if p.publication
            )
    finally:
        await asyncio.gather(*(p.leave() for p in people if hasattr(p, "sio")))
    return result


async def run_relay(n: int, media: EncodedMedia, args: Any, workdir: Path) -> dict[str, Any]:
    port = free_port()
    log_path = workdir / f"relay-{n}.log"
    command = [sys.executable, "-m", "benchmarks.relay_reference", "--port", str(port)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(pinned(command), cwd=ROOT, stdout=log, stderr=log)
    ledger = Ledger()
    people = [RelayParticipant(f"relay-{i}", media, ledger) for i in range(n)]
    result: dict[str, Any] = {"n": n}
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_healthy(base + "/healthz", process)
        result["idle_rss_mb"] = round(rss_mb(process.pid), 1)
        async with aiohttp.ClientSession() as http, asyncio.timeout(MEASUREMENT_TIMEOUT):
            try:
                await asyncio.gather(*(p.publish(http, base) for p in people))
                await asyncio.gather(*(p.subscribe() for p in people))
                result["all_flowing"] = await wait_flowing(people, FLOW_TIMEOUT)
                result.update(await measure(process.pid, ledger, n, args.warmup, args.window))
            finally:
                await asyncio.gather(*(p.close_pcs() for p in people))
    finally:
        stop_process(process)
        result["log_problems"] = log_problems(log_path)[:20]
    return result


# ---- orchestration ----------------------------------------------------------------------


@dataclass(frozen=True)
class BenchRoom:
    code: str
    cookies: list[str]  # one Cookie header per participant, in joining order


async def open_server_database(data_dir: Path) -> tuple[Database, int]:
    """The running server's database (migrated by the server at start-up), with the
    organisation's maximum per room raised to the server's ceiling, as an administrator
    would; returns the database and that ceiling."""
    settings = load_settings(data_dir=data_dir)
    db = await open_database(settings.effective_database_url)
    defaults = await org_store.get_org_settings(
        db, default_max_participants=settings.default_room_limit
    )
    ceiling = settings.room_limit_ceiling
    raised = org_store.OrgSettings(
        max_participants=ceiling,
        require_totp=False,
        recording_consent_required=False,
        notes_retention_days=defaults.notes_retention_days,
    )
    await org_store.save_org_settings(db, raised, time.time())
    return db, ceiling


async def create_room(db: Database, n: int, ceiling: int) -> BenchRoom:
    """A room for ``n`` whose clinicians (a therapist who owns it, the rest
    co-facilitators) are the ``n`` participants, each signed in."""
    if not 2 <= n <= ceiling:
        raise Broken(f"room size {n} is outside 2..{ceiling} (TELECIRCLE_ROOM_LIMIT_CEILING)")
    room = await stores.create_room(db, f"bench-{n}", n, new_room_code())
    now = time.time()
    cookies = []
    for i in range(n):
        user = await accounts_store.create_user(
            db,
            username=f"bench{n}x{i}x{secrets.token_hex(4)}",
            display_name=f"bench-{i}",
            role=Role.THERAPIST if i == 0 else Role.CO_FACILITATOR,
            now=now,
        )
        await org_store.assign_clinician(
            db, room.id, user.id, "owner" if i == 0 else "co_facilitator"
        )
        secret = new_secret()
        await accounts_store.create_login_session(
            db,
            session_id=secret_hash(secret),
            user_id=user.id,
            csrf_token=new_secret(),
            second_factor_pending=False,
            now=now,
            expires_at=now + SIGN_IN_SECONDS,
        )
        cookies.append(f"{SESSION_COOKIE}={secret}")
    return BenchRoom(room.code, cookies)


def write_report(
    report: dict[str, Any],
    started: float,
    results: Path,
    print_report: Callable[[dict[str, Any]], None],
) -> None:
    """Finish ``report`` (run time, load at the end), print it, write it as JSON."""
    report["total_runtime_s"] = round(time.monotonic() - started, 1)
    report["machine"]["loadavg_at_end"] = os.getloadavg()
    print_report(report)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {results.relative_to(ROOT)} in {report['total_runtime_s']} s")


def run_header(media: EncodedMedia) -> dict[str, Any]:
    """What every benchmark report starts with: the machine and the synthetic media."""
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "aiortc": aiortc.__version__,
            "pinning": bool(shutil.which("taskset")),
            "loadavg_at_start": os.getloadavg(),
        },
        "media": {
            "video": "VP8 640x360 30 fps, keyframe every 2 s, looped 4 s",
            "video_kbps": round(media.video_kbps),
            "audio": "Opus mono 20 ms frames",
            "audio_kbps": round(media.audio_kbps),
        },
    }


@dataclass
class Served:
    """A Telecircle server process pinned to its core, and its database."""

    base_url: str
    process: subprocess.Popen[bytes]
    db: Database
    ceiling: int


@contextlib.asynccontextmanager
async def served(workdir: Path, report: dict[str, Any]) -> AsyncIterator[Served]:
    """Run ``telecircle serve`` (pinned) with its data in ``workdir`` until the block
    ends; then stop it and put its log's warnings and errors in ``report``."""
    data_dir = workdir / "data"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    command = [str(BIN / "telecircle"), "--data-dir", str(data_dir), "serve"]
    log_path = workdir / "server.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            pinned([*command, "--port", str(port)]), cwd=ROOT, stdout=log, stderr=log
        )
    db: Database | None = None
    try:
        await wait_healthy(base_url + "/healthz", server)
        db, ceiling = await open_server_database(data_dir)
        yield Served(base_url, server, db, ceiling)
    finally:
        if db is not None:
            await db.close()
        stop_process(server)
        report["server_log_problems"] = log_problems(log_path)[:40]


async def run_all(args: Any) -> dict[str, Any]:
    media = encode_media()
    report: dict[str, Any] = {
        **run_header(media),
        "warmup_s": args.warmup,
        "window_s": args.window,
        "sfu": [],
        "relay": [],
    }
    IcePolicy(("127.0.0.1",), 2.0, 10.0).install()
    workdir = Path(tempfile.mkdtemp(prefix="sfu-bench-"))
    try:
        async with served(workdir, report) as server:
            report["server_idle_rss_mb"] = round(rss_mb(server.process.pid), 1)
            for n in args.sizes:
                room = await create_room(server.db, n, server.ceiling)
                result = await run_sfu(n, server.base_url, room, server.process.pid, media, args)
                print_sfu_row(result)
                report["sfu"].append(result)
                await asyncio.sleep(1.0)  # let the room close before the next one
        for i, n in enumerate(args.relay_sizes):
            if i == 0:
                print(RELAY_HEADER, flush=True)
            result = await run_relay(n, media, args, workdir)
            print_relay_row(result, report["sfu"])
            report["relay"].append(result)
        if args.janus_sizes and args.janus_rooms:
            from benchmarks.janus_reference import janus_section  # it imports this module

            report["janus"] = await janus_section(
                report["sfu"], args.janus_sizes, args.janus_rooms, args
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return report


# ---- output ----------------------------------------------------------------------------


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


SFU_HEADER = (
    f"{'N':>3} {'fwd pkt/s':>9} {'deliv':>6} {'fps':>5} {'srv CPU':>8} {'µs/pkt':>7} "
    f"{'RSS MB':>7} {'audio p50/p99 ms':>17} {'video p50/p99 ms':>17} "
    f"{'late: 1st pkt':>13} {'1st key':>8} {'all keys':>8} {'gen CPU':>8} {'gen lag':>8} "
    f"{'srv wait':>9}"
)


def print_sfu_row(r: dict[str, Any]) -> None:
    if "forwarded_pps" not in r:
        print(f"{r['n']:>3} (no measurement) {r}")
        return
    a, v = r["added_delay"]["audio"], r["added_delay"]["video"]
    late = r["late_join"]
    lates = [
        fmt(late[key], 0) + " ms"
        for key in ("first_packet_ms", "first_keyframe_ms", "keyframes_from_all_ms")
    ]
    print(
        f"{r['n']:>3} {r['forwarded_pps']:>9.0f} {r['delivered_ratio'] or 0:>6.1%} "
        f"{r['video_fps_per_stream']:>5.1f} {r['server_cpu_core_pct']:>7.1f}% "
        f"{fmt(r['server_cpu_us_per_packet']):>7} {r['server_rss_mb']:>7.1f} "
        f"{fmt(a['p50_ms']) + ' / ' + fmt(a['p99_ms']):>17} "
        f"{fmt(v['p50_ms']) + ' / ' + fmt(v['p99_ms']):>17} "
        f"{lates[0]:>13} {lates[1]:>8} {lates[2]:>8} {r['generator_cpu_core_pct']:>7.1f}% "
        f"{r['generator_loop_lag_ms']['max']:>5.0f} ms "
        f"{r['runqueue_wait_ms']['server_total']:>6.0f} ms",
        flush=True,
    )


RELAY_HEADER = (
    f"{'N':>3} {'fwd pkt/s':>9} {'deliv':>6} {'fps':>5} {'srv CPU':>8} {'µs/pkt':>7} "
    f"{'RSS MB':>7} {'vs SFU µs/pkt':>14} {'gen CPU':>8}"
)


def print_relay_row(r: dict[str, Any], sfu: list[dict[str, Any]]) -> None:
    if "forwarded_pps" not in r:
        print(f"{r['n']:>3} (no measurement) {r}")
        return
    same = next((s for s in sfu if s["n"] == r["n"] and s.get("server_cpu_us_per_packet")), None)
    ratio = (
        f"{r['server_cpu_us_per_packet'] / same['server_cpu_us_per_packet']:.1f}x"
        if same and r.get("server_cpu_us_per_packet")
        else "-"
    )
    print(
        f"{r['n']:>3} {r['forwarded_pps']:>9.0f} {r['delivered_ratio'] or 0:>6.1%} "
        f"{r['video_fps_per_stream']:>5.1f} {r['server_cpu_core_pct']:>7.1f}% "
        f"{fmt(r['server_cpu_us_per_packet']):>7} {r['server_rss_mb']:>7.1f} {ratio:>14} "
        f"{r['generator_cpu_core_pct']:>7.1f}%",
        flush=True,
    )


def print_report(report: dict[str, Any]) -> None:
    print()
    print(
        f"Telecircle SFU (encoded forwarding), server on core {SERVER_CORE}, generator on core "
        f"{GENERATOR_CORE}; {report['window_s']} s windows; media {report['media']['video_kbps']} "
        f"+ {report['media']['audio_kbps']} kbit/s per publisher"
    )
    print(SFU_HEADER)
    for r in report["sfu"]:
        print_sfu_row(r)
    if report["relay"]:
        print("\naiortc MediaRelay reference (decode + re-encode per subscriber)")
        print(RELAY_HEADER)
        for r in report["relay"]:
            print_relay_row(r, report["sfu"])
    if report.get("janus"):
        from benchmarks.janus_reference import print_section

        print_section(report["janus"])
    print(
        "\nfwd pkt/s: RTP packets received by all subscribers; deliv: received / (published x "
        "(N-1)); fps: video frames/s per received stream; added delay includes both sides' "
        "SRTP and the generator's scheduling; late: the N-th joiner, from its join ack (1st "
        "packet, 1st keyframe, keyframes from all others); gen lag: the generator's worst "
        "event-loop lateness in the window (a spike there explains a delay p99 spike); srv "
        "wait: time the server's main thread was runnable but waiting for a CPU (other "
        "processes on the shared machine)."
    )
    problems = report.get("server_log_problems") or []
    if problems:
        print(f"\nserver log: {len(problems)} warning/error lines (first shown)")
        for line in problems[:5]:
            print("  " + line[:200])


def broken_reasons(report: dict[str, Any]) -> list[str]:
    reasons = []
    for kind in ("sfu", "relay"):
        for r in report[kind]:
            if not r.get("received_packets"):
                reasons.append(f"{kind} N={r['n']}: no packets received")
    return reasons


def parse_sizes(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=parse_sizes, default=[2, 3, 4, 6, 8, 10])
    parser.add_argument("--relay-sizes", type=parse_sizes, default=[2, 3])
    parser.add_argument("--janus-sizes", type=parse_sizes, default=[2, 4, 10])
    parser.add_argument("--janus-rooms", type=parse_sizes, default=[1])
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--window", type=float, default=8.0)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > GENERATOR_CORE:
        os.sched_setaffinity(0, {GENERATOR_CORE})
    started = time.monotonic()
    print(SFU_HEADER, flush=True)
    try:
        report = asyncio.run(run_all(args))
    except Broken as exc:
        print(f"BROKEN: {exc}", file=sys.stderr)
        return 1
    write_report(report, started, RESULTS, print_report)
    reasons = broken_reasons(report)
    for reason in reasons:
        print(f"BROKEN: {reason}", file=sys.stderr)
    return 1 if reasons else 0


if __name__ == "__main__":
    raise SystemExit(main())
