"""A group in session for the browser tests: the therapist ("Alice") in a new room's
session, and patients who opened their invites, waited and were let in."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from tests.e2e.conftest import Site
from tests.e2e.room_page import RED, RGB, Browsers, RoomPage, session_cookie


async def therapist_in_new_room(
    site: Site, browsers: Browsers, room_name: str, limit: int = 5
) -> tuple[str, RoomPage]:
    """A new room of the signed-in therapist, with her (red camera) in its session."""
    base = site.server.base_url
    room_id = await asyncio.to_thread(site.therapist.create_room, room_name, limit)
    cookie = session_cookie(base, site.therapist.session_cookie())
    _, alice = await browsers.open("Alice", RED, cookies=[cookie])
    await alice.enter_as_clinician(f"{base}/room/{room_id}")
    return room_id, alice


async def admitted_patients(
    site: Site,
    browsers: Browsers,
    room_id: str,
    alice: RoomPage,
    colours: Mapping[str, RGB],
    browser_args: Mapping[str, Sequence[str] | None] | None = None,
) -> dict[str, RoomPage]:
    """Patients who opened their invites, waited, and were let in with "Admit everyone"
    (``browser_args`` gives some of them their own Chromium arguments)."""
    patients: dict[str, RoomPage] = {}
    for name, colour in colours.items():
        invite = await asyncio.to_thread(site.therapist.invite, room_id, name)
        args = (browser_args or {}).get(name)
        _, page = await browsers.open(name, colour, args=None if args is None else list(args))
        await page.enter_as_patient(invite.url)
        patients[name] = page
    await alice.wait_waiting(set(colours))
    await alice.page.click("#admit-all-button")
    for page in patients.values():
        await page.wait_state("connected")
    return patients
