"""A room of real Chromium browsers on this machine: do they all see and hear each other?

    .venv/bin/python -m benchmarks.browser_room [--browsers 10] [--settle 20] [--window 30]

Starts the real server, walks first-run setup and makes a therapist and a room through
the site's pages (tests/e2e/site.py), then the therapist's browser enters the session and
N-1 patient browsers (each with its own solid-colour fake camera) open their invites one
after another and are admitted from the lobby. Once the room has settled it checks in
every page that each remote tile decodes the right colour and receives audible audio.
Prints the counts, the load average and how often media paths were rebuilt (server
log). Never fails on timing; exits non-zero only if the server or browsers could not
start.

On a 2-core machine ten browsers plus the server overload it (load 10-20): this is a
stress check of recovery, not a model of production, where browsers run elsewhere.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.async_api import async_playwright
from tests.e2e.room_page import (
    BLUE,
    GREEN,
    RECORD_PEER_CONNECTIONS_JS,
    RED,
    RGB,
    RoomPage,
    launch,
    looks_like,
    session_cookie,
    write_y4m,
)
from tests.e2e.site import prepare_clinic

from benchmarks.sfu_bench import BIN, free_port, stop_process, wait_healthy

COLOURS = [RED, GREEN, BLUE]
CHROMIUM = Path("/usr/bin/chromium")
THERAPIST = "Alice"  # the name prepare_clinic gives the therapist


async def tile_checks(
    page: RoomPage, colours: dict[str, RGB], window: float
) -> tuple[int, int, int]:
    """(remote tiles, decoding the right colour, audible) within ``window`` seconds."""
    deadline = time.monotonic() + window
    tiles = [t for t in await page.tiles() if not t.is_self]
    seen = heard = 0
    for tile in tiles:
        expected = colours[tile.name]
        while time.monotonic() < deadline:
            if looks_like(await page.tile_colour(tile.participant_id), expected):
                seen += 1
                break
            await asyncio.sleep(0.3)
        while time.monotonic() < deadline:
            audio = await page.tile_audio(tile.participant_id)
            if audio and audio["packets"] > 20 and audio["energy"] > 0:
                heard += 1
                break
            await asyncio.sleep(0.3)
    return len(tiles), seen, heard


async def open_page(playwright: Any, workdir: Path, name: str, colour: RGB) -> RoomPage:
    camera = write_y4m(workdir / f"{name}.y4m", colour, 160, 120)
    browser = await launch(playwright, CHROMIUM, camera)
    context = await browser.new_context(viewport={"width": 1200, "height": 800})
    tab = await context.new_page()
    await tab.add_init_script(RECORD_PEER_CONNECTIONS_JS)
    return RoomPage(tab, name)


async def run(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="browser-room-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = workdir / "server.log"
    command = [str(BIN / "telecircle"), "--data-dir", str(workdir / "data"), "serve"]
    # Every browser opens its invite from this machine: lift the per-address limit.
    env = {**os.environ, "TELECIRCLE_INVITE_REDEMPTIONS_PER_WINDOW": "1000"}
    with log_path.open("wb") as log:
        server = subprocess.Popen([*command, "--port", str(port)], stdout=log, stderr=log, env=env)
    try:
        await wait_healthy(f"{base}/healthz", server)
        # First-run setup, a therapist and the room, through the site's own pages.
        _, therapist = await asyncio.to_thread(prepare_clinic, base, log_path)
        room_id = await asyncio.to_thread(therapist.create_room, "bench", args.browsers)
        colours = {THERAPIST: COLOURS[0]}
        async with async_playwright() as playwright:
            started = time.monotonic()
            host = await open_page(playwright, workdir, THERAPIST, colours[THERAPIST])
            await host.page.context.add_cookies([session_cookie(base, therapist.session_cookie())])
            await host.enter_as_clinician(f"{base}/room/{room_id}")
            pages = [host]
            # Patients open their invites one after another; the therapist admits each.
            for i in range(1, args.browsers):
                name = f"P{i}"
                colours[name] = COLOURS[i % len(COLOURS)]
                invite = await asyncio.to_thread(therapist.invite, room_id, name)
                page = await open_page(playwright, workdir, name, colours[name])
                await page.enter_as_patient(invite.url)
                await host.admit(name)
                await page.wait_state("connected", timeout=60)
                pages.append(page)
            joined_s = time.monotonic() - started
            await asyncio.sleep(args.settle)
            totals = [0, 0, 0]
            states = []
            for page in pages:
                counts = await tile_checks(page, colours, args.window)
                totals = [a + b for a, b in zip(totals, counts, strict=True)]
                states.append(await page.state())
        log_text = log_path.read_text(errors="replace")
        print(f"browsers: {args.browsers}, all joined in {joined_s:.1f} s")
        print(f"page states: {sorted(set(s or '?' for s in states))}")
        print(f"remote tiles {totals[0]}, right colour {totals[1]}, audible {totals[2]}")
        print(f"load average: {os.getloadavg()[0]:.1f}")
        print(f"media paths rebuilt: {log_text.count('media.path_lost')}")
        print(f"event-loop stalls logged: {log_text.count('event loop stalled')}")
        return 0
    finally:
        stop_process(server)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--browsers", type=int, default=10)
    parser.add_argument("--settle", type=float, default=20.0)
    parser.add_argument("--window", type=float, default=30.0)
    args = parser.parse_args()
    if not CHROMIUM.exists():
        print("needs Debian's chromium at /usr/bin/chromium", file=sys.stderr)
        return 2
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
