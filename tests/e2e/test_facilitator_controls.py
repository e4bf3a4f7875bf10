"""End-to-end: the facilitator's controls, enforced by the server, in four browsers.

The therapist (Alice, red camera) runs a room whose policy keeps a muted patient muted
until let speak; Bob (green), Carol (blue) and Dan (yellow) are admitted. She mutes Bob:
his page says so and he cannot unmute, and his audio stops reaching everyone (their
inbound-rtp statistics for his slot stop counting) although his browser goes on sending
it, while Carol's audio and Bob's video keep arriving. Bob and then Dan raise a hand: the
console lists them in that order; letting Bob speak lowers his hand and his audio arrives
again once he unmutes (being let speak does not make him live by itself). Carol's camera
is turned off (her video stops being decoded anywhere) and on again when she chooses
(her colour is back). Dan's "I need a moment" reaches Alice's console and nobody else's
page. Locked, the session refuses to admit; Dan, sent to the waiting room, sees the
waiting screen and leaves everyone's grid, and once unlocked and admitted again is back
with his video. "End session for all" ends every page. A second test removes a patient
and withdraws their link, and mutes all patients.

Statistics are compared across settle windows (asyncio.sleep), never timed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.conftest import Site
from tests.e2e.group import admitted_patients
from tests.e2e.room_page import (
    BLUE,
    GREEN,
    RED,
    YELLOW,
    Browsers,
    RoomPage,
    eventually,
    session_cookie,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

# Long enough for ~75 audio packets and ~20 video frames to arrive if they were forwarded.
SETTLE_S = 1.5
# Packets (or frames) already on the wire when the server acknowledged a control.
IN_FLIGHT = 5
MIC = "#mic-toggle"
CAMERA = "#camera-toggle"
HAND = "#hand-toggle"
MOMENT = "#moment-toggle"


async def open_room(
    site: Site, browsers: Browsers, name: str, may_unmute: bool
) -> tuple[str, RoomPage]:
    """A new room (its unmute policy set on the clinic's room page) with the therapist
    in its session."""
    room_id = await asyncio.to_thread(site.therapist.create_room, name, 5)
    base = site.server.base_url
    cookie = session_cookie(base, site.therapist.session_cookie())
    _, alice = await browsers.open("Alice", RED, cookies=[cookie])
    await alice.page.goto(f"{base}/clinic/rooms/{room_id}")
    await alice.page.set_checked("input[name=patients_may_unmute]", may_unmute)
    async with alice.page.expect_navigation():
        await alice.page.click("form[action='/clinic/rooms/" + room_id + "'] button[type=submit]")
    assert "Room saved" in (await alice.page.text_content("main") or "")
    await alice.enter_as_clinician(f"{base}/room/{room_id}")
    return room_id, alice


async def snapshot(page: RoomPage, pid: str, kind: str) -> dict[str, float]:
    """Inbound statistics of ``kind`` for ``pid``'s tile (which must have a track)."""
    stats = await (page.tile_audio(pid) if kind == "audio" else page.tile_video(pid))
    assert stats is not None, f"{page.name}: no {kind} track for {pid}"
    return stats


Stats = dict[str, float]


async def wait_stats(
    page: RoomPage, pid: str, kind: str, accept: Callable[[Stats], bool], what: str
) -> Stats:
    async def probe() -> Stats:
        return await snapshot(page, pid, kind)

    return await eventually(probe, accept, 20, f"{page.name}: {what}")


def grown(was: Stats, **by: float) -> Callable[[Stats], bool]:
    """Accepts statistics in which each named counter grew by more than ``by`` it."""
    return lambda now: all(now[key] > was[key] + more for key, more in by.items())


async def test_facilitator_controls_in_four_browsers(
    site: Site, browsers: Browsers, artifacts_dir: Path
) -> None:
    room_id, alice = await open_room(site, browsers, "Controls group", may_unmute=False)
    colours = {"Alice": RED, "Bob": GREEN, "Carol": BLUE, "Dan": YELLOW}
    patients = await admitted_patients(
        site, browsers, room_id, alice, {n: c for n, c in colours.items() if n != "Alice"}
    )
    bob, carol, dan = patients["Bob"], patients["Carol"], patients["Dan"]
    pages = {"Alice": alice, **patients}
    for name, page in pages.items():
        await page.wait_remote_names(set(colours) - {name})
    for name, page in pages.items():
        for other in set(colours) - {name}:
            await page.wait_colour(other, colours[other])
    for name in ("Alice", "Carol", "Dan"):
        await pages[name].wait_hears("Bob")
    await alice.wait_hears("Carol")
    await alice.screenshot(artifacts_dir, "controls-four-connected")

    # ---- (a) Alice mutes Bob: the server stops forwarding his audio ------------------
    listeners = {name: pages[name] for name in ("Alice", "Carol", "Dan")}
    bob_at = {name: await page.remote_id("Bob") for name, page in listeners.items()}
    carol_at_alice = await alice.remote_id("Carol")
    await alice.tile_control("Bob", "force-audio")
    mic = await bob.wait_button(
        MIC, lambda b: b["text"] == "Muted by the facilitator", "mic muted by the facilitator"
    )
    # The room's policy: he may not unmute himself, and is told to raise his hand.
    assert mic["disabled"] and mic["pressed"] == "true", mic
    assert await bob.page.is_visible("#media-hint")
    assert "Raise your hand to ask to speak" in (await bob.page.text_content("#media-hint") or "")
    for page in listeners.values():
        await page.wait_tile_indicator("Bob", "forced-mute")
    assert await bob.page.is_visible('#tiles .tile[data-self="true"] .indicator-forced-mute')
    before = {name: await snapshot(page, bob_at[name], "audio") for name, page in listeners.items()}
    bob_video = await snapshot(alice, bob_at["Alice"], "video")
    carol_audio = await snapshot(alice, carol_at_alice, "audio")
    sent = await bob.packets_sent("audio")
    await asyncio.sleep(SETTLE_S)  # a settle window, not a timing assertion
    for name, page in listeners.items():
        after = await snapshot(page, bob_at[name], "audio")
        assert after["packets"] - before[name]["packets"] <= IN_FLIGHT, (
            f"{name} still receives Bob's audio: {before[name]} -> {after}"
        )
    # Bob's browser goes on sending: it is the server that stops his audio.
    sent_later = await bob.packets_sent("audio")
    assert sent is not None and sent_later is not None and sent_later - sent > 20
    # Everything else keeps flowing: Carol's audio, Bob's video.
    assert (await snapshot(alice, carol_at_alice, "audio"))["packets"] > carol_audio["packets"] + 20
    assert (await snapshot(alice, bob_at["Alice"], "video"))["frames"] > bob_video["frames"] + 5
    await bob.screenshot(artifacts_dir, "controls-muted-by-facilitator")
    await alice.screenshot(artifacts_dir, "controls-bob-muted")

    # ---- Bob, then Dan, raise a hand: listed in order of raising ----------------------
    await bob.page.click(HAND)
    await bob.wait_button(HAND, lambda b: b["pressed"] == "true", "hand raised")
    await alice.wait_hands(["Bob"])
    await dan.page.click(HAND)
    await alice.wait_hands(["Bob", "Dan"])
    await carol.wait_tile_indicator("Dan", "hand")
    await alice.screenshot(artifacts_dir, "controls-hands")

    # ---- (b) Let Bob speak: his hand is answered and his audio arrives again ---------
    muted = {name: await snapshot(page, bob_at[name], "audio") for name, page in listeners.items()}
    await alice.tile_control("Bob", "force-audio")
    # Let speak does not make him live: he may unmute now, and does.
    await bob.wait_button(
        MIC, lambda b: b["text"] == "Unmute microphone" and not b["disabled"], "may unmute"
    )
    await bob.page.click(MIC)
    await bob.wait_button(
        MIC, lambda b: b["text"] == "Mute microphone" and not b["disabled"], "unmuted"
    )
    await bob.wait_button(HAND, lambda b: b["pressed"] == "false", "hand lowered by Alice")
    await alice.wait_hands(["Dan"])
    for name, page in listeners.items():
        was = muted[name]
        await wait_stats(
            page,
            bob_at[name],
            "audio",
            grown(was, packets=20, energy=0),
            "hearing Bob again",
        )
        await page.wait_tile_indicator("Bob", "forced-mute", shown=False)

    # ---- (c) Carol's camera off: her video stops everywhere, then comes back ---------
    watchers = {name: pages[name] for name in ("Alice", "Bob", "Dan")}
    carol_at = {name: await page.remote_id("Carol") for name, page in watchers.items()}
    await alice.tile_control("Carol", "force-video")
    camera = await carol.wait_button(
        CAMERA, lambda b: "by the facilitator" in b["text"], "camera off by the facilitator"
    )
    assert camera["disabled"], camera
    for page in watchers.values():
        await page.wait_tile_indicator("Carol", "forced-camera")
    frames = {
        name: await snapshot(page, carol_at[name], "video") for name, page in watchers.items()
    }
    await asyncio.sleep(SETTLE_S)
    for name, page in watchers.items():
        after = await snapshot(page, carol_at[name], "video")
        assert after["frames"] - frames[name]["frames"] <= IN_FLIGHT, (
            f"{name} still decodes Carol's video: {frames[name]} -> {after}"
        )
    await bob.screenshot(artifacts_dir, "controls-carol-camera-off")
    await carol.screenshot(artifacts_dir, "controls-camera-off-by-facilitator")
    await alice.tile_control("Carol", "force-video")
    await carol.wait_button(
        CAMERA, lambda b: b["text"] == "Turn camera on" and not b["disabled"], "may turn on"
    )
    await carol.page.click(CAMERA)
    await carol.wait_button(CAMERA, lambda b: b["text"] == "Turn camera off", "camera back")
    for name, page in watchers.items():
        was = frames[name]
        await wait_stats(
            page,
            carol_at[name],
            "video",
            grown(was, frames=10),
            "decoding Carol again",
        )
        await page.wait_colour("Carol", BLUE)

    # ---- (d) Dan needs a moment: only the clinicians learn of it -----------------------
    await dan.page.click(MOMENT)
    await dan.wait_button(MOMENT, lambda b: b["pressed"] == "true", "moment asked")
    await alice.wait_moments(["Dan"])
    await alice.screenshot(artifacts_dir, "controls-moment")
    await asyncio.sleep(SETTLE_S)  # long enough for any event to reach the others too
    for page in (bob, carol):
        text = (await page.page.inner_text("#app")).lower()
        assert "needs a moment" not in text
        assert await page.page.locator("#moments-list, .moment-entry").count() == 0
        dan_tile = (await page.tile("Dan").inner_text()).lower()
        assert "moment" not in dan_tile, dan_tile
        own = await page.button_state(MOMENT)
        assert own["pressed"] == "false", own
    # Alice attends to both from her console.
    await alice.console_action("hand-entry", "Dan")
    await alice.wait_hands([])
    await dan.wait_button(HAND, lambda b: b["pressed"] == "false", "hand lowered by Alice")
    await alice.console_action("moment-entry", "Dan")
    await alice.wait_moments([])

    # ---- (e) Locked; Dan back to the waiting room; admitted again once unlocked -------
    await alice.page.click("#lock-button")
    await alice.wait_button("#lock-button", lambda b: b["pressed"] == "true", "locked")
    await alice.tile_control("Dan", "to-lobby")
    await dan.wait_state("lobby")
    assert await dan.page.is_visible("#lobby-wait")
    await dan.screenshot(artifacts_dir, "controls-back-in-waiting-room")
    for name in ("Alice", "Bob", "Carol"):
        await pages[name].wait_remote_names({"Alice", "Bob", "Carol"} - {name})
    await alice.admit("Dan")
    error = await alice.entry_error("Dan")
    assert "locked" in error.lower(), error
    await alice.screenshot(artifacts_dir, "controls-locked")
    await alice.page.click("#lock-button")
    await alice.wait_button("#lock-button", lambda b: b["pressed"] == "false", "unlocked")
    await alice.admit("Dan")
    await dan.wait_state("connected")
    await alice.wait_colour("Dan", YELLOW)
    await dan.wait_colour("Alice", RED)
    await bob.wait_colour("Dan", YELLOW)

    # ---- (f) End session for all ---------------------------------------------------------
    await alice.page.click("#end-session-button")
    assert await alice.page.is_visible("#end-session-confirm")
    await alice.screenshot(artifacts_dir, "controls-end-confirm")
    await alice.page.click("#end-session-confirm-button")
    for page in pages.values():
        await page.wait_state("closed")
        assert await page.page.get_attribute("#app", "data-closed-reason") == "session_ended"
        title = (await page.page.text_content("#notice-title") or "").strip()
        assert title == "The session has ended", title
        await page.screenshot(artifacts_dir, "controls-session-ended")


async def test_remove_with_the_link_withdrawn_and_mute_all(
    site: Site, browsers: Browsers, artifacts_dir: Path
) -> None:
    room_id, alice = await open_room(site, browsers, "Removal group", may_unmute=True)
    patients = await admitted_patients(site, browsers, room_id, alice, {"Eve": GREEN, "Finn": BLUE})
    eve, finn = patients["Eve"], patients["Finn"]
    await alice.wait_remote_names({"Eve", "Finn"})

    # Mute all: every patient, not the clinician; where the policy allows, a patient
    # unmutes themselves (which releases the mute).
    await alice.page.click("#mute-all-button")
    for page in (eve, finn):
        await page.wait_button(
            MIC, lambda b: b["text"].startswith("Muted by the facilitator"), "muted by mute all"
        )
    for name in ("Eve", "Finn"):
        await alice.wait_tile_indicator(name, "forced-mute")
    assert (await alice.button_state(MIC))["text"] == "Mute microphone"
    mic = await finn.button_state(MIC)
    assert not mic["disabled"], mic
    await finn.page.click(MIC)
    await finn.wait_button(MIC, lambda b: b["text"] == "Mute microphone", "unmuted himself")
    await alice.wait_tile_indicator("Finn", "forced-mute", shown=False)
    await alice.wait_hears("Finn")

    # Remove Eve, withdrawing her link: she is told, and her link no longer works.
    await alice.tile_control("Eve", "remove")
    await alice.page.check(".tile .tile-remove-revoke")
    await alice.screenshot(artifacts_dir, "controls-remove-confirm")
    await alice.tile_control("Eve", "remove-confirm")
    await eve.wait_state("closed")
    assert await eve.page.get_attribute("#app", "data-closed-reason") == "removed"
    await eve.screenshot(artifacts_dir, "controls-removed")
    await alice.wait_remote_names({"Finn"})
    await finn.wait_remote_names({"Alice"})
    response = await eve.page.reload()
    assert response is not None and response.status == 401
    assert "access to this page has ended" in (await eve.page.inner_text("body")).lower()
    await eve.screenshot(artifacts_dir, "controls-link-withdrawn")
