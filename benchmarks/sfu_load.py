"""Load on the real server: rooms of ten until it saturates, join-to-first-frame over many
joins, and a memory soak.

Run from the repository root (each prints a table and writes
``benchmarks/results/sfu_load_<mode>.json``)::

    .venv/bin/python -m benchmarks.sfu_load rooms              # 1, 2, 3 … rooms of 10
    .venv/bin/python -m benchmarks.sfu_load joins --joins 40  # one room, 40 late joins
    .venv/bin/python -m benchmarks.sfu_load soak --rooms 3 --minutes 30

Same set-up as ``benchmarks/sfu_bench.py`` (whose pieces it uses): ``telecircle serve``
pinned to core 0, the generator (raw RTP, see ``benchmarks/raw_rtp.py``) in this process
on core 1, the participants the rooms' clinicians, joining over socket.io like the
webclient.

- ``rooms``: for R = 1, 2, 3 … (``--rooms``), R rooms of 10 at once; after a warm-up, one
  window: forwarded packets/s, server CPU per forwarded packet, added delay p50/p99 (audio,
  video), delivered ratio, frames/s, server memory per participant, generator CPU. Stops
  after two R in a row outside the quality bounds (≥ 1 % loss or p99 added delay ≥ 20 ms);
  says how many rooms the server carried within them, and whether the generator (not the
  server) was the limit.
- ``joins``: nine participants flowing; a tenth joins, waits until it has a keyframe from
  each of the nine, leaves, and joins again (``--joins`` times, ``--gap`` s apart).
  Join-to-first-remote-frame (the first keyframe from anyone) and to frames from all nine,
  from the join acknowledgement, as p50/p99/max.
- ``soak``: R rooms of 10 for ``--minutes``; every minute the server's RSS, CPU, open
  files and that minute's delivery and delays. Memory per participant is (RSS - RSS of the
  idle server) / participants; flat means the last minutes grow no faster than noise.

Timings never fail the run; it exits 1 only if something is broken.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.sfu_bench import (
    FLOW_TIMEOUT,
    GENERATOR_CORE,
    ROOT,
    Broken,
    Served,
    SioParticipant,
    create_room,
    fmt,
    measure,
    rss_mb,
    run_header,
    served,
    wait_flowing,
    write_report,
)
from benchmarks.synthetic import EncodedMedia, Ledger, encode_media
from telecircle.media.ice_policy import IcePolicy

ROOM_SIZE = 10
QUALITY_LOSS = 0.01
QUALITY_P99_MS = 20.0
JOIN_TIMEOUT = 20.0


def results_path(mode: str) -> Path:
    return ROOT / "benchmarks" / "results" / f"sfu_load_{mode}.json"


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def fill_rooms(
    server: Served, media: EncodedMedia, ledger: Ledger, rooms: int, lifetime: float
) -> list[list[SioParticipant]]:
    """``rooms`` rooms of ten, everyone publishing and subscribing; room by room (a
    room's ten join together) so the signalling load stays what a clinic would see."""
    filled: list[list[SioParticipant]] = []
    for r in range(rooms):
        room = await create_room(server.db, ROOM_SIZE, server.ceiling)
        people = [SioParticipant(f"r{r}-{i}", media, ledger) for i in range(ROOM_SIZE)]
        for person in people:
            person.lifetime = lifetime
        filled.append(people)
        await asyncio.gather(
            *(
                p.join(server.base_url, room.code, c)
                for p, c in zip(people, room.cookies, strict=True)
            )
        )
    return filled


async def empty_rooms(filled: list[list[SioParticipant]]) -> None:
    await asyncio.gather(*(p.leave() for people in filled for p in people))


def within_bounds(result: dict[str, Any]) -> bool:
    delays = result["added_delay"]
    p99s = [delays[k]["p99_ms"] for k in ("audio", "video")]
    return (
        (result["delivered_ratio"] or 0) >= 1 - QUALITY_LOSS
        and None not in p99s
        and max(p99s) < QUALITY_P99_MS
    )


# ---- rooms ------------------------------------------------------------------------------


async def run_rooms(args: Any, media: EncodedMedia, report: dict[str, Any]) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="sfu-load-"))
    report["rooms"] = []
    try:
        async with served(workdir, report) as server:
            idle = rss_mb(server.process.pid)
            report["server_idle_rss_mb"] = round(idle, 1)
            print(ROOMS_HEADER, flush=True)
            for rooms in args.rooms:
                ledger = Ledger()
                lifetime = 60.0 + 6.0 * rooms + args.warmup + args.window
                filled = await fill_rooms(server, media, ledger, rooms, lifetime)
                try:
                    everyone = [p for people in filled for p in people]
                    flowing = await wait_flowing(everyone, FLOW_TIMEOUT + 5 * rooms)
                    result = await measure(
                        server.process.pid, ledger, ROOM_SIZE, args.warmup, args.window
                    )
                finally:
                    await empty_rooms(filled)
                # measure() divides frames by one room's streams: per stream, all rooms.
                result["video_fps_per_stream"] = round(result["video_fps_per_stream"] / rooms, 1)
                result.update(
                    rooms=rooms,
                    all_flowing=flowing,
                    rss_mb_per_participant=round(
                        (result["server_rss_mb"] - idle) / (rooms * ROOM_SIZE), 2
                    ),
                    within_bounds=within_bounds(result),
                )
                report["rooms"].append(result)
                print_rooms_row(result)
                await asyncio.sleep(2.0)  # let the rooms close before the next step
                # Two in a row outside the bounds: saturated (one alone may be another
                # process taking the core for a moment: see 'srv wait').
                last_two = [r["within_bounds"] for r in report["rooms"][-2:]]
                if last_two == [False, False]:
                    break
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    carried = [r["rooms"] for r in report["rooms"] if r["within_bounds"]]
    report["rooms_carried_within_bounds"] = max(carried, default=0)


ROOMS_HEADER = (
    f"{'rooms':>5} {'fwd pkt/s':>9} {'deliv':>6} {'fps':>5} {'srv CPU':>8} {'µs/pkt':>7} "
    f"{'MB/part':>7} {'audio p50/p99 ms':>17} {'video p50/p99 ms':>17} {'gen CPU':>8} "
    f"{'srv wait':>9} {'ok':>3}"
)


def delay_text(result: dict[str, Any], kind: str) -> str:
    d = result["added_delay"][kind]
    return f"{fmt(d['p50_ms'])} / {fmt(d['p99_ms'])}"


def print_rooms_row(r: dict[str, Any]) -> None:
    print(
        f"{r['rooms']:>5} {r['forwarded_pps']:>9.0f} {100 * (r['delivered_ratio'] or 0):>5.1f}% "
        f"{r['video_fps_per_stream']:>5.1f} {r['server_cpu_core_pct']:>7.1f}% "
        f"{fmt(r['server_cpu_us_per_packet']):>7} {r['rss_mb_per_participant']:>7.2f} "
        f"{delay_text(r, 'audio'):>17} {delay_text(r, 'video'):>17} "
        f"{r['generator_cpu_core_pct']:>7.1f}% "
        f"{r['runqueue_wait_ms']['server_total']:>7.0f}ms "
        f"{'yes' if r['within_bounds'] else 'no':>3}",
        flush=True,
    )


# ---- joins ------------------------------------------------------------------------------


def spread(samples: list[float]) -> dict[str, Any]:
    if not samples:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None, "samples": 0}
    values = np.asarray(samples) * 1000
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 1),
        "p99_ms": round(float(np.percentile(values, 99)), 1),
        "max_ms": round(float(values.max()), 1),
        "samples": len(samples),
    }


async def one_join(
    server: Served, media: EncodedMedia, ledger: Ledger, code: str, cookie: str, name: str
) -> tuple[SioParticipant, dict[str, float | None]]:
    joiner = SioParticipant(name, media, ledger)
    await joiner.join(server.base_url, code, cookie)
    deadline = time.monotonic() + JOIN_TIMEOUT
    first = joiner.first
    while time.monotonic() < deadline and len(first.keyframe_by_owner) < ROOM_SIZE - 1:
        await asyncio.sleep(0.005)
    start = joiner.joined_at
    every = (
        max(first.keyframe_by_owner.values())
        if len(first.keyframe_by_owner) >= ROOM_SIZE - 1
        else None
    )
    return joiner, {
        "signalling_s": joiner.negotiated_at - start,
        "first_packet_s": first.any - start if first.any else None,
        "first_frame_s": first.keyframe - start if first.keyframe else None,
        "frames_from_all_s": every - start if every else None,
    }


async def run_joins(args: Any, media: EncodedMedia, report: dict[str, Any]) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="sfu-load-"))
    try:
        async with served(workdir, report) as server:
            ledger = Ledger()
            room = await create_room(server.db, ROOM_SIZE, server.ceiling)
            lifetime = 60.0 + args.joins * (args.gap + 3.0)
            early = [SioParticipant(f"early-{i}", media, ledger) for i in range(ROOM_SIZE - 1)]
            for person in early:
                person.lifetime = lifetime
            try:
                await asyncio.gather(
                    *(
                        p.join(server.base_url, room.code, c)
                        for p, c in zip(early, room.cookies[:-1], strict=True)
                    )
                )
                if not await wait_flowing(early, FLOW_TIMEOUT):
                    raise Broken("the first nine never all received each other")
                samples: list[dict[str, float | None]] = []
                for i in range(args.joins):
                    joiner, sample = await one_join(
                        server, media, ledger, room.code, room.cookies[-1], f"late-{i}"
                    )
                    await joiner.leave()
                    samples.append(sample)
                    await asyncio.sleep(args.gap)
            finally:
                await asyncio.gather(*(p.leave() for p in early))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report["joins"] = {
        key: spread([s[key] for s in samples if s[key] is not None])
        for key in ("signalling_s", "first_packet_s", "first_frame_s", "frames_from_all_s")
    }
    report["joins"]["incomplete"] = sum(1 for s in samples if s["frames_from_all_s"] is None)
    print(f"{'from the join ack':<24} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'joins':>6}")
    for key, label in (
        ("signalling_s", "signalling done"),
        ("first_packet_s", "first packet"),
        ("first_frame_s", "first remote frame"),
        ("frames_from_all_s", "frames from all nine"),
    ):
        s = report["joins"][key]
        print(
            f"{label:<24} {fmt(s['p50_ms']):>8} {fmt(s['p99_ms']):>8} {fmt(s['max_ms']):>8} "
            f"{s['samples']:>6}"
        )


# ---- soak -------------------------------------------------------------------------------


async def run_soak(args: Any, media: EncodedMedia, report: dict[str, Any]) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="sfu-load-"))
    report["minutes"] = []
    try:
        async with served(workdir, report) as server:
            pid = server.process.pid
            idle = rss_mb(pid)
            report["server_idle_rss_mb"] = round(idle, 1)
            ledger = Ledger()
            lifetime = 120.0 + 60.0 * args.minutes
            filled = await fill_rooms(server, media, ledger, args.rooms, lifetime)
            participants = args.rooms * ROOM_SIZE
            print(SOAK_HEADER, flush=True)
            try:
                everyone = [p for people in filled for p in people]
                # Not flowing everywhere yet is a figure (delivery), not a reason to stop.
                report["all_flowing"] = await wait_flowing(everyone, FLOW_TIMEOUT + 5 * args.rooms)
                for minute in range(1, args.minutes + 1):
                    result = await measure(pid, ledger, ROOM_SIZE, 0.0, args.sample)
                    result["video_fps_per_stream"] = round(
                        result["video_fps_per_stream"] / args.rooms, 1
                    )
                    result.update(
                        minute=minute,
                        open_files=open_files(pid),
                        rss_mb_per_participant=round(
                            (result["server_rss_mb"] - idle) / participants, 2
                        ),
                    )
                    report["minutes"].append(result)
                    print_soak_row(result)
            finally:
                await empty_rooms(filled)
            await asyncio.sleep(3.0)
            report["server_rss_mb_after_leaving"] = round(rss_mb(pid), 1)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rss = [m["server_rss_mb"] for m in report["minutes"]]
    if len(rss) >= 4:
        half = len(rss) // 2
        slope = np.polyfit(np.arange(half, len(rss)), rss[half:], 1)[0]
        report["rss_growth_mb_per_minute_second_half"] = round(float(slope), 3)
    print(
        f"idle {report['server_idle_rss_mb']} MB; after everyone left "
        f"{report.get('server_rss_mb_after_leaving')} MB; RSS growth over the second half "
        f"{report.get('rss_growth_mb_per_minute_second_half')} MB/min"
    )


SOAK_HEADER = (
    f"{'min':>4} {'RSS MB':>7} {'MB/part':>7} {'fds':>5} {'fwd pkt/s':>9} {'deliv':>6} "
    f"{'srv CPU':>8} {'µs/pkt':>7} {'audio p99':>9} {'video p99':>9} {'gen CPU':>8}"
)


def print_soak_row(r: dict[str, Any]) -> None:
    delays = r["added_delay"]
    print(
        f"{r['minute']:>4} {r['server_rss_mb']:>7.1f} {r['rss_mb_per_participant']:>7.2f} "
        f"{r['open_files']:>5} {r['forwarded_pps']:>9.0f} "
        f"{100 * (r['delivered_ratio'] or 0):>5.1f}% {r['server_cpu_core_pct']:>7.1f}% "
        f"{fmt(r['server_cpu_us_per_packet']):>7} {fmt(delays['audio']['p99_ms']):>9} "
        f"{fmt(delays['video']['p99_ms']):>9} {r['generator_cpu_core_pct']:>7.1f}%",
        flush=True,
    )


# ---- main -------------------------------------------------------------------------------


def parse_counts(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


async def run(args: Any) -> dict[str, Any]:
    media = encode_media()
    report: dict[str, Any] = {**run_header(media), "mode": args.mode, "args": vars(args)}
    IcePolicy(("127.0.0.1",), 2.0, 10.0).install()
    runner = {"rooms": run_rooms, "joins": run_joins, "soak": run_soak}[args.mode]
    await runner(args, media, report)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    rooms = modes.add_parser("rooms", help="rooms of ten until the server saturates")
    rooms.add_argument("--rooms", type=parse_counts, default=[1, 2, 3, 4, 5, 6])
    rooms.add_argument("--warmup", type=float, default=4.0)
    rooms.add_argument("--window", type=float, default=10.0)
    joins = modes.add_parser("joins", help="join-to-first-frame over many joins")
    joins.add_argument("--joins", type=int, default=40)
    joins.add_argument("--gap", type=float, default=1.0)
    soak = modes.add_parser("soak", help="rooms of ten for many minutes, memory per minute")
    soak.add_argument("--rooms", type=int, default=3)
    soak.add_argument("--minutes", type=int, default=30)
    soak.add_argument("--sample", type=float, default=60.0)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > GENERATOR_CORE:
        os.sched_setaffinity(0, {GENERATOR_CORE})
    started = time.monotonic()
    try:
        report = asyncio.run(run(args))
    except Broken as exc:
        print(f"BROKEN: {exc}", file=sys.stderr)
        return 1
    write_report(report, started, results_path(args.mode), lambda _report: None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
