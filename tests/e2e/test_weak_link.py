"""End-to-end: a patient on a weak link sees the group's video paused, never its audio.

Cy's Chromium runs in a network namespace (tests/e2e/netns.py); Alice (the therapist)
and Bob run on the host, their fake cameras full of noise so that each sends all the
video bitrate it may. Once everyone sees and hears everyone, what reaches Cy's namespace
is throttled to 200 kbit/s (a token bucket with a 300 ms queue): less than Alice's and
Bob's video, more than their audio. Cy's browser reports the loss and its falling
bandwidth estimate; the server pauses Alice's and Bob's video for Cy alone, and Cy's
tiles say "Video paused — weak connection" while Cy goes on hearing both. Alice and Bob
keep seeing each other. With the throttle lifted the videos come back by themselves
(the server tries them again), the labels go, and Cy decodes new frames of both.

The server's weak-video timers are shortened (its settings, from the environment);
counters are compared across windows, never timed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from tests.e2e.conftest import Server, Site, browser_args, server_on_host_link
from tests.e2e.netns import PathCutLab
from tests.e2e.room_page import (
    BLUE,
    GREEN,
    RED,
    Browsers,
    RoomPage,
    eventually,
    grown,
    inbound,
    session_cookie,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

NOISE = 40
THROTTLE = "200kbit"
# Long enough for ~50 audio packets, and ~15 frames at the fake camera's 15 fps.
WINDOW_S = 3.0
PACKETS_IN_WINDOW = 25
FRAMES_IN_WINDOW = 10
TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, lab: PathCutLab) -> Iterator[Server]:
    """The server on the veth's host address, with short weak-video timers."""
    environment = {
        "TELECIRCLE_WEAK_VIDEO_HOLD": "2",
        "TELECIRCLE_WEAK_VIDEO_PROBE_AFTER": "4",
        "TELECIRCLE_WEAK_VIDEO_PROBE_MAX": "8",
    }
    with server_on_host_link(tmp_path_factory, environment) as up:
        yield up


async def test_a_weak_link_pauses_video_keeps_audio_and_recovers(
    site: Site, lab: PathCutLab, browsers: Browsers, tmp_path: Path, artifacts_dir: Path
) -> None:
    base = site.server.base_url
    args = browser_args(base)
    room_id = await asyncio.to_thread(site.therapist.create_room, "Weak link group", 3)
    _, alice = await browsers.open(
        "Alice",
        RED,
        cookies=[session_cookie(base, site.therapist.session_cookie())],
        args=args,
        noise=NOISE,
    )
    await alice.enter_as_clinician(f"{base}/room/{room_id}")
    async with AsyncExitStack() as stack:
        inside = Browsers(lab.wrapper, tmp_path, stack)
        try:
            pages: dict[str, RoomPage] = {"Alice": alice}
            for name, colour, pool, noise in (
                ("Bob", GREEN, browsers, NOISE),
                ("Cy", BLUE, inside, 0),
            ):
                invite = await asyncio.to_thread(site.therapist.invite, room_id, name)
                _, page = await pool.open(name, colour, args=args, noise=noise)
                await page.enter_as_patient(invite.url)
                pages[name] = page
            await alice.wait_waiting({"Bob", "Cy"})
            await alice.page.click("#admit-all-button")
            await weak_link(lab, pages, artifacts_dir)
        finally:
            lab.restore()
            await inside.close_all()


async def weak_link(lab: PathCutLab, pages: dict[str, RoomPage], artifacts: Path) -> None:
    alice, bob, cy = pages["Alice"], pages["Bob"], pages["Cy"]
    for name, page in pages.items():
        await page.wait_state("connected")
        await page.wait_remote_names(set(pages) - {name})
    for other, colour in (("Alice", RED), ("Bob", GREEN)):
        await cy.wait_colour(other, colour)
        await cy.wait_hears(other)
    await bob.wait_colour("Alice", RED)
    await alice.wait_colour("Bob", GREEN)
    for name in ("Alice", "Bob"):
        assert not await cy.tile_indicator_shown(name, "weak-video")

    lab.throttle_inbound(THROTTLE)
    for name in ("Alice", "Bob"):
        await cy.wait_tile_indicator(name, "weak-video", timeout=TIMEOUT_S)
    await cy.screenshot(artifacts, "weak-link-video-paused")
    for page, other in ((alice, "Bob"), (bob, "Alice")):
        assert not await page.tile_indicator_shown(other, "weak-video")

    # While paused: Cy hears Alice and Bob, and Alice and Bob see each other.
    ids = {name: await cy.remote_id(name) for name in ("Alice", "Bob")}
    heard = {name: await inbound(cy, pid) for name, pid in ids.items()}
    seen = {
        (alice.name, "Bob"): await inbound(alice, await alice.remote_id("Bob")),
        (bob.name, "Alice"): await inbound(bob, await bob.remote_id("Alice")),
    }
    await asyncio.sleep(WINDOW_S)
    for name, pid in ids.items():
        now = await inbound(cy, pid)
        assert grown(now, heard[name], "audio", PACKETS_IN_WINDOW), (name, heard[name], now)
    for (viewer, sender), before in seen.items():
        page = pages[viewer]
        now = await inbound(page, await page.remote_id(sender))
        assert grown(now, before, "video", FRAMES_IN_WINDOW), (viewer, sender, before, now)

    lab.restore()
    for name in ("Alice", "Bob"):
        await cy.wait_tile_indicator(name, "weak-video", shown=False, timeout=TIMEOUT_S)
    for name, colour in (("Alice", RED), ("Bob", GREEN)):
        pid = ids[name]
        before = await inbound(cy, pid)
        await eventually(
            lambda pid=pid: inbound(cy, pid),  # type: ignore[misc]
            lambda now, before=before: grown(now, before, "video", FRAMES_IN_WINDOW),  # type: ignore[misc]
            TIMEOUT_S,
            f"Cy decodes {name} again",
        )
        await cy.wait_colour(name, colour)
    await cy.screenshot(artifacts, "weak-link-video-back")
