"""End-to-end: a clinician shares their screen; everyone in their place sees it large.

Chromium's fake devices cover screen capture too: with ``--use-fake-ui-for-media-stream``
the screen picker is accepted at once and ``--use-fake-device-for-media-stream`` gives a
fake monitor whose picture is mostly green. No camera here is green, so a receiver
proves by colour that it decodes the shared screen (and, in the tile, the sharer's
camera) — the page's own getDisplayMedia path runs unchanged.

The therapist (Alice, red camera) shares: Bob (blue), Carol (yellow) and Dan (magenta)
see the stage labelled "Alice is sharing their screen", decode the green screen on it
and Alice's red camera in her tile; Alice sees "You are sharing your screen" instead;
patients have no share button and publish two m-lines (clinicians three). In pair work
(Bob with Carol) only Dan, in the plenary with Alice, still sees it: the paired
patients' screen m-line decodes nothing more. Back in the plenary everyone sees it
again. "Stop sharing" hides the stage everywhere; so does the browser ending the capture
(its own "Stop sharing": the track's ``ended`` event).

A second test: one sharer at a time. A cancelled screen choice says so and changes
nothing; a co-facilitator (Cy) shares, Alice's attempt is refused with the server's
words naming Cy; Cy's page reloaded while sharing tells the server it no longer shares.
Alice shares then, and goes on sharing through a network drop.

Streams that stop are compared across settle windows (asyncio.sleep), never timed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Site
from tests.e2e.group import admitted_patients, therapist_in_new_room
from tests.e2e.room_page import (
    BLUE,
    GREEN,
    RED,
    RGB,
    YELLOW,
    Browsers,
    RoomPage,
    eventually,
    looks_like,
    session_cookie,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

MAGENTA: RGB = (255, 0, 255)
# Chromium's fake monitor (what getDisplayMedia captures with the fake devices).
SCREEN: RGB = GREEN
COLOURS: dict[str, RGB] = {"Alice": RED, "Bob": BLUE, "Carol": YELLOW, "Dan": MAGENTA}
SHARE = "#screen-toggle"
# Long enough for ~20 frames of the screen to arrive if it were forwarded.
SETTLE_S = 1.5
# Frames already on the wire when the routing changed.
IN_FLIGHT = 5

# Frames decoded and packets received on the subscribe connection's screen m-line (the
# last one, after the slots), or null without a subscribe connection.
_SCREEN_INBOUND_JS = """
async () => {
  for (const pc of window.__telecircleTestPeers || []) {
    if (pc.connectionState === 'closed') continue;
    const transceivers = pc.getTransceivers();
    if (transceivers.length === 0 || transceivers.some((t) => t.direction !== 'recvonly')) {
      continue;
    }
    const screen = transceivers[transceivers.length - 1];
    const stats = await screen.receiver.getStats();
    for (const report of stats.values()) {
      if (report.type === 'inbound-rtp') {
        return { frames: report.framesDecoded || 0, packets: report.packetsReceived || 0 };
      }
    }
    return { frames: 0, packets: 0 };
  }
  return null;
}
"""

# The page's publish connection: how many m-lines it sends, and the state of the track
# on the third (the screen; null: nothing sent).
_PUBLISH_JS = """
() => {
  for (const pc of window.__telecircleTestPeers || []) {
    if (pc.connectionState === 'closed') continue;
    const transceivers = pc.getTransceivers();
    if (transceivers.length === 0 || transceivers.some((t) => t.direction !== 'sendonly')) {
      continue;
    }
    const screen = transceivers[2];
    const track = screen ? screen.sender.track : null;
    return { mlines: transceivers.length, screen: track ? track.readyState : null };
  }
  return null;
}
"""

# Test-only: what the browser does when its own "Stop sharing" is pressed (headless
# Chromium shows no such bar): the capture track fires "ended".
_BROWSER_STOPS_SHARING_JS = """
() => {
  for (const pc of window.__telecircleTestPeers || []) {
    if (pc.connectionState === 'closed') continue;
    const screen = pc.getTransceivers()[2];
    const track = screen && screen.sender.track;
    if (track) {
      track.dispatchEvent(new Event('ended'));
      return true;
    }
  }
  return false;
}
"""

# Test-only: the user cancels the browser's screen picker once (Chromium's fake UI
# always accepts it), as Chromium reports a cancelled choice.
_CANCEL_NEXT_PICK_JS = """
() => {
  const devices = navigator.mediaDevices;
  const original = devices.getDisplayMedia.bind(devices);
  devices.getDisplayMedia = () => {
    devices.getDisplayMedia = original;
    return Promise.reject(new DOMException('Permission denied by user', 'NotAllowedError'));
  };
}
"""


async def screen_inbound(page: RoomPage) -> dict[str, int]:
    result: dict[str, int] | None = await page.page.evaluate(_SCREEN_INBOUND_JS)
    assert result is not None, f"{page.name}: no subscribe connection"
    return result


async def publishing(page: RoomPage) -> dict[str, Any]:
    result: dict[str, Any] | None = await page.page.evaluate(_PUBLISH_JS)
    assert result is not None, f"{page.name}: no publish connection"
    return result


async def stage(page: RoomPage) -> str | None:
    """The stage's label while it is shown (None: hidden)."""
    if not await page.page.is_visible("#screen-stage"):
        return None
    return (await page.page.inner_text("#screen-stage-label")).strip()


async def wait_stage(page: RoomPage, label: str | None, timeout: float = 30) -> None:
    await eventually(
        lambda: stage(page), lambda now: now == label, timeout, f"{page.name}: stage {label!r}"
    )


async def wait_screen(page: RoomPage, sharer: str) -> None:
    """The stage names ``sharer`` and decodes the fake screen's colour."""
    await wait_stage(page, f"{sharer} is sharing their screen")
    await eventually(
        lambda: page.video_colour("#screen-video"),
        lambda colour: looks_like(colour, SCREEN),
        40,
        f"{page.name}: the shared screen decoded",
    )


async def wait_sharing(page: RoomPage, sharing: bool) -> None:
    """The sharer's own button and indicator (never their own screen large)."""
    text = "Stop sharing" if sharing else "Share screen"
    await page.wait_button(
        SHARE,
        lambda b: b["text"] == text and b["pressed"] == str(sharing).lower() and not b["disabled"],
        f"share button {text!r}",
    )
    assert await page.page.is_visible("#screen-self") == sharing
    if sharing:
        assert (await page.page.inner_text("#screen-self")).strip() == "You are sharing your screen"
        assert await stage(page) is None


async def wait_dataset(page: RoomPage, key: str, value: str) -> None:
    await eventually(
        lambda: page.page.get_attribute("#app", f"data-{key}"),
        lambda now: now == value,
        30,
        f"{page.name}: #app data-{key}={value}",
    )


async def screen_stops(pages: list[RoomPage]) -> None:
    """Across a settle window, no page decodes more of the screen than was in flight."""
    before = [await screen_inbound(page) for page in pages]
    await asyncio.sleep(SETTLE_S)  # a settle window, not a timing assertion
    for page, was in zip(pages, before, strict=True):
        now = await screen_inbound(page)
        assert now["frames"] - was["frames"] <= IN_FLIGHT, f"{page.name} still decodes: {now}"


async def screen_flows(page: RoomPage) -> None:
    was = await screen_inbound(page)
    await eventually(
        lambda: screen_inbound(page),
        lambda now: now["frames"] > was["frames"] + IN_FLIGHT,
        20,
        f"{page.name}: screen frames arriving",
    )


async def test_the_screen_is_shown_large_to_everyone_in_the_sharers_place(
    site: Site, browsers: Browsers, artifacts_dir: Path
) -> None:
    room_id, alice = await therapist_in_new_room(site, browsers, "Screen group")
    patients = await admitted_patients(
        site, browsers, room_id, alice, {n: COLOURS[n] for n in ("Bob", "Carol", "Dan")}
    )
    bob, carol, dan = patients["Bob"], patients["Carol"], patients["Dan"]
    for page in patients.values():
        await page.wait_colour("Alice", RED)

    # Only clinicians share: a patient has no button and offers no screen m-line.
    for page in patients.values():
        assert await page.page.locator(SHARE).count() == 0
        assert await page.page.locator("#screen-self").count() == 0
        assert (await publishing(page))["mlines"] == 2
    assert await publishing(alice) == {"mlines": 3, "screen": None}
    await wait_sharing(alice, False)

    # ---- Alice shares: everyone else sees it large, and her camera in her tile --------
    await alice.page.click(SHARE)
    await wait_sharing(alice, True)
    assert (await publishing(alice))["screen"] == "live"
    for page in patients.values():
        await wait_screen(page, "Alice")
        await page.wait_colour("Alice", RED)
        await wait_dataset(page, "screen", "shown")
    assert await bob.page.get_attribute("#screen-stage", "data-picture") == "shown"
    fit = await bob.page.eval_on_selector("#screen-video", "(v) => getComputedStyle(v).objectFit")
    assert fit == "contain"
    stage_width = await bob.page.eval_on_selector("#screen-video", "(v) => v.clientWidth")
    tile_width = await bob.page.eval_on_selector("#tiles .tile", "(t) => t.clientWidth")
    assert stage_width > 2 * tile_width, (stage_width, tile_width)
    await bob.screenshot(artifacts_dir, "screen-shared")
    await alice.screenshot(artifacts_dir, "screen-sharing")

    # ---- pair work: only the sharer's place (Alice and Dan in the plenary) sees it ----
    board = alice.page.locator("#pairs-board")
    await board.get_by_label("Group for Bob", exact=True).select_option(label="Pair 1")
    await board.get_by_label("Group for Carol", exact=True).select_option(label="Pair 1")
    await alice.page.click("#start-pairs-button")
    for page in (bob, carol):
        await wait_dataset(page, "place", "pair")
        await wait_stage(page, None)
        await wait_dataset(page, "screen", "none")
    await wait_dataset(dan, "place", "plenary")
    await wait_screen(dan, "Alice")
    await screen_stops([bob, carol])
    await screen_flows(dan)
    await wait_sharing(alice, True)
    await carol.screenshot(artifacts_dir, "screen-pair")
    await dan.screenshot(artifacts_dir, "screen-plenary-during-pairs")

    await alice.page.click("#pairs-end-button")
    for page in patients.values():
        await wait_dataset(page, "place", "plenary")
        await wait_screen(page, "Alice")

    # ---- "Stop sharing": the stage goes everywhere, nothing more is sent ---------------
    await alice.page.click(SHARE)
    await wait_sharing(alice, False)
    assert (await publishing(alice))["screen"] is None
    for page in patients.values():
        await wait_stage(page, None)
        await wait_dataset(page, "screen", "none")
        assert await page.page.eval_on_selector("#screen-video", "(v) => v.srcObject") is None
    await screen_stops(list(patients.values()))

    # ---- shared again, then ended by the browser (its own "Stop sharing") ------------
    await alice.page.click(SHARE)
    await wait_sharing(alice, True)
    for page in patients.values():
        await wait_screen(page, "Alice")
    assert await alice.page.evaluate(_BROWSER_STOPS_SHARING_JS)
    await wait_sharing(alice, False)
    assert (await publishing(alice))["screen"] is None
    for page in patients.values():
        await wait_stage(page, None)
    assert not await alice.page.is_visible("#screen-error")


async def test_one_sharer_at_a_time(site: Site, browsers: Browsers, artifacts_dir: Path) -> None:
    base = site.server.base_url
    room_id = await asyncio.to_thread(site.therapist.create_room, "Two sharers group", 4)
    cy = await asyncio.to_thread(site.admin.create_clinician, "cy.screen", "Cy", "co_facilitator")
    await asyncio.to_thread(site.therapist.add_co_facilitator, room_id, "cy.screen")
    _, alice = await browsers.open(
        "Alice", RED, cookies=[session_cookie(base, site.therapist.session_cookie())]
    )
    await alice.enter_as_clinician(f"{base}/room/{room_id}")
    _, cy_page = await browsers.open(
        "Cy", BLUE, cookies=[session_cookie(base, cy.session_cookie())]
    )
    await cy_page.enter_as_clinician(f"{base}/room/{room_id}")
    await alice.wait_colour("Cy", BLUE)
    await cy_page.wait_colour("Alice", RED)

    # The screen picker cancelled: said so, and nothing changes.
    await alice.page.evaluate(_CANCEL_NEXT_PICK_JS)
    await alice.page.click(SHARE)
    error = alice.page.locator("#screen-error")
    await error.wait_for(state="visible", timeout=15_000)
    assert "cancelled" in (await error.inner_text()).lower()
    assert await error.get_attribute("role") == "alert"
    await wait_sharing(alice, False)
    assert (await publishing(alice))["screen"] is None
    await wait_stage(cy_page, None)

    # Cy shares; Alice's try is refused with the server's words, and she sends nothing.
    await cy_page.page.click(SHARE)
    await wait_sharing(cy_page, True)
    await wait_screen(alice, "Cy")
    await alice.page.click(SHARE)
    await eventually(
        error.inner_text,
        lambda text: "Cy is sharing their screen already" in text,
        15,
        "Alice: refused while Cy shares",
    )
    await wait_sharing(alice, False)
    assert (await publishing(alice))["screen"] is None
    await wait_screen(alice, "Cy")
    await alice.screenshot(artifacts_dir, "screen-refused")

    # Cy's page reloads while sharing: the new page has no capture and says so.
    await cy_page.page.reload()
    await cy_page.wait_state("connected")
    await wait_sharing(cy_page, False)
    await wait_stage(alice, None)

    # Now Alice may share; through a network drop too (new connections, same capture).
    await alice.page.click(SHARE)
    await wait_sharing(alice, True)
    assert not await alice.page.is_visible("#screen-error")
    await wait_screen(cy_page, "Alice")
    seen = len(await alice.state_history())
    await alice.page.evaluate(
        "window.__telecircleTestSockets.filter((s) => s.readyState === 1).forEach((s) => s.close())"
    )
    await alice.wait_state_seen("reconnecting", since=seen, timeout=10)
    await alice.wait_state("connected")
    await wait_sharing(alice, True)
    assert await publishing(alice) == {"mlines": 3, "screen": "live"}
    await wait_screen(cy_page, "Alice")
    await screen_flows(cy_page)
    await alice.page.click(SHARE)
    await wait_sharing(alice, False)
    await wait_stage(cy_page, None)
