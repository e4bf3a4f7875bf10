"""Loss and jitter between one participant and the SFU: frame rates delivered each way.

Run from the repository root::

    .venv/bin/python -m benchmarks.lossy_link                      # 20 s per phase
    .venv/bin/python -m benchmarks.lossy_link --seconds 8 --losses 0.05  # quick

The server runs in this process (tests/conftest.py's ``start_server``: real aiohttp,
socket.io and SFU on loopback). Three synthetic participants (tests/integration/
lossy_session.py: aiortc peers publishing VP8 at 10 fps, one packet per frame, and
Opus, each decoding what it receives) join one room; "Lossy" reaches the server through
tests/integration/lossy_relay.py's user-space relay (this kernel has no netem). The
session goes through phases on the same connections: clean, then each ``--losses``
rate in both directions with ``--delay-min``..``--delay-max`` of delay (in order), and
clean again. Each phase reports the frames arrived and decoded per second from Lossy
(uplink), to Lossy (downlink) and between the two clean participants (the baseline of
the same phase), the relay's drops and the dropped packets that came back when sent
again, the NACKs and PLIs each participant sent and received, and how often the SFU
asked Lossy again for a lost packet.

Prints each phase and writes ``benchmarks/results/lossy_link.json``. Never fails on a
figure; exits 1 only if the session breaks (a media path reported lost).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiortc
from tests.conftest import start_server
from tests.integration.lossy_relay import CLEAN, Impairment, LossyRelay
from tests.integration.lossy_session import (
    CLEAN_NAMES,
    LOSSY_NAME,
    Member,
    Sampler,
    describe,
    everyone_decodes_everyone,
    hold_phase,
    join,
    lost_packets_of,
    media_room,
    summary,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "lossy_link.json"
SETTLE_S = 2.0  # after each change of impairment, before measuring


async def run(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    server = await start_server(data_dir)
    relay = LossyRelay(seed=args.seed)
    members: list[Member] = []
    sampler: Sampler | None = None
    phases: list[dict[str, Any]] = []
    try:
        code = await server.create_room(limit=4)
        lossy = await join(server, code, LOSSY_NAME, 1, relay)
        members = [lossy]
        for colour, name in enumerate(CLEAN_NAMES, start=2):
            members.append(await join(server, code, name, colour))
        await everyone_decodes_everyone(members)
        room = media_room(server, code)
        sampler = Sampler(members, limit_s=60 + args.seconds * (len(args.losses) + 2) * 2)
        sampler.start()
        plan = [("clean", CLEAN)]
        plan += [
            (f"loss {loss:.0%}", Impairment(loss, args.delay_min, args.delay_max))
            for loss in args.losses
        ]
        plan.append(("clean again", CLEAN))
        for label, impairment in plan:
            relay.impair(impairment)
            await asyncio.sleep(SETTLE_S)
            lost = lost_packets_of(room, lossy)
            asked_before, given_up_before = lost.asked_again, lost.given_up
            figures = await hold_phase(label, sampler, relay, args.seconds)
            print(describe(figures, impairment, args.seed))
            phase = summary(figures)
            phase["impairment"] = vars(impairment)
            phase["server_asked_again"] = lost.asked_again - asked_before
            phase["server_gave_up"] = lost.given_up - given_up_before
            print(
                f"  the SFU asked Lossy again for {phase['server_asked_again']} packets, "
                f"gave up {phase['server_gave_up']}\n"
            )
            phases.append(phase)
        lost_paths = sum(m.media_lost_events() for m in members)
    finally:
        if sampler is not None:
            await sampler.stop()
        for member in members:
            await member.client.close()
            await member.peer.close()
        relay.close()
        await server.runner.cleanup()
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "aiortc": aiortc.__version__,
            "loadavg_at_start": os.getloadavg(),
        },
        "seed": args.seed,
        "seconds_per_phase": args.seconds,
        "phases": phases,
        "media_paths_lost": lost_paths,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="measured per phase")
    parser.add_argument(
        "--losses", type=float, nargs="+", default=[0.05, 0.10], help="loss rates, each way"
    )
    parser.add_argument("--delay-min", type=float, default=0.020, help="seconds")
    parser.add_argument("--delay-max", type=float, default=0.050, help="seconds")
    parser.add_argument("--seed", type=int, default=7, help="of the relay's draws")
    args = parser.parse_args()
    if args.seconds < 2 or any(not 0 <= loss < 1 for loss in args.losses):
        parser.error("--seconds is at least 2; each loss is a fraction below 1")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lossy-link-") as data_dir:
        report = asyncio.run(run(args, Path(data_dir)))
    report["total_runtime_s"] = round(time.monotonic() - started, 1)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    print(f"wrote {RESULTS.relative_to(ROOT)} in {report['total_runtime_s']} s")
    if report["media_paths_lost"]:
        print(f"BROKEN: {report['media_paths_lost']} media paths reported lost", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
