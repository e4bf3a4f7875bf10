"""End-to-end: the whole way in, through the real pages, in headless Chromium.

First-run setup (the link ``telecircle serve`` printed) → the administrator creates a
therapist → the therapist sets her password with the one-time link, signs in, creates a
room, schedules a session, makes a personal invite and enters the session → a patient
opens the invite in another browser (the token leaves the address bar for an HttpOnly
cookie), checks the camera, accepts the agreement, says where they are and whom to call,
and waits in the lobby → the therapist hears the knock, sees the badge and admits them →
both decode each other's video (by colour). A second patient is denied with a message
and sees it. Every page is kept as a screenshot in the artifacts folder.

This module has its own server (module-scoped fixture): first-run setup happens here.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Page

from tests.e2e.conftest import Server
from tests.e2e.room_page import BLUE, GREEN, RED, Browsers, eventually, looks_like
from tests.e2e.site import path_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

PASSWORD = "a long and private passphrase"
DENIAL = "Sorry, this group is full today. I will call you this afternoon."


class Shots:
    """Numbered screenshots, in the order the journey shows the pages."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.count = 0
        for old in directory.glob("journey-*.png"):
            old.unlink()  # an earlier run's numbering would interleave with this one's

    async def take(self, page: Page, label: str) -> None:
        self.count += 1
        path = self.directory / f"journey-{self.count:02d}-{label}.png"
        await page.screenshot(path=str(path), full_page=True)


async def submit(page: Page, button: str = "main form button[type=submit]") -> None:
    async with page.expect_navigation():
        await page.click(button)


async def sign_in(page: Page, base_url: str, username: str) -> None:
    await page.goto(f"{base_url}/login")
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await submit(page)


async def one_time_link(page: Page) -> str:
    value = await page.input_value("#new-link")
    assert value, "the page shows the one-time link"
    return value


async def test_setup_to_session_and_a_denial(
    server: Server, browsers: Browsers, artifacts_dir: Path
) -> None:
    base = server.base_url
    shots = Shots(artifacts_dir)

    # ---- first run: the administrator -------------------------------------------------
    setup_link = await asyncio.to_thread(server.setup_link)
    _, admin = await browsers.open("Admin", RED)
    page = admin.page
    await page.goto(base + path_of(setup_link))
    await shots.take(page, "setup")
    await page.fill("#username", "admin")
    await page.fill("#display_name", "Pat Admin")
    await page.fill("#password", PASSWORD)
    await page.fill("#password_again", PASSWORD)
    await submit(page)
    assert "Telecircle is ready" in (await page.text_content("main") or "")
    await shots.take(page, "setup-done")
    await sign_in(page, base, "admin")
    assert page.url.endswith("/admin")

    await page.fill("#new-username", "maria")
    await page.fill("#new-display-name", "Maria")
    await page.select_option("#new-role", "therapist")
    await submit(page, "form[action='/admin/accounts'] button[type=submit]")
    password_link = await one_time_link(page)
    assert "/password/" in password_link
    await shots.take(page, "admin-account-created")

    # ---- the therapist ------------------------------------------------------------------
    _, maria = await browsers.open("Maria", RED)
    page = maria.page
    await page.goto(base + path_of(password_link))
    await shots.take(page, "choose-password")
    await page.fill("#password", PASSWORD)
    await page.fill("#password_again", PASSWORD)
    await submit(page)
    assert "Password saved" in (await page.text_content("main") or "")
    await sign_in(page, base, "maria")
    assert page.url.endswith("/clinic")
    await shots.take(page, "clinic-home")

    await page.fill("#room-name", "Tuesday group")
    await page.fill("#room-limit", "4")
    await submit(page, "form[action='/clinic/rooms'] button[type=submit]")
    assert "/clinic/rooms/" in page.url
    room_page_url = page.url

    # A session later today (server time is UTC): date, start time and planned length.
    start = (datetime.now(UTC) + timedelta(hours=1)).replace(second=0, microsecond=0)
    await page.fill("#session-date", start.strftime("%Y-%m-%d"))
    await page.fill("#session-start", start.strftime("%H:%M"))
    await page.fill("#session-minutes", "90")
    await submit(page, "form[action$='/sessions'] button[type=submit]")
    assert await page.locator("table.sessions tr[data-session-id]").count() == 1
    await shots.take(page, "session-scheduled")
    # Her home page lists it (today's or upcoming, depending on the hour).
    await page.goto(f"{base}/clinic")
    listed = page.locator("table.sessions-today tr, table.sessions-upcoming tr")
    assert await listed.count() == 1
    assert "Tuesday group" in (await listed.first.text_content() or "")
    await shots.take(page, "clinic-home-with-session")
    await page.goto(room_page_url)

    await page.select_option("#invite-kind", "personal")
    await page.fill("#invite-name", "Bob")
    await page.select_option("#invite-session", index=1)  # the session just scheduled
    await submit(page, "form[action$='/invites'] button[type=submit]")
    bob_link = await one_time_link(page)
    assert "/i/" in bob_link
    await shots.take(page, "invite-made")

    # Maria enters the session before anyone arrives.
    await submit(page, "#enter-room")
    await maria.wait_state("connected")
    assert await maria.knocks() == 0
    assert await maria.badge() is None
    await shots.take(page, "therapist-in-session")

    # ---- the first patient --------------------------------------------------------------
    _, bob = await browsers.open("Bob", GREEN)
    page = bob.page
    await page.goto(base + path_of(bob_link))
    assert "Tuesday group" in (await page.text_content("main") or "")
    await shots.take(page, "invite")
    await submit(page, "#continue-invite")
    assert page.url.endswith("/join")
    token = bob_link.rsplit("/i/", 1)[1]
    assert "/i/" not in page.url and token not in page.url, page.url
    cookies = {c["name"]: c for c in await page.context.cookies()}
    assert "tc_pass" in cookies and cookies["tc_pass"]["httpOnly"] is True
    assert cookies["tc_pass"]["sameSite"] == "Lax"
    assert token not in cookies["tc_pass"]["value"], "the cookie is not the invite token"
    await bob.wait_preview("ok")
    await eventually(
        lambda: bob.video_colour("#preview"),
        lambda colour: looks_like(colour, GREEN),
        15,
        "Bob's own camera in the pre-join preview",
    )
    assert await page.input_value("#display-name") == "Bob"  # pre-filled from the invite
    await shots.take(page, "prejoin")
    await bob.fill_prejoin(location="Leeds, at home", contact="Sam Jones, 07700 900123")
    await bob.wait_state("lobby")
    assert "will let you in shortly" in (await page.text_content("#lobby-wait") or "")
    await eventually(
        lambda: bob.video_colour("#lobby-wait #preview"),
        lambda colour: looks_like(colour, GREEN),
        15,
        "Bob's own camera on the waiting screen",
    )
    await shots.take(page, "patient-waiting")

    # Maria hears the knock, sees the badge and what Bob said, and admits him.
    await eventually(maria.knocks, lambda n: n == 1, 15, "the knock for Bob")
    assert await maria.badge() == "1"
    # The knock is made with Web Audio; this page may play sound (it captures media).
    assert await maria.page.get_attribute("body", "data-knock-audio") == "running"
    await maria.wait_waiting({"Bob"})
    entry = maria.page.locator("#lobby-list .lobby-entry")
    assert await entry.locator(".lobby-location").text_content() == "Leeds, at home"
    assert await entry.locator(".lobby-contact").text_content() == "Sam Jones, 07700 900123"
    assert await entry.locator(".lobby-waited").text_content() == "just arrived"
    await shots.take(maria.page, "therapist-knock")
    await maria.admit("Bob")
    await bob.wait_state("connected")
    await maria.wait_waiting(set())
    assert await maria.badge() is None

    # Both decode each other's video.
    await maria.wait_remote_names({"Bob"})
    await bob.wait_remote_names({"Maria"})
    await maria.wait_colour("Bob", GREEN)
    await bob.wait_colour("Maria", RED)
    await shots.take(maria.page, "therapist-call")
    await shots.take(bob.page, "patient-call")

    # ---- a second patient is denied with a message ---------------------------------------
    # Maria makes the invite in a second tab; her call goes on in the first.
    clinic = await maria.page.context.new_page()
    await clinic.goto(room_page_url)
    await clinic.select_option("#invite-kind", "personal")
    await clinic.fill("#invite-name", "Carol")
    await submit(clinic, "form[action$='/invites'] button[type=submit]")
    carol_link = await one_time_link(clinic)
    await clinic.close()

    _, carol = await browsers.open("Carol", BLUE)
    await carol.enter_as_patient(base + path_of(carol_link))
    await eventually(maria.knocks, lambda n: n == 2, 15, "the knock for Carol")
    assert await maria.badge() == "1"
    # Deny asks for an optional message in place.
    await maria.wait_waiting({"Carol"})
    carol_entry = maria.page.locator("#lobby-list .lobby-entry")
    await carol_entry.locator(".lobby-deny").click()
    await carol_entry.locator(".lobby-deny-message").fill(DENIAL)
    await shots.take(maria.page, "therapist-denying")
    await carol_entry.locator(".lobby-deny-confirm").click()
    await carol.wait_state("closed")
    assert await carol.page.get_attribute("#app", "data-closed-reason") == "denied"
    assert (await carol.page.text_content("#notice-message") or "").strip() == DENIAL
    await shots.take(carol.page, "patient-denied")
    await maria.wait_waiting(set())
    # Bob and Maria are unaffected.
    assert await bob.state() == "connected"
    await maria.wait_remote_names({"Bob"})
    assert not await bob.page.is_visible("#lobby-wait")
    await shots.take(maria.page, "therapist-after-denial")
