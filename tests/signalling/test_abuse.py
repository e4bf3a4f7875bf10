"""Signalling abuse (issue 7): each attack at a real server on loopback is refused or timed
out, with bounded memory, while a canary in another room sees no disruption.

Each attack runs in its own process (tests/signalling/rogue.py: an attacker does not
share the server's event loop) for ATTACK_SECONDS or, for connections left hanging,
until the server has closed every one. Meanwhile a canary clinician in a room of its
own does a round trip (``set_media``, with its ack) every CANARY_PACE seconds; it does
the same with no attack for the baseline (once per module). The tests assert what the server did —
acks, disconnects, close codes, log records, no tracebacks, nothing buffered — and that
the canary stayed connected with every round trip answered. They assert no timing:
canary p50/p99 (with and without the attack), the event loop's worst lag and the
process's memory growth are printed and written to benchmarks/results/signalling_abuse.json.

The server runs with short timeouts (ABUSE_SETTINGS) so the tests are quick, and with
the production garbage collector tuning; the rates and limits are the defaults.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import inspect
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from engineio import async_socket
from engineio.async_drivers import aiohttp as engineio_aiohttp
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from telecircle.config import Settings, load_settings
from telecircle.domain.ids import RoomCode
from telecircle.services.clock import SystemClock
from telecircle.signalling import transport
from telecircle.signalling.packets import nested_deeper_than
from telecircle.signalling.ratelimit import Cooldowns, MessageRate, Verdict
from telecircle.signalling.server import SignallingServer
from telecircle.web.keys import WATCHDOG
from tests.conftest import ROOMS, SIGNALLING, RunningServer, start_server
from tests.signalling.client import Client
from tests.signalling.rogue import Plan, Report

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "signalling_abuse.json"
ABUSE_SETTINGS: dict[str, Any] = {
    "socket_ping_interval": 1.0,
    "socket_ping_timeout": 1.0,
    "socket_connect_timeout": 2.0,
    "http_idle_timeout": 2.0,
    "http_body_timeout": 2.0,
    # So that each attack can go on connecting after it is dropped (the event flood is
    # also run with the default cooldown, which refuses it).
    "abuse_cooldown": 0.0,
    # As in production (telecircle/runtime.py): untuned, full collections of this test
    # process's heap (100+ ms) land in the middle of the attacks that allocate most.
    # The fixture undoes it afterwards.
    "tune_garbage_collector": True,
}
ATTACK_SECONDS = 4.0
CONNECTIONS = 20  # of each kind, for the attacks that leave connections hanging
# About 15 round trips a second: under the message rate limit (20 a second) it shares.
CANARY_PACE = 0.06
# The canary's round trips with no attack, taken once for the whole module, on the first
# arena that needs them: how a canary fares on a new server with ABUSE_SETTINGS does not
# depend on the attack that comes next (taken before each attack, 50 of them cost 3.5 s
# a test; 100 once give a better p99).
BASELINE_TRIPS = 100
# Only ids reach the logs; this name must never appear there.
ATTACKER_NAME = "Mallory Quist-Abernathy"
CANARY_NAME = "Cordelia Fairweather-Nkemelu"


@dataclass
class Arena:
    server: RunningServer
    canary: Client
    attacked_room: str
    attacker_cookie: str
    baseline: list[float]  # the module's no-attack canary round trips (canary_baseline)


@dataclass
class Figures:
    attack: str
    plan: dict[str, Any]
    baseline_ms: dict[str, float]
    attack_ms: dict[str, float]
    ratio_p50: float
    ratio_p99: float
    worst_loop_lag_ms: float
    memory_growth_mb: float
    report: dict[str, Any]


@pytest.fixture(scope="module")
def canary_baseline() -> list[float]:
    """The canary's round trips with no attack, filled by the first test that needs it."""
    return []


@pytest.fixture
async def arena(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
    canary_baseline: list[float],
) -> AsyncIterator[Arena]:
    """A server with ABUSE_SETTINGS (and the test's ``arena`` parameters, if any), a
    canary clinician seated in a room of its own, and a clinician of another room
    whose cookie the attacker uses."""
    caplog.set_level(logging.INFO)
    thresholds = gc.get_threshold()
    server = await start_server(tmp_path, **{**ABUSE_SETTINGS, **getattr(request, "param", {})})
    canary = Client()
    try:
        canary_room = await server.create_room("Canary group")
        await canary.connect(server.url, await server.clinician_cookie(canary_room, CANARY_NAME))
        joined = await canary.call("join", {"room_code": canary_room})
        assert joined["ok"], joined
        attacked_room = await server.create_room("Attacked group")
        cookie = await server.clinician_cookie(attacked_room, ATTACKER_NAME)
        yield Arena(server, canary, attacked_room, cookie, canary_baseline)
    finally:
        if canary.sio.connected:
            await canary.close()
        await server.runner.cleanup()
        gc.unfreeze()
        gc.set_threshold(*thresholds)


# ---- measuring -------------------------------------------------------------------------


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "p50": round(1000 * statistics.median(ordered), 2),
        "p99": round(1000 * cuts[98], 2),
        "max": round(1000 * ordered[-1], 2),
        "trips": len(ordered),
    }


async def round_trip(canary: Client, trip: int) -> float:
    """One canary round trip; it must be answered, and answered ok."""
    started = time.perf_counter()
    ack = await canary.call("set_media", {"audio_on": trip % 2 == 0}, timeout=10)
    elapsed = time.perf_counter() - started
    assert ack["ok"], ack
    return elapsed


async def baseline_round_trips(arena: Arena) -> list[float]:
    """The module's baseline (see BASELINE_TRIPS), taken with the arena's canary if not
    yet."""
    if not arena.baseline:
        trips = []
        for trip in range(BASELINE_TRIPS):
            trips.append(await round_trip(arena.canary, trip))
            await asyncio.sleep(CANARY_PACE)
        arena.baseline.extend(trips)  # only once complete: a failed run leaves it empty
    return arena.baseline


async def run_rogue(plan: Plan) -> Report:
    """Run tests/signalling/rogue.py in its own process; it stops by itself."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.signalling.rogue",
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(plan.duration + 3 * plan.wait + 30):
            out, err = await process.communicate(plan.to_json().encode())
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()[-4000:]
    return Report(**json.loads(out))


async def attack_with_canary(
    arena: Arena,
    attack: str,
    watch: Any = None,
    label: str | None = None,
    **plan_fields: Any,
) -> tuple[Report, Figures]:
    """The attack with the canary going on beside it (and the module's baseline of
    canary round trips first, if not taken yet).
    ``watch()``, if given, is called after each canary round trip (to sample server
    state during the attack)."""
    server, canary = arena.server, arena.canary
    baseline = await baseline_round_trips(arena)
    message_limit = server.settings.max_message_bytes
    plan = Plan(
        attack=attack,
        url=server.url,
        cookie=arena.attacker_cookie,
        duration=ATTACK_SECONDS,
        room_code=arena.attacked_room,
        app_limit=message_limit,
        engine_limit=message_limit * 4,  # the signalling server's max_http_buffer_size
        connections=CONNECTIONS,
        **plan_fields,
    )
    watchdog = server.app[WATCHDOG]
    watchdog.worst_lag = 0.0
    memory_before = peak = rss_mb()
    rogue = asyncio.create_task(run_rogue(plan))
    samples: list[tuple[float, float]] = []
    trip = 0
    while not rogue.done():
        at = time.monotonic()
        samples.append((at, await round_trip(canary, trip)))
        trip += 1
        peak = max(peak, rss_mb())
        if watch is not None:
            watch()
        await asyncio.sleep(CANARY_PACE)
    report = await rogue
    during = [latency for at, latency in samples if report.start <= at <= report.end]
    assert during, "the canary made round trips during the attack"
    assert canary.sio.connected, "the canary stayed connected"
    before, under = percentiles(baseline), percentiles(during)
    figures = Figures(
        attack=label or attack,
        plan={k: v for k, v in asdict(plan).items() if k not in ("cookie", "url", "room_code")},
        baseline_ms=before,
        attack_ms=under,
        ratio_p50=round(under["p50"] / before["p50"], 2),
        ratio_p99=round(under["p99"] / before["p99"], 2),
        worst_loop_lag_ms=round(1000 * watchdog.worst_lag, 1),
        memory_growth_mb=round(peak - memory_before, 1),
        report={k: v for k, v in asdict(report).items() if k != "outcomes"},
    )
    publish(figures)
    return report, figures


def publish(figures: Figures) -> None:
    """Print the figures and add them to benchmarks/results/signalling_abuse.json."""
    seconds = figures.report["end"] - figures.report["start"]
    print(
        f"\n{figures.attack}: {figures.report['connections']} connections in {seconds:.1f} s, "
        f"{figures.report['sent_events']} events, {figures.report['sent_frames']} frames, "
        f"{figures.report['sent_bytes'] / 1e6:.1f} MB sent; acks {figures.report['acks']}"
    )
    print(
        f"  canary round trip p50/p99: {figures.attack_ms['p50']}/{figures.attack_ms['p99']} ms "
        f"under attack ({figures.attack_ms['trips']} trips), "
        f"{figures.baseline_ms['p50']}/{figures.baseline_ms['p99']} ms before "
        f"(x{figures.ratio_p50}/x{figures.ratio_p99}); event loop worst lag "
        f"{figures.worst_loop_lag_ms} ms; memory +{figures.memory_growth_mb} MB"
    )
    results: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        results = json.loads(RESULTS.read_text())
    results[figures.attack] = asdict(figures)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


def logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)


def abuse_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "closing abusive connection"]


def assert_clean_logs(caplog: pytest.LogCaptureFixture) -> None:
    """No traceback or error was logged (a decoding error escaping to engine.io or
    aiohttp would be), and no name: ids and event names only."""
    errors = [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors
    text = logged(caplog)
    for name in (ATTACKER_NAME, CANARY_NAME, "Mallory", "Cordelia"):
        assert name not in text


async def wait_for(predicate: Any, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


def seat_ids(server: RunningServer, code: str) -> set[str]:
    live = server.app[ROOMS].live_room(RoomCode(code))
    return set() if live is None else {p.id for p in live.state.participants}


# ---- the attacks -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "arena", [{"abuse_cooldown": 30.0}, {}], ids=["default_cooldown", "no_cooldown"], indirect=True
)
async def test_an_event_flood_is_throttled_then_disconnected(
    arena: Arena, caplog: pytest.LogCaptureFixture
) -> None:
    """1,000 set_media events a second from a client with a seat, for ATTACK_SECONDS.
    Dropped, it connects again at once: refused during the abuse cooldown (30 s by
    default); without one, it joins and floods again, and is dropped again."""
    cooldown = arena.server.settings.abuse_cooldown
    label = "event_flood" if cooldown else "event_flood_no_cooldown"
    report, _ = await attack_with_canary(arena, "event_flood", rate=1000.0, label=label)
    flooded = [o for o in report.outcomes if "refused" not in o]
    refused = [o for o in report.outcomes if "refused" in o]
    *dropped, last = flooded
    if last["disconnected_by_server"]:
        dropped.append(last)  # (the last one may have been cut short by the deadline)
    assert dropped, report.outcomes
    for outcome in dropped:
        assert outcome["joined"]
        assert outcome["disconnected_by_server"]
        assert outcome["acks"].get("rate_limited", 0) >= 1, "throttled before the disconnect"
    if cooldown:
        # Every attempt after the first drop falls within the cooldown.
        assert len(flooded) == 1 and refused, report.outcomes
        assert {o["refused"] for o in refused} == {"rate_limited"}
    else:
        assert not refused
    records = abuse_records(caplog)
    assert len(dropped) <= len(records) <= len(flooded)
    for record in records:
        details = vars(record)
        assert (details["reason"], details["event"]) == ("rate_limited", "set_media")
        assert details["sid"] and details["participant"] and details["room"]
    if cooldown:
        # The dropped seat ended for good (no reconnect window held for an abuser).
        # (Without a cooldown, the next connection can take it back first, as from
        # another window.)
        await wait_for(lambda: not seat_ids(arena.server, arena.attacked_room))
    assert_clean_logs(caplog)


async def test_huge_payloads_are_refused(arena: Arena, caplog: pytest.LogCaptureFixture) -> None:
    """Just above the application's limit: an error ack, the connection stays. Above
    engine.io's limit, 10 MB, and 10 MB deflated to a few kilobytes: the websocket is
    closed with 1009 (message too big) before the payload is read or inflated."""
    report, _ = await attack_with_canary(arena, "oversized")
    kinds = {outcome["kind"] for outcome in report.outcomes}
    assert kinds == {"above_app_limit", "above_engine_limit", "10MB", "10MB_deflated"}
    for outcome in report.outcomes:
        if outcome["kind"] == "above_app_limit":
            assert outcome["ack"]["error"]["code"] == "message_too_large"
            assert outcome["still_connected"]
        else:
            assert outcome["close_code"] == 1009, outcome
    assert_clean_logs(caplog)


async def test_deeply_nested_json_is_refused(
    arena: Arena, caplog: pytest.LogCaptureFixture
) -> None:
    """Events nested 100,000 levels deep get error acks (never parsed) until the
    connection is dropped as malformed; an engine.io message of 100,000 levels that is
    no socket.io packet closes the websocket (engine.io would json.loads it)."""
    report, _ = await attack_with_canary(arena, "deep_nesting")
    limit = arena.server.settings.malformed_message_limit
    socketio_outcomes = [o for o in report.outcomes if o["kind"] == "socketio"]
    engineio_outcomes = [o for o in report.outcomes if o["kind"] == "engineio"]
    assert socketio_outcomes and engineio_outcomes
    for outcome in socketio_outcomes:
        assert outcome["acks"][:limit] == ["invalid_message"] * limit
        assert "invalid_message" not in outcome["acks"][limit:], "dropped at the limit"
        assert outcome["lasted"] is not None, "the server closed it"
    for outcome in engineio_outcomes:
        assert outcome["lasted"] is not None, "the server closed it"
    reasons = {vars(r)["reason"] for r in abuse_records(caplog)}
    assert reasons == {"malformed_messages", transport.NOT_A_PACKET}
    assert_clean_logs(caplog)


async def test_binary_frames_and_attachments_are_refused(
    arena: Arena, caplog: pytest.LogCaptureFixture
) -> None:
    """A binary event announcing 9,999,999,999 attachments, then 200 KiB binary frames:
    python-socketio 5.18 would keep every frame. Here the event gets an error ack, each
    binary frame counts as malformed, the connection is dropped, nothing is kept."""
    signalling = arena.server.app[SIGNALLING]
    pending: list[int] = []

    def buffered_attachments() -> None:
        # python-socketio's buffer of announced attachments, per engine.io socket.
        buffers = signalling.sio._binary_packet
        pending.append(sum(len(p.attachments) for p in buffers.values()))

    report, _ = await attack_with_canary(arena, "binary", watch=buffered_attachments)
    assert report.outcomes
    for outcome in report.outcomes:
        assert outcome["header_ack"]["error"]["code"] == "invalid_message"
        assert "Binary" in outcome["header_ack"]["error"]["message"]
        assert outcome["lasted"] is not None, "the server closed it"
    assert set(pending) == {0}, "no attachment was ever buffered"
    assert {vars(r)["reason"] for r in abuse_records(caplog)} == {"malformed_messages"}
    assert_clean_logs(caplog)


async def test_a_flood_of_frames_the_application_never_sees_is_closed(
    arena: Arena, caplog: pytest.LogCaptureFixture
) -> None:
    """Acks for calls the server never made, as fast as the socket takes them: python-
    socketio drops each without the application seeing it (so no message limit counts
    them); the transport guard closes the websocket once its frame allowance is spent."""
    report, _ = await attack_with_canary(arena, "frame_flood")
    assert report.outcomes
    burst = arena.server.settings.socket_frame_burst
    for outcome in report.outcomes:
        assert outcome["lasted"] is not None, "the server closed it"
        assert outcome["frames"] > burst, "closed once past the allowance, not before"
    assert {vars(r)["reason"] for r in abuse_records(caplog)} == {transport.FRAME_FLOOD}
    assert_clean_logs(caplog)


async def test_unknown_namespaces_are_refused(
    arena: Arena, caplog: pytest.LogCaptureFixture
) -> None:
    """A connect to an unknown namespace before the default one closes the websocket;
    after it, python-socketio refuses it (CONNECT_ERROR), and events sent there get
    error acks until the connection is dropped as malformed."""
    report, _ = await attack_with_canary(arena, "namespaces")
    limit = arena.server.settings.malformed_message_limit
    for outcome in report.outcomes:
        assert outcome["lasted"] is not None, "the server closed it"
        if outcome["kind"] == "after_default":
            assert outcome["connect"].startswith("44/admin,")
            assert outcome["acks"][:limit] == ["invalid_message"] * limit
    assert {vars(r)["reason"] for r in abuse_records(caplog)} == {"malformed_messages"}
    assert_clean_logs(caplog)


async def test_half_open_connections_are_timed_out(
    arena: Arena, caplog: pytest.LogCaptureFixture
) -> None:
    """CONNECTIONS each, at once: TCP without a request (http_idle_timeout), a websocket
    silent at the engine.io level (engine.io's ping timeout), one that answers pings but
    never connects socket.io, one whose connect was refused and that goes on answering
    pings (socket_connect_timeout). The server closes every one."""
    report, _ = await attack_with_canary(arena, "half_open")
    assert len(report.outcomes) == 4 * CONNECTIONS
    lasted: dict[str, list[float]] = {}
    for outcome in report.outcomes:
        assert outcome["lasted"] is not None, outcome
        lasted.setdefault(outcome["kind"], []).append(outcome["lasted"])
    print(
        "  closed after (s, longest): " + ", ".join(f"{k} {max(v):.2f}" for k, v in lasted.items())
    )
    engine = arena.server.app[SIGNALLING].sio.eio
    await wait_for(lambda: len(engine.sockets) == 1)  # the canary's
    assert_clean_logs(caplog)


async def test_slow_sends_are_timed_out(arena: Arena, caplog: pytest.LogCaptureFixture) -> None:
    """CONNECTIONS each, at once, a byte every 100 ms: an HTTP request head (closed at
    http_idle_timeout), a form's body (408 at http_body_timeout), a websocket frame
    (closed by engine.io, which waits ping_interval + ping_timeout for a frame)."""
    report, _ = await attack_with_canary(arena, "slowloris")
    assert len(report.outcomes) == 3 * CONNECTIONS
    for outcome in report.outcomes:
        assert outcome["lasted"] is not None, outcome
        if outcome["kind"] == "http_body":
            assert outcome["answer"].startswith("HTTP/1.1 408"), outcome
        elif outcome["kind"] == "http_head":
            assert outcome["answer"] == "", "closed without an answer"
    engine = arena.server.app[SIGNALLING].sio.eio
    await wait_for(lambda: len(engine.sockets) == 1)  # the canary's
    assert_clean_logs(caplog)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /healthz HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", b"400"),
        (
            b"GET /healthz HTTP/1.1\r\nHost: h\r\n"
            + b"".join(b"X-H%d: a\r\n" % i for i in range(200))
            + b"\r\n",
            b"400",
        ),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: h\r\n\r\n", b"400"),
        (
            b"POST /login HTTP/1.1\r\nHost: h\r\nContent-Length: 300000\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n\r\n" + b"a" * 300_000,
            b"413",
        ),
    ],
    ids=["header_line", "header_count", "request_line", "body"],
)
async def test_huge_request_heads_and_bodies_are_refused(
    server: RunningServer, request_bytes: bytes, status: bytes
) -> None:
    """aiohttp 3.14's own limits, kept: a request line or header field over 8190 bytes,
    more than 128 headers (400), a body over the app's client_max_size, 256 KiB (413)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.settings.port)
    try:
        writer.write(request_bytes)
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read(64)
    finally:
        writer.close()
    assert answer.split(b" ")[1] == status, answer


async def test_cross_site_websockets_are_refused(server: RunningServer) -> None:
    """python-engineio 4.15's default (cors_allowed_origins=None): only the server's own
    origin may open a socket.io websocket, so another site cannot ride a visitor's
    cookies into a session."""
    code = await server.create_room()
    cookie = await server.clinician_cookie(code)
    url = server.url.replace("http", "ws", 1) + "/socket.io/?EIO=4&transport=websocket"
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(url, headers={"Cookie": cookie, "Origin": "http://evil.test"})
        assert refused.value.status == 400
        async with http.ws_connect(url, headers={"Cookie": cookie, "Origin": server.url}) as ws:
            opening = await asyncio.wait_for(ws.receive(), 10)
            assert opening.data.startswith("0{")


# ---- the defences, piece by piece ------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.time = 1000.0

    def now(self) -> float:
        return self.time


def test_a_flood_is_disconnected_a_burst_only_throttled() -> None:
    clock = FakeClock()
    # Defaults: 20 a second, a burst of 40, 50 strikes.
    flood = MessageRate(20.0, 40, 50, clock)
    verdicts = []
    for _ in range(1000):  # 1,000 a second for one second
        clock.time += 0.001
        verdicts.append(flood.check())
        if verdicts[-1] is Verdict.DISCONNECT:
            break
    assert verdicts[-1] is Verdict.DISCONNECT
    assert Verdict.REFUSE in verdicts and Verdict.ACCEPT in verdicts[40:]

    bursty = MessageRate(20.0, 40, 50, clock)
    for _ in range(10):  # 60 at once every 3 seconds: over the burst, never dropped
        seen = {bursty.check() for _ in range(60)}
        assert seen == {Verdict.ACCEPT, Verdict.REFUSE}
        clock.time += 3.0


def test_a_cooldown_ends_and_is_forgotten() -> None:
    clock = FakeClock()
    cooldowns = Cooldowns(30.0, clock)
    cooldowns.start("user:a")
    assert cooldowns.cooling("user:a") and not cooldowns.cooling("user:b")
    clock.time += 31
    assert not cooldowns.cooling("user:a")
    cooldowns.start("user:b")
    assert list(cooldowns._until) == ["user:b"], "expired entries are dropped"
    off = Cooldowns(0.0, clock)
    off.start("user:a")
    assert not off.cooling("user:a")


@pytest.mark.parametrize(
    ("text", "too_deep"),
    [
        ('["join",{"room_code":"abc"}]', False),
        ('["start_pairs",{"groups":[["a","b"],["c"]]}]', False),
        ("[" * 8 + "]" * 8, False),
        ("[" * 9 + "]" * 9, True),
        ('[{"a":' * 5 + "1" + "}]" * 5, True),
        ('["' + "[" * 100 + '"]', False),  # brackets inside a string
        ('["\\"[[[[[[[[[[[[[[\\\\"]', False),
        ("[" * 100_000 + "]" * 100_000, True),
    ],
)
def test_nesting_depth(text: str, too_deep: bool) -> None:
    assert nested_deeper_than(text, 8) is too_deep


JSON_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=60,
)


def depth_of(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(value=JSON_VALUES, max_depth=st.integers(1, 12), ascii_only=st.booleans())
def test_nesting_depth_matches_the_parsed_value(
    value: Any, max_depth: int, ascii_only: bool
) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert nested_deeper_than(text, max_depth) is (depth_of(value) > max_depth)


def test_the_frame_allowance_leaves_the_application_throttle_first() -> None:
    load_settings(data_dir=Path("unused"))  # the defaults hold
    with pytest.raises(ValidationError, match="socket_frame_burst"):
        Settings(socket_frame_burst=60, message_burst=40, rate_limit_strikes=50)
    with pytest.raises(ValidationError, match="socket_frames_per_second"):
        Settings(socket_frames_per_second=30.0, messages_per_second=20.0)


def test_engineio_builds_websockets_through_the_guarded_seam() -> None:
    """Fails loudly if python-engineio stops building websockets through the driver
    table signalling/transport.py replaces (every socket.io connection is refused
    without its guard, so the whole signalling suite would fail too)."""
    source = inspect.getsource(async_socket.AsyncSocket._upgrade_websocket)
    assert "self.server._async['websocket'](" in source
    assert "self._websocket_handler, self.server)" in source
    assert "await ws(environ)" in source
    handler = inspect.getsource(async_socket.AsyncSocket._websocket_handler)
    assert "data = await ws.wait()" in handler
    assert "'aiohttp.request': request" in inspect.getsource(engineio_aiohttp.translate_request)
    assert inspect.signature(engineio_aiohttp.WebSocket.__init__).parameters.keys() == {
        "self",
        "handler",
        "server",
    }
    signalling = SignallingServer(load_settings(data_dir=Path("unused")), SystemClock())
    built = signalling.sio.eio._async["websocket"]
    assert isinstance(built, functools.partial) and built.func is transport.GuardedWebSocket
    # The module's table is untouched: only this server builds guarded websockets.
    assert engineio_aiohttp._async["websocket"] is engineio_aiohttp.WebSocket
    with pytest.raises(RuntimeError, match="no longer builds websockets"):
        transport.install(signalling.sio.eio, transport.TransportLimits(1.0, 1, 1.0), SystemClock())
