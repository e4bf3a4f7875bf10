"""End-to-end: real server, three headless Chromium browsers with distinct fake cameras.

Each browser must show everyone's tile with the right name and decode the two others'
video, checked by colour (red, green, blue cameras). Then: camera off shows on the
others, Leave removes the tile, closing a browser abruptly removes its tile, a full
room refuses a third person with the server's message, and an unknown code is a 404.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from playwright.async_api import Browser, Playwright, async_playwright

from tests.e2e.conftest import RECONNECT_GRACE_S, Server
from tests.e2e.room_page import (
    BLUE,
    CHROMIUM_ARGS,
    GREEN,
    RECORD_PEER_CONNECTIONS_JS,
    RED,
    RGB,
    RoomPage,
    eventually,
    launch,
    write_y4m,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

LEAVE_TIMEOUT_S = 15
ABRUPT_LEAVE_TIMEOUT_S = 20


class Browsers:
    """Launches one browser process per participant and closes what is left at the end."""

    def __init__(self, chromium: Path, camera_dir: Path, stack: AsyncExitStack) -> None:
        self.chromium = chromium
        self.camera_dir = camera_dir
        self.stack = stack
        self.playwright: Playwright | None = None
        self.browsers: list[Browser] = []

    async def open(self, name: str, colour: RGB) -> tuple[Browser, RoomPage]:
        if self.playwright is None:
            self.playwright = await self.stack.enter_async_context(async_playwright())
        camera = write_y4m(self.camera_dir / f"{name.lower()}.y4m", colour)
        browser = await launch(self.playwright, self.chromium, camera)
        self.browsers.append(browser)
        page = await browser.new_page(viewport={"width": 1000, "height": 700})
        await page.add_init_script(RECORD_PEER_CONNECTIONS_JS)
        return browser, RoomPage(page, name)

    async def close_all(self) -> None:
        for browser in self.browsers:
            if browser.is_connected():
                await browser.close()


@pytest.fixture
async def browsers(chromium_path: Path, tmp_path: Path) -> AsyncIterator[Browsers]:
    async with AsyncExitStack() as stack:
        pool = Browsers(chromium_path, tmp_path, stack)
        try:
            yield pool
        finally:
            await pool.close_all()


async def test_three_browsers_see_and_hear_each_other(
    server: Server, browsers: Browsers, artifacts_dir: Path
) -> None:
    url = server.create_room("E2E group", limit=4)
    colours = {"Alice": RED, "Bob": GREEN, "Carol": BLUE}
    opened = {name: await browsers.open(name, colour) for name, colour in colours.items()}
    pages = {name: page for name, (_, page) in opened.items()}

    for page in pages.values():
        await page.join(url)

    # Everyone sees three tiles with the right names, then decodes the others by colour.
    for name, page in pages.items():
        await page.wait_remote_names(set(colours) - {name})
    for name, page in pages.items():
        for other in set(colours) - {name}:
            await page.wait_colour(other, colours[other])
    for name, page in pages.items():
        for other in set(colours) - {name}:
            await page.wait_hears(other)
    for page in pages.values():
        await page.screenshot(artifacts_dir, "three-connected")

    # Carol mutes her microphone: the others see it, and the server stops forwarding it.
    carol = pages["Carol"]
    await carol.page.click("#mic-toggle")
    for name in ("Alice", "Bob"):
        await eventually(
            lambda p=pages[name]: p.tile_of("Carol"),
            lambda tile: tile is not None and not tile.audio_on,
            15,
            f"{name} seeing Carol muted",
        )
    alice_view = await pages["Alice"].tile_of("Carol")
    assert alice_view is not None
    settled = await pages["Alice"].tile_audio(alice_view.participant_id)
    assert settled is not None
    await asyncio.sleep(1.5)  # a settle window, not a timing assertion
    later = await pages["Alice"].tile_audio(alice_view.participant_id)
    assert later is not None
    # One round trip of packets may still have been on the wire when the mute landed.
    assert later["packets"] - settled["packets"] <= 5, "muted audio is not forwarded"
    await carol.page.click("#mic-toggle")
    await eventually(
        lambda: pages["Alice"].tile_audio(alice_view.participant_id),
        lambda audio: audio is not None and audio["packets"] > later["packets"] + 20,
        15,
        "Alice hearing Carol again after unmute",
    )

    # Bob turns his camera off: the others see the camera-off indicator, then back on.
    bob = pages["Bob"]
    await bob.page.click("#camera-toggle")
    for name in ("Alice", "Carol"):
        await eventually(
            lambda p=pages[name]: p.tile_of("Bob"),
            lambda tile: tile is not None and not tile.video_on and tile.camera_off_shown,
            15,
            f"{name} seeing Bob's camera off",
        )
    await pages["Alice"].screenshot(artifacts_dir, "bob-camera-off")
    await bob.page.click("#camera-toggle")
    for name in ("Alice", "Carol"):
        await eventually(
            lambda p=pages[name]: p.tile_of("Bob"),
            lambda tile: tile is not None and tile.video_on and not tile.camera_off_shown,
            15,
            f"{name} seeing Bob's camera on again",
        )

    # Alice leaves: her tile disappears from Bob and Carol.
    alice = pages["Alice"]
    await alice.page.click("#leave-button")
    await alice.wait_state("left", timeout=LEAVE_TIMEOUT_S)
    assert await alice.page.is_visible("#rejoin-link")
    await alice.screenshot(artifacts_dir, "after-leave")
    for name in ("Bob", "Carol"):
        await pages[name].wait_remote_names({"Bob", "Carol"} - {name}, timeout=LEAVE_TIMEOUT_S)

    # Carol closes her tab: the page's leave beacon frees her seat at once.
    await carol.page.close(run_before_unload=True)
    await bob.wait_remote_names(set(), timeout=LEAVE_TIMEOUT_S)
    assert await bob.state() == "connected"
    await bob.screenshot(artifacts_dir, "alone")


async def test_a_vanished_browser_shows_reconnecting_then_its_seat_frees(
    server: Server, browsers: Browsers, artifacts_dir: Path
) -> None:
    url = server.create_room("Vanishing group", limit=3)
    (_, dana), (eli_browser, eli) = (
        await browsers.open("Dana", RED),
        await browsers.open("Eli", GREEN),
    )
    await dana.join(url)
    await eli.join(url)
    await dana.wait_colour("Eli", GREEN)
    # Eli's browser process dies: no Leave, no beacon. Dana sees "Reconnecting…" on his
    # tile while his seat is held, then the tile goes when the reconnect window ends.
    await eli_browser.close()
    await eventually(
        lambda: dana.tile_of("Eli"),
        lambda tile: tile is not None and not tile.connected,
        ABRUPT_LEAVE_TIMEOUT_S,
        "Dana seeing Eli reconnecting",
    )
    await dana.screenshot(artifacts_dir, "reconnecting")
    await dana.wait_remote_names(set(), timeout=ABRUPT_LEAVE_TIMEOUT_S + RECONNECT_GRACE_S)


async def test_full_room_turns_the_third_person_away(
    server: Server, browsers: Browsers, artifacts_dir: Path
) -> None:
    url = server.create_room("Small group", limit=2)
    first = (await browsers.open("Dana", RED))[1]
    second = (await browsers.open("Eli", GREEN))[1]
    third = (await browsers.open("Fay", BLUE))[1]
    await first.join(url)
    await second.join(url)

    await third.join(url, expect="room_full")
    message = (await third.page.text_content("#notice-message") or "").strip()
    assert message, "the room-full screen shows the server's message"
    assert await third.page.is_visible("#notice-message")
    assert await third.page.is_visible("#retry-button")
    await third.screenshot(artifacts_dir, "room-full")
    # The two inside are unaffected.
    await first.wait_remote_names({"Eli"})
    await second.wait_remote_names({"Dana"})


async def test_unknown_room_code_is_a_404_page(server: Server, browsers: Browsers) -> None:
    _, room = await browsers.open("Gus", RED)
    response = await room.page.goto(f"{server.base_url}/r/no-such-room-code")
    assert response is not None
    assert response.status == 404
    assert "no such room" in (await room.page.text_content("body") or "").lower()


async def test_camera_denied_explains_how_to_allow_it(
    server: Server, chromium_path: Path, artifacts_dir: Path
) -> None:
    url = server.create_room("Denied group", limit=2)
    # Without the fake permission UI, Chromium (driven by Playwright) denies the camera.
    args = [a for a in CHROMIUM_ARGS if a != "--use-fake-ui-for-media-stream"]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium_path), headless=True, args=args
        )
        try:
            room = RoomPage(await browser.new_page(), "Hal")
            await room.page.goto(url)
            await room.wait_state("camera_denied")
            message = (await room.page.text_content("#notice-message") or "").lower()
            assert "allow the camera" in message
            assert await room.page.is_visible("#retry-button")
            await room.screenshot(artifacts_dir, "camera-denied")
        finally:
            await browser.close()


async def test_a_network_drop_comes_back_into_the_same_seat(
    server: Server, browsers: Browsers, artifacts_dir: Path
) -> None:
    url = server.create_room("Flaky group", limit=2)
    (_, fay), (_, gus) = await browsers.open("Fay", RED), await browsers.open("Gus", BLUE)
    await fay.join(url)
    await gus.join(url)
    await fay.wait_colour("Gus", BLUE)
    before = await fay.tile_of("Gus")
    assert before is not None
    # Gus's socket dies without a goodbye (his network drops); his page reconnects by
    # itself and takes his held seat back: same participant, no leave seen by Fay.
    await gus.page.evaluate(
        "window.__telecircleTestSockets.filter((s) => s.readyState === 1).forEach((s) => s.close())"
    )
    await gus.wait_state("reconnecting", timeout=10)
    await gus.wait_state("connected", timeout=30)
    await fay.wait_colour("Gus", BLUE)
    after = await fay.tile_of("Gus")
    assert after is not None and after.participant_id == before.participant_id
    await fay.screenshot(artifacts_dir, "after-network-drop")


async def test_a_dead_media_connection_is_rebuilt_in_the_same_seat(
    server: Server, browsers: Browsers, artifacts_dir: Path
) -> None:
    url = server.create_room("Media drop group", limit=2)
    (_, hal), (_, ida) = await browsers.open("Hal", GREEN), await browsers.open("Ida", RED)
    await hal.join(url)
    await ida.join(url)
    await hal.wait_colour("Ida", RED)
    before = await hal.tile_of("Ida")
    assert before is not None
    # Ida's publish connection dies (closed under her page's feet); her socket lives.
    # The server notices, tells her page, and the page builds new connections on the
    # same seat: Hal sees her video again under the same participant id.
    await ida.page.evaluate("window.__telecircleTestPeers[0].close()")
    await ida.wait_state("reconnecting", timeout=20)
    await ida.wait_state("connected", timeout=30)
    await hal.wait_colour("Ida", RED, timeout=40)
    after = await hal.tile_of("Ida")
    assert after is not None and after.participant_id == before.participant_id
    await ida.wait_colour("Hal", GREEN)
