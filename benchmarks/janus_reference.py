"""Reference C SFU for the SFU benchmark: Janus 1.1 (VideoRoom) on the same synthetic load.

Not part of Telecircle. Needs root (``ip netns``) and Debian's ``janus`` (``scripts/setup
--bench``). Run from the repository root::

    .venv/bin/python -m benchmarks.janus_reference --sizes 2,4,10 --rooms 1

(``--rooms 1,2,3`` runs R rooms of each size at once, aggregate figures, until two R in a
row are past sfu_load's quality bounds, as sfu_load; ``--warmup``, ``--window`` as in
``sfu_bench``; writes ``benchmarks/results/janus_reference.json`` or ``--json OUT``).
``benchmarks/sfu_bench.py`` runs it for its Janus section (:func:`janus_section`).

Janus never gathers ICE candidates on loopback interfaces, whatever its enforce list says,
so the run creates a network namespace (``tcbench``) holding a veth pair, one end with
198.18.0.1/24 (RFC 2544 benchmarking range) and no route out, and re-runs this module
inside it (``ip netns exec tcbench python -m benchmarks.janus_reference --inside ...``):
all traffic stays in the namespace. Inside, Janus runs from a temporary config (only the
VideoRoom plugin and the HTTP transport on 127.0.0.1, ICE enforced on the veth) pinned to
core 0 with ``taskset``; the generator, pinned to core 1, is ``sfu_bench``'s (raw RTP): each
synthetic participant publishes pre-encoded VP8 + Opus on one peer connection and subscribes
to every other publisher of its room on one multistream peer connection, and
``sfu_bench.measure`` takes the same figures from Janus's /proc entries (its CPU covers all
its threads). The machine is shared: each run also says how much of both cores other
processes used, and who dropped datagrams on full sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiortc import RTCSessionDescription

from benchmarks.sfu_bench import (
    CALL_TIMEOUT,
    CLK_TCK,
    FLOW_TIMEOUT,
    GENERATOR_CORE,
    MEASUREMENT_TIMEOUT,
    ROOT,
    SERVER_CORE,
    Broken,
    Participant,
    cpu_seconds,
    measure,
    own_cpu_seconds,
    parse_sizes,
    pinned,
    rss_mb,
    run_header,
    stop_process,
    wait_flowing,
    wait_healthy,
)
from benchmarks.sfu_load import QUALITY_LOSS, QUALITY_P99_MS, within_bounds
from benchmarks.synthetic import (
    EncodedMedia,
    Ledger,
    browser_like_sdp,
    encode_media,
    new_pc,
    start_sending,
)
from telecircle.media.ice_policy import IcePolicy

MODULE = "benchmarks.janus_reference"
RESULTS = ROOT / "benchmarks" / "results" / "janus_reference.json"
JANUS = Path("/usr/bin/janus")
JANUS_LIB = next(Path("/usr/lib").glob("*/janus/plugins"), Path("/usr/lib/janus/plugins")).parent
NAMESPACE = "tcbench"
VETH, VETH_PEER = "tcb0", "tcb1"  # both ends inside the namespace: carrier up, no way out
ADDRESS = "198.18.0.1"
API = "http://127.0.0.1:8088/janus"
POLL_SECONDS = 30  # Janus answers a long poll after at most 30 s (a keepalive)
POLL_ERRORS = 5  # consecutive failed long polls end the poller: Janus is gone
# Beyond the quality bounds (sfu_load's), these say who was the limit.
SATURATION = {"generator_cpu_pct": 90.0, "other_load_pct": 10.0}


# ---- the namespace (root side) --------------------------------------------------------


def ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if check and done.returncode != 0:
        raise Broken(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def namespace_pids() -> list[int]:
    return [int(p) for p in ip("netns", "pids", NAMESPACE, check=False).split()]


def delete_namespace() -> None:
    """Remove the namespace and its veth; a process of ours left in it is killed first
    (the namespace is this run's: only this run starts processes in it)."""
    if NAMESPACE not in ip("netns", "list").split():
        return
    for pid in namespace_pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    ip("-n", NAMESPACE, "link", "del", VETH, check=False)
    ip("netns", "del", NAMESPACE)


@contextlib.contextmanager
def namespace() -> Iterator[None]:
    """The benchmark's namespace for the block; a stale one from a crashed run (no process
    in it) is removed first, a live one is another run's and stops this one."""
    if NAMESPACE in ip("netns", "list").split():
        if namespace_pids():
            raise Broken(f"namespace {NAMESPACE} is in use (another Janus benchmark is running)")
        delete_namespace()
    try:
        ip("netns", "add", NAMESPACE)
        veth = ("type", "veth", "peer", "name", VETH_PEER, "netns", NAMESPACE)
        ip("link", "add", VETH, "netns", NAMESPACE, *veth)
        ip("-n", NAMESPACE, "addr", "add", f"{ADDRESS}/24", "dev", VETH)
        for link in ("lo", VETH, VETH_PEER):
            ip("-n", NAMESPACE, "link", "set", link, "up")
        yield
    finally:
        delete_namespace()


def unavailable_reason() -> str | None:
    """Why Janus cannot be measured here, or None."""
    if not JANUS.exists():
        return "janus is not installed: run scripts/setup --bench"
    if os.geteuid() != 0:
        return "the Janus reference needs root (it creates a network namespace with ip netns)"
    if not shutil.which("ip"):
        return "the Janus reference needs iproute2 (ip netns)"
    return None


async def run_janus(sizes: list[int], rooms: list[int], args: Any) -> dict[str, Any]:
    """Measure Janus on ``rooms`` x ``sizes`` (R rooms of N at once) inside the namespace;
    ``args`` gives ``warmup`` and ``window``. Returns the inside run's report."""
    reason = unavailable_reason()
    if reason:
        raise Broken(reason)
    bound = 60 + len(sizes) * sum(measurement_bound(r) + 10 for r in rooms)
    with tempfile.TemporaryDirectory(prefix="janus-bench-") as tmp, namespace():
        out = Path(tmp) / "inside.json"
        command = [
            *("ip", "netns", "exec", NAMESPACE, sys.executable, "-m", MODULE),
            *("--inside", "--json", str(out), "--warmup", str(args.warmup)),
            *("--window", str(args.window), "--sizes", ",".join(map(str, sizes))),
            *("--rooms", ",".join(map(str, rooms))),
        ]
        process = await asyncio.create_subprocess_exec(*command, cwd=ROOT)
        try:
            async with asyncio.timeout(bound):
                await process.wait()
        finally:
            # Timeout or cancelled: the run inside stops Janus itself. A terminal's Ctrl-C
            # reached it too (same process group): give it a moment before a SIGINT of
            # ours, as a second one would interrupt its clean-up.
            for stop in (None, signal.SIGINT, signal.SIGKILL):
                if process.returncode is not None:
                    break
                if stop is not None:
                    process.send_signal(stop)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5 if stop is None else 25):
                        await process.wait()
        if not out.exists():
            raise Broken(f"the run inside the namespace exited with {process.returncode}")
        report: dict[str, Any] = json.loads(out.read_text())
        return report


# ---- Janus (inside the namespace) -------------------------------------------------------


def write_config(folder: Path) -> Path:
    """A config folder loading only the VideoRoom plugin and the HTTP transport."""
    for kind, name in (("plugins", "libjanus_videoroom.so"), ("transports", "libjanus_http.so")):
        (folder / kind).mkdir()
        (folder / kind / name).symlink_to(JANUS_LIB / kind / name)
    (folder / "none").mkdir()  # no loggers, no event handlers
    (folder / "janus.jcfg").write_text(
        f"""general: {{
    configs_folder = "{folder}"
    plugins_folder = "{folder}/plugins"
    transports_folder = "{folder}/transports"
    events_folder = "{folder}/none"
    loggers_folder = "{folder}/none"
    interface = "{ADDRESS}"
    debug_level = 4
    debug_timestamps = true
}}
media: {{
    rtp_port_range = "20000-40000"
}}
nat: {{
    ice_enforce_list = "{VETH}"
}}
events: {{
    broadcast = false
}}
"""
    )
    (folder / "janus.transport.http.jcfg").write_text(
        """general: {
    json = "plain"
    base_path = "/janus"
    http = true
    port = 8088
    ip = "127.0.0.1"
    https = false
}
admin: {
    admin_http = false
    admin_https = false
}
"""
    )
    (folder / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n")
    return folder / "janus.jcfg"


def socket_inodes(pid: int) -> set[str]:
    inodes = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
    return inodes


def udp_sockets() -> dict[str, tuple[int, int]]:
    """This namespace's UDP sockets by inode: (bytes in the receive queue, drops)."""
    with open("/proc/net/udp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return {row[9]: (int(row[4].split(":")[1], 16), int(row[-1])) for row in rows}


def udp_drops(pid: int) -> dict[str, int]:
    """Per UDP socket of ``pid`` (by inode), datagrams dropped on its full receive buffer:
    tells a slow Janus from a slow generator."""
    inodes = socket_inodes(pid)
    return {inode: drops for inode, (_, drops) in udp_sockets().items() if inode in inodes}


def drops_since(before: dict[str, int], pid: int) -> int:
    """Drops since ``before`` on the sockets open now (a socket closed meanwhile is gone)."""
    return sum(max(0, d - before.get(inode, 0)) for inode, d in udp_drops(pid).items())


class QueueSampler:
    """Bytes waiting in Janus's and in the generator's UDP receive queues, every 50 ms: a
    queue that grows says who is behind when the added delay grows."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.inodes = {who: socket_inodes(pid) for who, pid in pids.items()}
        self.samples: dict[str, list[int]] = {who: [] for who in pids}

    async def run(self, duration: float) -> None:
        for _ in range(int(duration / 0.05)):
            sockets = udp_sockets()
            for who, inodes in self.inodes.items():
                queued = (sockets[i][0] for i in inodes if i in sockets)
                self.samples[who].append(sum(queued))
            await asyncio.sleep(0.05)

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            who: {
                "p50": round(float(np.percentile(kb, 50)) / 1024, 1),
                "p99": round(float(np.percentile(kb, 99)) / 1024, 1),
                "max": round(max(kb) / 1024, 1),
            }
            for who, kb in self.samples.items()
            if kb
        }


def core_busy_s(core: int) -> float:
    """Seconds ``core`` was busy or taken by the hypervisor (/proc/stat: all but idle and
    iowait; a process's own CPU time includes the softirq work done in its context)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{core} "):
                ticks = [int(v) for v in line.split()[1:9]]
                return (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK
    return 0.0


class OtherLoad:
    """How much of Janus's and the generator's cores other processes took: this machine is
    shared, and a run whose generator lost its core says nothing about Janus."""

    def __init__(self, janus_pid: int) -> None:
        self.janus_pid = janus_pid
        self.start = self._sample()

    def _sample(self) -> tuple[float, ...]:
        return (
            time.perf_counter(),
            core_busy_s(SERVER_CORE) - cpu_seconds(self.janus_pid),
            core_busy_s(GENERATOR_CORE) - own_cpu_seconds(),
        )

    def pct(self) -> dict[str, float]:
        t1, janus1, gen1 = self._sample()
        t0, janus0, gen0 = self.start
        elapsed = max(1e-6, t1 - t0)
        return {
            "janus_core": round(100 * (janus1 - janus0) / elapsed, 1),
            "generator_core": round(100 * (gen1 - gen0) / elapsed, 1),
        }


def janus_problems(path: Path) -> list[str]:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return [line for line in lines if "[ERR]" in line or "[WARN]" in line]


class JanusSession:
    """One Janus API session over HTTP; one long poll delivers every handle's events and
    keeps the session alive (Janus drops a session idle for 60 s)."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.id = 0
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.hangups: list[str] = []
        self.up: dict[int, asyncio.Event] = {}  # per handle: its PeerConnection is up
        self.poller: asyncio.Task[None] | None = None

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "transaction": body.get("transaction") or uuid.uuid4().hex}
        timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT)
        async with self.http.post(API + path, json=body, timeout=timeout) as response:
            reply: dict[str, Any] = await response.json(content_type=None)
        if reply.get("janus") == "error":
            raise Broken(f"Janus {body.get('janus')} {path}: {reply.get('error')}")
        return reply

    async def start(self) -> None:
        self.id = (await self.post("", {"janus": "create"}))["data"]["id"]
        self.poller = asyncio.create_task(self._poll())

    async def attach(self) -> int:
        reply = await self.post(
            f"/{self.id}", {"janus": "attach", "plugin": "janus.plugin.videoroom"}
        )
        return int(reply["data"]["id"])

    async def message(
        self, handle: int, body: dict[str, Any], jsep: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """A VideoRoom request; an asynchronous one's event comes from the long poll."""
        transaction = uuid.uuid4().hex
        future = asyncio.get_running_loop().create_future()
        self.pending[transaction] = future
        try:
            request = {"janus": "message", "body": body, "transaction": transaction}
            reply = await self.post(
                f"/{self.id}/{handle}", request | ({"jsep": jsep} if jsep else {})
            )
            if reply.get("janus") == "ack":
                async with asyncio.timeout(CALL_TIMEOUT):
                    reply = await future
        finally:
            self.pending.pop(transaction, None)
        data = reply.get("plugindata", {}).get("data", {})
        if "error" in data:
            raise Broken(f"VideoRoom {body.get('request')}: {data['error']}")
        return reply

    async def _poll(self) -> None:
        errors = 0
        timeout = aiohttp.ClientTimeout(total=POLL_SECONDS + 10)
        while errors < POLL_ERRORS:
            try:
                url = f"{API}/{self.id}?maxev=50&rid={time.time_ns()}"
                async with self.http.get(url, timeout=timeout) as response:
                    events = await response.json(content_type=None)
                errors = 0
            except (aiohttp.ClientError, TimeoutError, ValueError):
                errors += 1
                await asyncio.sleep(0.5)
                continue
            for event in events if isinstance(events, list) else [events]:
                future = self.pending.get(str(event.get("transaction")))
                if future is not None and not future.done() and event.get("janus") == "event":
                    future.set_result(event)
                elif event.get("janus") == "webrtcup":
                    self.up.setdefault(int(event.get("sender", 0)), asyncio.Event()).set()
                elif event.get("janus") == "hangup" and len(self.hangups) < 100:
                    self.hangups.append(f"{event.get('sender')}: {event.get('reason')}")

    async def detach(self, handle: int) -> None:
        """Free a handle now: by default Janus runs a thread per handle."""
        self.up.pop(handle, None)
        with contextlib.suppress(Exception):
            await self.post(f"/{self.id}/{handle}", {"janus": "detach"})

    async def wait_up(self, handle: int) -> None:
        """Until ``handle``'s PeerConnection is up (ICE and DTLS done)."""
        async with asyncio.timeout(FLOW_TIMEOUT):
            await self.up.setdefault(handle, asyncio.Event()).wait()

    async def close(self) -> None:
        if self.poller is not None:
            self.poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.poller
        with contextlib.suppress(Exception):
            await self.post(f"/{self.id}", {"janus": "destroy"})


class JanusParticipant(Participant):
    """Publishes to and subscribes from a Janus VideoRoom."""

    feed: int = 0
    handles: tuple[int, ...] = ()

    async def publish(self, janus: JanusSession, room: int) -> None:
        self.pid = self.name
        handle = await janus.attach()
        self.handles += (handle,)
        join = {"request": "join", "ptype": "publisher", "room": room, "display": self.name}
        joined = await janus.message(handle, join)
        self.feed = int(joined["plugindata"]["data"]["id"])
        publication = await self._publish_offer()
        # aiortc puts all its candidates in the SDP: no trickle. Only the sha-256
        # fingerprint, as browsers send it (Janus warns about aiortc's others).
        sdp = browser_like_sdp(publication.pc.localDescription.sdp)
        offer = {"type": "offer", "sdp": sdp, "trickle": False}
        configure = {"request": "configure", "audio": True, "video": True}
        answer = (await janus.message(handle, configure, offer))["jsep"]
        await publication.pc.setRemoteDescription(
            RTCSessionDescription(sdp=answer["sdp"], type="answer")
        )
        start_sending(publication, self.pid, self.ledger)
        # Janus refuses subscriptions to a publisher whose PeerConnection is not up yet.
        await janus.wait_up(handle)

    async def subscribe(self, janus: JanusSession, room: int, owners: dict[int, str]) -> None:
        """One multistream subscription to every other publisher of the room."""
        handle = await janus.attach()
        self.handles += (handle,)
        streams = [{"feed": feed} for feed in owners if feed != self.feed]
        join = {"request": "join", "ptype": "subscriber", "room": room, "streams": streams}
        attached = await janus.message(handle, join)
        for stream in attached["plugindata"]["data"]["streams"]:
            if "feed_id" in stream:
                self.owner_of_mid[str(stream["mid"])] = owners[int(stream["feed_id"])]
        self.subscribe_pc = new_pc()
        await self.subscribe_pc.setRemoteDescription(
            RTCSessionDescription(sdp=attached["jsep"]["sdp"], type="offer")
        )
        await self.subscribe_pc.setLocalDescription(await self.subscribe_pc.createAnswer())
        self._tap_subscribe()  # counts by the SSRCs of Janus's offer
        sdp = browser_like_sdp(self.subscribe_pc.localDescription.sdp)
        answer = {"type": "answer", "sdp": sdp, "trickle": False}
        await janus.message(handle, {"request": "start"}, answer)


@contextlib.asynccontextmanager
async def janus_rooms(janus: JanusSession, count: int, n: int) -> AsyncIterator[list[int]]:
    """``count`` VideoRoom rooms for ``n`` publishers each, destroyed after the block."""
    handle = await janus.attach()
    rooms: list[int] = []
    try:
        for _ in range(count):
            create = {
                "request": "create",
                "publishers": max(10, n),
                "videocodec": "vp8",
                "audiocodec": "opus",
                "record": False,
                "notify_joining": False,
            }
            reply = await janus.message(handle, create)
            rooms.append(int(reply["plugindata"]["data"]["room"]))
        yield rooms
    finally:
        for room in rooms:
            with contextlib.suppress(Exception):
                await janus.message(handle, {"request": "destroy", "room": room})
        await janus.detach(handle)


def measurement_bound(rooms: int) -> float:
    """Seconds one measurement of ``rooms`` rooms may take, set-up to teardown."""
    return MEASUREMENT_TIMEOUT + 15.0 * (rooms - 1)


def saturation(result: dict[str, Any]) -> list[str]:
    """What in a measurement is past the quality bounds, and who was the limit."""
    reasons = []
    delivered = result.get("delivered_ratio") or 0.0
    if delivered < 1 - QUALITY_LOSS:
        reasons.append(f"delivered {delivered:.1%}")
    for kind, delay in result.get("added_delay", {}).items():
        if (delay.get("p99_ms") or 0.0) >= QUALITY_P99_MS:
            reasons.append(f"{kind} p99 {delay['p99_ms']} ms")
    if result.get("generator_cpu_core_pct", 0.0) > SATURATION["generator_cpu_pct"]:
        reasons.append(f"generator at {result['generator_cpu_core_pct']}% of its core")
    for core, pct in result.get("other_processes_core_pct_warmup_and_window", {}).items():
        if pct > SATURATION["other_load_pct"]:
            reasons.append(f"other processes took {pct:.0f}% of the {core.replace('_', ' ')}")
    for who, dropped in result.get("udp_drops_warmup_and_window", {}).items():
        if dropped:
            reasons.append(f"{who} dropped {dropped} datagrams (full socket buffers)")
    queues = result.get("udp_receive_queue_kb_warmup_and_window", {})
    if len(queues) == 2 and not within_bounds(result):
        # Datagrams wait where the reader is behind: four times the other side's backlog
        # names it (Janus's own queues between its threads are not visible here).
        janus, generator = queues["janus"]["p99"], queues["generator"]["p99"]
        behind = (
            "generator" if generator > 4 * janus else "janus" if janus > 4 * generator else None
        )
        if behind:
            reasons.append(
                f"{behind} behind (receive queues p99: Janus {janus:.0f} KB, "
                f"generator {generator:.0f} KB)"
            )
    return reasons


async def run_rooms(
    rooms: int, n: int, janus: JanusSession, janus_pid: int, media: EncodedMedia, args: Any
) -> dict[str, Any]:
    """``rooms`` rooms of ``n`` synthetic participants at once, measured together."""
    ledger = Ledger()
    result: dict[str, Any] = {"rooms": rooms, "n": n}
    people: list[JanusParticipant] = []
    bound = measurement_bound(rooms)
    try:
        async with asyncio.timeout(bound), janus_rooms(janus, rooms, n) as ids:
            groups = [
                [JanusParticipant(f"r{r}-p{i}", media, ledger) for i in range(n)] for r in ids
            ]
            people = [p for group in groups for p in group]
            for person in people:  # the media outlives the set-up of every room, as sfu_load
                person.lifetime = 60.0 + 6.0 * rooms + args.warmup + args.window
            for room, group in zip(ids, groups, strict=True):
                await asyncio.gather(*(p.publish(janus, room) for p in group))
            for room, group in zip(ids, groups, strict=True):
                owners = {p.feed: p.pid for p in group}
                await asyncio.gather(*(p.subscribe(janus, room, owners) for p in group))
            result["all_flowing"] = all(
                await asyncio.gather(*(wait_flowing(list(g), FLOW_TIMEOUT) for g in groups))
            )
            drops0 = {"janus": udp_drops(janus_pid), "generator": udp_drops(os.getpid())}
            others = OtherLoad(janus_pid)
            queues = QueueSampler({"janus": janus_pid, "generator": os.getpid()})
            sampling = asyncio.create_task(queues.run(args.warmup + args.window))
            try:
                result.update(await measure(janus_pid, ledger, n, args.warmup, args.window))
            finally:
                sampling.cancel()
                await asyncio.gather(sampling, return_exceptions=True)
            result["udp_receive_queue_kb_warmup_and_window"] = queues.summary()
            result["other_processes_core_pct_warmup_and_window"] = others.pct()
            result["udp_drops_warmup_and_window"] = {
                who: drops_since(drops0[who], pid)
                for who, pid in (("janus", janus_pid), ("generator", os.getpid()))
            }
            # What Janus had to forward: when the generator drops on its full sockets
            # (Janus sent them all), CPU per packet received overstates Janus's cost.
            due = result["published_pps"] * result["window_s"] * (n - 1)
            result["server_cpu_us_per_packet_due"] = (
                round(1e6 * result["server_cpu_s"] / due, 1) if due else None
            )
            # measure() divides frames by one room's n(n-1) streams: there are `rooms` x that.
            result["video_fps_per_stream"] = round(result["video_fps_per_stream"] / rooms, 1)
            result["keyframe_requests_answered"] = sum(
                p.publication.video.keyframe_requests for p in people if p.publication
            )
    except TimeoutError:
        result["error"] = f"not measured within {bound} s"
    finally:
        await asyncio.gather(*(p.close_pcs() for p in people))
        await asyncio.gather(*(janus.detach(h) for p in people for h in p.handles))
    measured = "forwarded_pps" in result
    result["within_bounds"] = measured and within_bounds(result)
    others = result.get("other_processes_core_pct_warmup_and_window", {}).values()
    result["contended"] = any(pct > SATURATION["other_load_pct"] for pct in others)
    result["saturated"] = saturation(result) if measured else ["no figures"]
    return result


async def measure_inside(args: Any) -> dict[str, Any]:
    IcePolicy((ADDRESS,), 2.0, 10.0).install()  # the generator's candidates: the veth
    media = encode_media()
    report: dict[str, Any] = {
        **run_header(media),
        "janus_version": subprocess.run(
            [str(JANUS), "--version"], capture_output=True, text=True, timeout=10
        ).stdout.splitlines()[0],
        "warmup_s": args.warmup,
        "window_s": args.window,
        "runs": [],
    }
    with tempfile.TemporaryDirectory(prefix="janus-") as tmp:
        config = write_config(Path(tmp))
        log_path = Path(tmp) / "janus.log"
        command = [str(JANUS), "--config", str(config), "--configs-folder", tmp, "-o"]
        with open(log_path, "wb") as log:
            process = subprocess.Popen(pinned(command), stdout=log, stderr=log)
        try:
            await wait_healthy(API + "/info", process)
            report["janus_idle_rss_mb"] = round(rss_mb(process.pid), 1)
            async with aiohttp.ClientSession() as http:
                janus = JanusSession(http)
                await janus.start()
                try:
                    print(HEADER, flush=True)
                    for n in args.sizes:
                        bounds: list[bool] = []
                        for rooms in args.rooms:
                            started, load = time.strftime("%H:%M:%S"), os.getloadavg()
                            result = await run_rooms(rooms, n, janus, process.pid, media, args)
                            result.update(started=started, loadavg_at_start=load)
                            print_row(result)
                            report["runs"].append(result)
                            await asyncio.sleep(1.0)  # let Janus tear the rooms down
                            # As sfu_load: two room counts in a row past the quality
                            # bounds end that size (one alone may be other processes).
                            bounds.append(result["within_bounds"])
                            if bounds[-2:] == [False, False]:
                                break
                finally:
                    report["janus_hangups"] = janus.hangups
                    await janus.close()
        finally:
            stop_process(process)
            report["janus_log_problems"] = janus_problems(log_path)[:40]
    return report


# ---- the section of sfu_bench's report ------------------------------------------------------


async def janus_section(
    sfu: list[dict[str, Any]], sizes: list[int], rooms: list[int], args: Any
) -> dict[str, Any]:
    """Janus on the same load as ``sfu`` (sfu_bench's rows), with the ratio of Telecircle's
    CPU µs per forwarded packet to Janus's for each size measured in both (one room);
    ``{"skipped": reason}`` if Janus cannot be measured here."""
    reason = unavailable_reason()
    if reason is None:
        try:
            report = await run_janus(sizes, rooms, args)
        except Broken as exc:
            reason = str(exc)
    if reason is not None:
        print(f"Janus reference skipped: {reason}", flush=True)
        return {"skipped": reason}
    ours = {r["n"]: r.get("server_cpu_us_per_packet") for r in sfu}
    report["telecircle_over_janus_us_per_packet"] = {
        str(r["n"]): round(ours[r["n"]] / r["server_cpu_us_per_packet"], 2)
        for r in report["runs"]
        if r["rooms"] == 1 and ours.get(r["n"]) and r.get("server_cpu_us_per_packet")
    }
    return report


def print_section(report: dict[str, Any]) -> None:
    if "skipped" in report:
        print(f"\nJanus reference: skipped ({report['skipped']})")
        return
    print_report(report)
    ratios = report.get("telecircle_over_janus_us_per_packet") or {}
    if ratios:
        print(
            "Telecircle / Janus, CPU µs per forwarded packet: "
            + ", ".join(f"N={n} {ratio:.1f}x" for n, ratio in ratios.items())
        )


# ---- output ------------------------------------------------------------------------------


def fmt(value: Any, digits: int = 1) -> str:
    return (
        "-" if value is None else f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    )


HEADER = (
    f"{'R':>2} {'N':>3} {'fwd pkt/s':>9} {'deliv':>6} {'fps':>5} {'Janus CPU':>9} "
    f"{'µs/pkt':>7} {'µs/due':>7} {'RSS MB':>7} {'audio p50/p99 ms':>17} {'video p50/p99 ms':>17} "
    f"{'gen CPU':>8} {'gen lag':>8} {'others c0/c1':>12} {'rxq KB J/G':>11}  saturated"
)


def print_row(r: dict[str, Any]) -> None:
    if "forwarded_pps" not in r:
        print(f"{r['rooms']:>2} {r['n']:>3} (no measurement) {r.get('error', '')}", flush=True)
        return
    a, v = r["added_delay"]["audio"], r["added_delay"]["video"]
    others = r["other_processes_core_pct_warmup_and_window"]
    queues = r["udp_receive_queue_kb_warmup_and_window"]
    print(
        f"{r['rooms']:>2} {r['n']:>3} {r['forwarded_pps']:>9.0f} {r['delivered_ratio'] or 0:>6.1%} "
        f"{r['video_fps_per_stream']:>5.1f} {r['server_cpu_core_pct']:>8.1f}% "
        f"{fmt(r['server_cpu_us_per_packet']):>7} {fmt(r['server_cpu_us_per_packet_due']):>7} "
        f"{r['server_rss_mb']:>7.1f} "
        f"{fmt(a['p50_ms']) + ' / ' + fmt(a['p99_ms']):>17} "
        f"{fmt(v['p50_ms']) + ' / ' + fmt(v['p99_ms']):>17} "
        f"{r['generator_cpu_core_pct']:>7.1f}% {r['generator_loop_lag_ms']['max']:>5.0f} ms "
        f"{others['janus_core']:>5.0f}/{others['generator_core']:>3.0f} % "
        f"{queues['janus']['p99']:>5.0f}/{queues['generator']['p99']:<5.0f}  "
        f"{', '.join(r['saturated']) or 'no'}",
        flush=True,
    )


def print_report(report: dict[str, Any]) -> None:
    print(
        f"\n{report.get('janus_version', 'Janus')} VideoRoom (multistream subscriptions), "
        f"core 0; generator core {GENERATOR_CORE}; {report['window_s']} s windows; "
        f"R rooms of N at once"
    )
    print(HEADER)
    for r in report["runs"]:
        print_row(r)
    print(
        "µs/pkt: Janus's CPU per packet the subscribers received (sfu_bench's figure); µs/due: "
        "per packet Janus had to forward (published x (N-1)), the fairer figure when the "
        "generator dropped; others c0/c1: % of Janus's core 0 and the generator's core 1 "
        "that other processes used (the machine is shared; ±6 % is accounting noise); "
        "rxq KB J/G: p99 of the bytes waiting in Janus's and the generator's UDP receive "
        "queues (who is behind); "
        "saturated: past sfu_load's quality bounds (loss of 1 % or more, p99 of 20 ms or "
        "more: two in a row end the room counts of a size), generator over 90 % of its core, "
        "other processes over 10 % of a core, drops on full UDP socket buffers and whose."
    )
    problems = report.get("janus_log_problems") or []
    if problems:
        print(f"\nJanus log: {len(problems)} warning/error lines (first shown)")
        for line in problems[:5]:
            print("  " + line[:200])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=parse_sizes, default=[2, 4, 10])
    parser.add_argument("--rooms", type=parse_sizes, default=[1])
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--window", type=float, default=8.0)
    parser.add_argument("--json", type=Path, default=RESULTS)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    try:
        if args.inside:
            if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > GENERATOR_CORE:
                os.sched_setaffinity(0, {GENERATOR_CORE})
            report = asyncio.run(measure_inside(args))
        else:
            report = asyncio.run(run_janus(args.sizes, args.rooms, args))
    except Broken as exc:
        print(f"BROKEN: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # the clean-up (Janus, the namespace) ran on the way out
        print("interrupted", file=sys.stderr)
        return 130
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    if not args.inside:
        print_report(report)
        print(f"\nwrote {args.json}")
    return 0 if any(r.get("received_packets") for r in report["runs"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
