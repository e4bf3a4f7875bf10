"""End-to-end: real server, headless Chromium browsers with distinct fake cameras.

The therapist (Alice, signed in) enters the room from her account; patients open their
personal invite links, fill the pre-join page and wait in the lobby until she admits
them. Each browser must show everyone's tile with the right name and decode the others'
video, checked by colour (red, green, blue cameras). Then: mute stops forwarding, camera
off shows on the others, Leave removes the tile, closing a browser removes its tile at
once (leave beacon) or after the reconnect window (a vanished browser), a full session
keeps the next patient waiting (who may leave the waiting room), a blocked camera is
explained without stopping anyone joining, dropped connections come back into the same
seat without the lobby, a second tab or device takes the seat from the first, the pre-join
page checks and remembers devices, a co-facilitator goes straight in and runs the lobby,
and signing out (or losing the invite cookie) ends the session with a way back in."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.conftest import RECONNECT_GRACE_S, Site
from tests.e2e.room_page import (
    BLUE,
    CHROMIUM_ARGS,
    GREEN,
    RED,
    RGB,
    Browsers,
    RoomPage,
    eventually,
    session_cookie,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

LEAVE_TIMEOUT_S = 15
ABRUPT_LEAVE_TIMEOUT_S = 20


async def enter_as_therapist(site: Site, browsers: Browsers, room_id: str, colour: RGB) -> RoomPage:
    base = site.server.base_url
    cookie = session_cookie(base, site.therapist.session_cookie())
    _, alice = await browsers.open("Alice", colour, cookies=[cookie])
    await alice.enter_as_clinician(f"{base}/room/{room_id}")
    return alice


async def open_room(
    site: Site, browsers: Browsers, name: str, limit: int, colour: RGB = RED
) -> tuple[str, RoomPage]:
    """A new room with the therapist in its session."""
    room_id = await asyncio.to_thread(site.therapist.create_room, name, limit)
    return room_id, await enter_as_therapist(site, browsers, room_id, colour)


async def patient_waiting(
    site: Site, browsers: Browsers, room_id: str, name: str, colour: RGB
) -> RoomPage:
    """A patient who opened their invite and waits in the lobby."""
    invite = await asyncio.to_thread(site.therapist.invite, room_id, name)
    _, patient = await browsers.open(name, colour)
    await patient.enter_as_patient(invite.url)
    return patient


async def patient_admitted(
    site: Site, browsers: Browsers, room_id: str, therapist: RoomPage, name: str, colour: RGB
) -> RoomPage:
    patient = await patient_waiting(site, browsers, room_id, name, colour)
    await therapist.admit(name)
    await patient.wait_state("connected")
    return patient


async def test_three_browsers_see_and_hear_each_other(
    site: Site, browsers: Browsers, artifacts_dir: Path
) -> None:
    room_id, alice = await open_room(site, browsers, "E2E group", limit=4)
    bob = await patient_waiting(site, browsers, room_id, "Bob", GREEN)
    carol = await patient_waiting(site, browsers, room_id, "Carol", BLUE)
    await alice.wait_waiting({"Bob", "Carol"})
    await alice.screenshot(artifacts_dir, "two-waiting")
    # Bob is admitted alone, then "Admit everyone" lets Carol in.
    await alice.admit("Bob")
    await bob.wait_state("connected")
    await alice.wait_waiting({"Carol"})
    assert await carol.state() == "lobby"
    await alice.page.click("#admit-all-button")
    await carol.wait_state("connected")
    await alice.wait_waiting(set())
    assert await alice.badge() is None

    colours = {"Alice": RED, "Bob": GREEN, "Carol": BLUE}
    pages = {"Alice": alice, "Bob": bob, "Carol": carol}
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
    await carol.page.click("#mic-toggle")
    for name in ("Alice", "Bob"):
        await eventually(
            lambda p=pages[name]: p.tile_of("Carol"),
            lambda tile: tile is not None and not tile.audio_on,
            15,
            f"{name} seeing Carol muted",
        )
    alice_view = await alice.tile_of("Carol")
    assert alice_view is not None
    settled = await alice.tile_audio(alice_view.participant_id)
    assert settled is not None
    await asyncio.sleep(1.5)  # a settle window, not a timing assertion
    later = await alice.tile_audio(alice_view.participant_id)
    assert later is not None
    # One round trip of packets may still have been on the wire when the mute landed.
    assert later["packets"] - settled["packets"] <= 5, "muted audio is not forwarded"
    await carol.page.click("#mic-toggle")
    await eventually(
        lambda: alice.tile_audio(alice_view.participant_id),
        lambda audio: audio is not None and audio["packets"] > later["packets"] + 20,
        15,
        "Alice hearing Carol again after unmute",
    )

    # Bob turns his camera off: the others see the camera-off indicator, then back on.
    await bob.page.click("#camera-toggle")
    for name in ("Alice", "Carol"):
        await eventually(
            lambda p=pages[name]: p.tile_of("Bob"),
            lambda tile: tile is not None and not tile.video_on and tile.camera_off_shown,
            15,
            f"{name} seeing Bob's camera off",
        )
    await alice.screenshot(artifacts_dir, "bob-camera-off")
    await bob.page.click("#camera-toggle")
    for name in ("Alice", "Carol"):
        await eventually(
            lambda p=pages[name]: p.tile_of("Bob"),
            lambda tile: tile is not None and tile.video_on and not tile.camera_off_shown,
            15,
            f"{name} seeing Bob's camera on again",
        )

    # Alice leaves: her tile disappears from Bob and Carol.
    await alice.page.click("#leave-button")
    await alice.wait_state("left", timeout=LEAVE_TIMEOUT_S)
    assert await alice.page.is_visible("#rejoin-link")
    await alice.screenshot(artifacts_dir, "after-leave")
    for name in ("Bob", "Carol"):
        await pages[name].wait_remote_names({"Bob", "Carol"} - {name}, timeout=LEAVE_TIMEOUT_S)

    # Carol closes her tab without Leave: like a reload or a dropped network, her seat
    # is held for the reconnect window, then frees.
    await carol.page.close(run_before_unload=True)
    await bob.wait_remote_names(set(), timeout=ABRUPT_LEAVE_TIMEOUT_S + RECONNECT_GRACE_S)
    assert await bob.state() == "connected"
    await bob.screenshot(artifacts_dir, "alone")


async def test_a_vanished_browser_shows_reconnecting_then_its_seat_frees(
    site: Site, browsers: Browsers, artifacts_dir: Path
) -> None:
    room_id, alice = await open_room(site, browsers, "Vanishing group", limit=3)
    invite = await asyncio.to_thread(site.therapist.invite, room_id, "Eli")
    eli_browser, eli = await browsers.open("Eli", GREEN)
    await eli.enter_as_patient(invite.url)
    await alice.admit("Eli")
    await eli.wait_state("connected")
    await alice.wait_colour("Eli", GREEN)
    # Eli's browser process dies: no Leave, no beacon. Alice sees "Reconnecting…" on
    # his tile while his seat is held, then the tile goes when the reconnect window ends.
    await eli_browser.close()
    await eventually(
        lambda: alice.tile_of("Eli"),
        lambda tile: tile is not None and not tile.connected,
        ABRUPT_LEAVE_TIMEOUT_S,
        "Alice seeing Eli reconnecting",
    )
    await alice.screenshot(artifacts_dir, "reconnecting")
    await alice.wait_remote_names(set(), timeout=ABRUPT_LEAVE_TIMEOUT_S + RECONNECT_GRACE_S)


async def test_a_full_session_keeps_the_next_patient_waiting(
    site: Site, browsers: Browsers, artifacts_dir: Path
) -> None:
    room_id, alice = await open_room(site, browsers, "Small group", limit=2)
    dana = await patient_admitted(site, browsers, room_id, alice, "Dana", GREEN)
    fay = await patient_waiting(site, browsers, room_id, "Fay", BLUE)

    await alice.admit("Fay")
    error = await alice.entry_error("Fay")
    assert "full" in error.lower(), error
    await alice.screenshot(artifacts_dir, "session-full")
    # Fay keeps waiting; the two inside are unaffected.
    assert await fay.state() == "lobby"
    assert await alice.lobby_names() == ["Fay"]
    await alice.wait_remote_names({"Dana"})
    await dana.wait_remote_names({"Alice"})
    # Fay gives up and leaves the waiting room: she is gone from Alice's list.
    await fay.page.click("#lobby-leave-button")
    await fay.wait_state("left")
    await alice.wait_waiting(set())


async def test_wrong_links_get_friendly_pages(site: Site, browsers: Browsers) -> None:
    base = site.server.base_url
    cookie = session_cookie(base, site.therapist.session_cookie())
    _, alice = await browsers.open("Alice", RED, cookies=[cookie])
    response = await alice.page.goto(f"{base}/room/no-such-room")
    assert response is not None
    assert response.status == 404
    _, gus = await browsers.open("Gus", GREEN)
    response = await gus.page.goto(f"{base}/i/not-a-real-invite-token")
    assert response is not None
    assert 400 <= response.status < 500
    assert "this link cannot be used" in (await gus.page.text_content("body") or "").lower()


async def test_a_blocked_camera_is_explained_and_the_patient_can_still_join(
    site: Site, browsers: Browsers, artifacts_dir: Path
) -> None:
    room_id, alice = await open_room(site, browsers, "Denied group", limit=3)
    invite = await asyncio.to_thread(site.therapist.invite, room_id, "Hal")
    # Without the fake permission UI, Chromium (driven by Playwright) denies the camera.
    args = [a for a in CHROMIUM_ARGS if a != "--use-fake-ui-for-media-stream"]
    _, hal = await browsers.open("Hal", GREEN, args=args)

    await hal.open_invite(invite.url)
    await hal.wait_preview("denied")
    status = (await hal.page.text_content("#preview-status") or "").lower()
    assert "allow the camera" in status
    assert await hal.page.is_visible("#preview-retry")
    await hal.screenshot(artifacts_dir, "prejoin-camera-denied")

    # The form still goes through: Hal waits, told again why nobody will see him.
    await hal.fill_prejoin()
    await hal.wait_state("lobby")
    assert await hal.page.get_attribute("#app", "data-devices") == "problem"
    help_text = (await hal.page.text_content("#device-help-message") or "").lower()
    assert "allow the camera" in help_text
    assert await hal.page.is_visible("#device-retry")

    # Admitted, he sees and hears Alice; she sees his tile with the camera off.
    await alice.admit("Hal")
    await hal.wait_state("connected")
    await hal.wait_colour("Alice", RED)
    await hal.wait_hears("Alice")
    await eventually(
        lambda: alice.tile_of("Hal"),
        lambda tile: tile is not None and not tile.video_on and not tile.audio_on,
        15,
        "Alice seeing Hal without camera and microphone",
    )
    await hal.screenshot(artifacts_dir, "camera-denied-in-session")


async def back_in_the_same_seat(
    therapist: RoomPage, name: str, colour: RGB, participant_id: str, knocks: int
) -> None:
    """The therapist sees ``name`` again as the same participant, with no new knock."""
    await therapist.wait_colour(name, colour)
    after = await therapist.tile_of(name)
    assert after is not None and after.participant_id == participant_id
    assert await therapist.knocks() == knocks, "a returning patient does not knock again"


async def test_a_network_drop_comes_back_into_the_same_seat(
    site: Site, browsers: Browsers, artifacts_dir: Path
) -> None:
    room_id, alice = await open_room(site, browsers, "Flaky group", limit=2)
    gus = await patient_admitted(site, browsers, room_id, alice, "Gus", BLUE)
    await alice.wait_colour("Gus", BLUE)
    before = await alice.tile_of("Gus")
    assert before is not None
    knocks = await alice.knocks()
    # Gus's socket dies without a goodbye (his network drops); his page reconnects by
    # itself and takes his held seat back: same participant, no lobby, no leave seen.
    seen = len(await gus.state_history())
    await gus.page.evaluate(
        "window.__telecircleTestSockets.filter((s) => s.readyState === 1).forEach((s) => s.close())"
    )
    await gus.wait_state_seen("reconnecting", since=seen, timeout=10)
    await gus.wait_state("connected", timeout=30)
    history = await gus.state_history()
    assert "lobby" not in history[history.index("connected") :], history
    await back_in_the_same_seat(alice, "Gus", BLUE, before.participant_id, knocks)
    await alice.screenshot(artifacts_dir, "after-network-drop")


async def test_a_reload_comes_back_into_the_same_seat_without_the_lobby(
    site: Site, browsers: Browsers, artifacts_dir: Path
) -> None:
    room_id, alice = await open_room(site, browsers, "Reload group", limit=2)
    kim = await patient_admitted(site, browsers, room_id, alice, "Kim", BLUE)
    await alice.wait_colour("Kim", BLUE)
    before = await alice.tile_of("Kim")
    assert before is not None
    knocks = await alice.knocks()
    # Kim reloads the page: the seat cookie brings her straight back into her seat;
    # Alice sees the same participant, and no knock.
    await kim.page.reload()
    await kim.wait_state("connected", timeout=30)
    assert "lobby" not in await kim.state_history()
    await back_in_the_same_seat(alice, "Kim", BLUE, before.participant_id, knocks)
    await kim.wait_colour("Alice", RED)
    await kim.screenshot(artifacts_dir, "after-reload")


async def test_a_dead_media_connection_is_rebuilt_in_the_same_seat(
    site: Site, browsers: Browsers, artifacts_dir: Path
) -> None:
    room_id, alice = await open_room(site, browsers, "Media drop group", limit=2, colour=GREEN)
    ida = await patient_admitted(site, browsers, room_id, alice, "Ida", RED)
    await alice.wait_colour("Ida", RED)
    before = await alice.tile_of("Ida")
    assert before is not None
    # Ida's publish connection dies (closed under her page's feet); her socket lives.
    # The server notices, tells her page, and the page builds new connections on the
    # same seat: Alice sees her video again under the same participant id.
    seen = len(await ida.state_history())
    await ida.page.evaluate("window.__telecircleTestPeers[0].close()")
    await ida.wait_state_seen("reconnecting", since=seen, timeout=20)
    await ida.wait_state("connected", timeout=30)
    await alice.wait_colour("Ida", RED, timeout=40)
    after = await alice.tile_of("Ida")
    assert after is not None and after.participant_id == before.participant_id
    await ida.wait_colour("Alice", GREEN)


async def test_opening_the_session_in_a_second_tab_moves_the_seat(
    site: Site, browsers: Browsers, artifacts_dir: Path
) -> None:
    room_id, alice = await open_room(site, browsers, "Two tabs group", limit=3)
    jo = await patient_admitted(site, browsers, room_id, alice, "Jo", GREEN)
    before = await alice.tile_of("Jo")
    assert before is not None
    # The same patient opens the session again (same browser, so the same invite
    # cookie): the new tab takes the seat straight back, the old one is told why.
    second = RoomPage(await jo.page.context.new_page(), "Jo")
    await second.page.goto(f"{site.server.base_url}/session")
    await second.wait_state("connected")
    await jo.wait_state("closed")
    assert await jo.page.get_attribute("#app", "data-closed-reason") == "seat_moved"
    assert await jo.page.is_visible("#rejoin-link")
    await jo.screenshot(artifacts_dir, "seat-moved")
    after = await alice.tile_of("Jo")
    assert after is not None and after.participant_id == before.participant_id


async def test_the_prejoin_page_checks_devices_and_remembers_them(
    site: Site, browsers: Browsers, artifacts_dir: Path
) -> None:
    room_id = await asyncio.to_thread(site.therapist.create_room, "Device check group", 3)
    invite = await asyncio.to_thread(site.therapist.invite, room_id, "Kim")
    _, kim = await browsers.open("Kim", BLUE)
    await kim.open_invite(invite.url)
    await kim.wait_preview("ok")
    # Both lists name the fake devices; the choice is kept for the call page.
    for select in ("#camera-select", "#microphone-select"):
        options = await kim.page.eval_on_selector_all(
            f"{select} option", "(os) => os.map((o) => o.value).filter(Boolean)"
        )
        assert options, f"{select} lists no device"
    camera = await kim.page.input_value("#camera-select")
    stored = await kim.page.evaluate("localStorage.getItem('telecircle.camera')")
    assert stored == camera
    assert await kim.page.input_value("#camera-id") == camera
    # Choosing another microphone switches to it and remembers it.
    microphones = await kim.page.eval_on_selector_all(
        "#microphone-select option", "(os) => os.map((o) => o.value).filter(Boolean)"
    )
    if len(microphones) > 1:
        await kim.page.select_option("#microphone-select", microphones[1])
        await eventually(
            lambda: kim.page.evaluate("localStorage.getItem('telecircle.microphone')"),
            lambda value: value == microphones[1],
            10,
            "the chosen microphone remembered",
        )
        await kim.wait_preview("ok")
    # The level meter moves with the fake microphone's beeps once the page has been
    # interacted with (browsers start audio only then).
    await kim.page.click("#display-name")
    await kim.page.wait_for_function(
        "() => document.getElementById('mic-level').value > 0.02", polling="raf", timeout=15_000
    )
    await kim.screenshot(artifacts_dir, "prejoin")


async def test_a_co_facilitator_goes_straight_in_and_sign_outs_end_the_session(
    site: Site, browsers: Browsers, artifacts_dir: Path
) -> None:
    room_id, alice = await open_room(site, browsers, "Co-facilitated group", limit=4)
    cy = await asyncio.to_thread(site.admin.create_clinician, "cy.co", "Cy", "co_facilitator")
    await asyncio.to_thread(site.therapist.add_co_facilitator, room_id, "cy.co")
    base = site.server.base_url
    cookie = session_cookie(base, cy.session_cookie())
    _, cy_page = await browsers.open("Cy", BLUE, cookies=[cookie])
    # A co-facilitator enters from the account, straight into the session (no lobby),
    # and runs the lobby too.
    await cy_page.enter_as_clinician(f"{base}/room/{room_id}")
    assert "lobby" not in await cy_page.state_history()
    await cy_page.wait_colour("Alice", RED)
    await alice.wait_colour("Cy", BLUE)
    lee = await patient_waiting(site, browsers, room_id, "Lee", GREEN)
    await cy_page.wait_waiting({"Lee"})
    await alice.wait_waiting({"Lee"})
    await cy_page.admit("Lee")
    await lee.wait_state("connected")
    await lee.wait_remote_names({"Alice", "Cy"})

    # Cy signs out everywhere (from her account page, in another tab): her call page
    # is told at once, ends her seat and asks her to sign in again.
    account = await cy_page.page.context.new_page()
    await account.goto(f"{base}/account")
    async with account.expect_navigation():
        await account.click("form[action='/account/sign-out-everywhere'] button")
    await account.close()
    await cy_page.wait_state("signed_out")
    link = await cy_page.page.get_attribute("#rejoin-link", "href")
    assert link is not None and link.startswith("/login?next=")
    await cy_page.screenshot(artifacts_dir, "signed-out")
    await lee.wait_remote_names({"Alice"}, timeout=LEAVE_TIMEOUT_S)

    # Lee's invite cookie is gone (as if it expired) when his connection drops: the
    # server refuses the reconnection and his page says how to get back in.
    await lee.page.context.clear_cookies()
    await lee.page.evaluate(
        "window.__telecircleTestSockets.filter((s) => s.readyState === 1).forEach((s) => s.close())"
    )
    await lee.wait_state("signed_out")
    message = (await lee.page.text_content("#notice-message") or "").lower()
    assert "invite link" in message
    await lee.screenshot(artifacts_dir, "signed-out")


async def test_a_personal_link_opened_on_another_device_moves_the_seat(
    site: Site, browsers: Browsers, artifacts_dir: Path
) -> None:
    room_id, alice = await open_room(site, browsers, "Two devices group", limit=3)
    invite = await asyncio.to_thread(site.therapist.invite, room_id, "Mo")
    _, phone = await browsers.open("Mo", GREEN)
    await phone.enter_as_patient(invite.url)
    await alice.admit("Mo")
    await phone.wait_state("connected")
    # Mo opens the same personal link on his laptop: the phone is told why it lost
    # the seat; the laptop goes through the pre-join page and the lobby again.
    _, laptop = await browsers.open("Mo", BLUE)
    await laptop.open_invite(invite.url)
    await phone.wait_state("closed")
    assert await phone.page.get_attribute("#app", "data-closed-reason") == "seat_moved"
    assert (await phone.page.text_content("#notice-message") or "").strip()
    await phone.screenshot(artifacts_dir, "moved-to-another-device")
    await laptop.fill_prejoin()
    await laptop.wait_state("lobby")
    await alice.admit("Mo")
    await laptop.wait_state("connected")
    await alice.wait_colour("Mo", BLUE)
