"""The access journey through the real pages: first-run setup, accounts, rooms,
invites, the pre-join page; CSRF, cookies, rate limits and the client's address."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from telecircle.storage import audit_store
from telecircle.web.keys import ACCOUNTS
from tests.conftest import RunningServer, start_server
from tests.web.site_client import SiteClient

PASSWORD = "correct horse battery staple"


async def set_up_admin(server: RunningServer) -> SiteClient:
    token = await server.app[ACCOUNTS].create_setup_link()
    assert token is not None
    admin = SiteClient(server.url)
    done = await admin.submit(
        f"/setup/{token}",
        {
            "username": "admin",
            "display_name": "Ada Admin",
            "password": PASSWORD,
            "password_again": PASSWORD,
        },
    )
    assert done.status == 200 and "Telecircle is ready" in done.text
    await sign_in(admin, "admin")
    return admin


async def sign_in(client: SiteClient, username: str, password: str = PASSWORD) -> None:
    page = await client.submit("/login", {"username": username, "password": password, "next": "/"})
    assert page.status == 200, page.text
    assert client.cookie("tc_session")


async def make_therapist(server: RunningServer, admin: SiteClient, username: str) -> SiteClient:
    """An administrator creates a therapist, who sets a password and signs in."""
    therapist = await make_therapist_without_sign_in(server, admin, username)
    await sign_in(therapist, username)
    return therapist


async def make_room(therapist: SiteClient, name: str = "Tuesday group") -> str:
    page = await therapist.submit("/clinic", {"name": name, "limit": "6"}, action="/clinic/rooms")
    assert page.status == 200 and name in page.text
    match = re.search(r"/clinic/rooms/(r_[0-9a-f]+)", page.url)
    assert match, page.url
    return match.group(1)


async def make_invite(server: RunningServer, therapist: SiteClient, room_id: str, name: str) -> str:
    page = await therapist.submit(
        f"/clinic/rooms/{room_id}",
        {"kind": "personal", "patient_name": name, "session_id": ""},
        action=f"/clinic/rooms/{room_id}/invites",
    )
    assert page.status == 200, page.text
    return page.new_link[len(server.settings.effective_public_url) :]


@pytest.fixture
async def admin(server: RunningServer) -> AsyncIterator[SiteClient]:
    client = await set_up_admin(server)
    yield client
    await client.close()


async def test_first_run_setup_works_once(server: RunningServer) -> None:
    assert await server.app[ACCOUNTS].needs_setup()
    token = await server.app[ACCOUNTS].create_setup_link()
    client = SiteClient(server.url)
    try:
        fields = {
            "username": "admin",
            "display_name": "Ada",
            "password": PASSWORD,
            "password_again": PASSWORD,
        }
        short = await client.submit(
            f"/setup/{token}", {**fields, "password": "short", "password_again": "short"}
        )
        assert short.status == 422  # refused, and the link still works:
        assert (await client.submit(f"/setup/{token}", fields)).status == 200
        reuse = await client.get(f"/setup/{token}")
        assert reuse.status == 410 and "Link no longer valid" in reuse.text
        replay = await client.post(f"/setup/{token}", fields, csrf=short.csrf)
        assert replay.status == 410
        assert not await server.app[ACCOUNTS].needs_setup()
    finally:
        await client.close()


async def test_therapist_makes_room_schedule_and_invite_patient_prepares(
    server: RunningServer, admin: SiteClient
) -> None:
    therapist = await make_therapist(server, admin, "theo")
    patient = SiteClient(server.url)
    try:
        room_id = await make_room(therapist)
        scheduled = await therapist.submit(
            f"/clinic/rooms/{room_id}",
            {"date": "2099-03-04", "start": "18:30", "minutes": "90"},
            action=f"/clinic/rooms/{room_id}/sessions",
        )
        assert "Session scheduled" in scheduled.text and "18:30" in scheduled.text
        too_long = await therapist.submit(
            f"/clinic/rooms/{room_id}",
            {"date": "2099-03-04", "start": "18:30", "minutes": "200"},
            action=f"/clinic/rooms/{room_id}/sessions",
        )
        assert too_long.status == 422
        home = await therapist.get("/clinic")
        assert "Tuesday group" in home.text and "18:30" in home.text

        invite = await make_invite(server, therapist, room_id, "Robin Patient")
        # Fetching the link (a mail scanner, a chat preview) redeems nothing.
        landing = await patient.get(invite)
        assert landing.status == 200 and "You are invited to Tuesday group" in landing.text
        assert patient.cookie("tc_pass") is None
        opened = await patient.post(invite, {}, csrf=landing.csrf, follow=False)
        assert opened.status == 303 and opened.headers["Location"] == "/join"
        set_cookie = opened.headers["Set-Cookie"]
        assert "tc_pass=" in set_cookie and "HttpOnly" in set_cookie
        assert "SameSite=Lax" in set_cookie
        prejoin = await patient.get("/join")
        assert "Robin Patient" in prejoin.text  # the name is pre-filled
        assert "What is shared in this group stays in this group" in prejoin.text
        missing = await patient.post(
            "/join",
            {
                "display_name": "Robin",
                "agreement_version": "1",
                "location": "",
                "emergency_contact": "",
            },
            csrf=prejoin.csrf,
        )
        assert missing.status == 422 and "accept the confidentiality agreement" in missing.text
        joined = await patient.post(
            "/join",
            {
                "display_name": "Robin",
                "agreement_version": "1",
                "accept_agreement": "on",
                "location": "Home, Leeds",
                "emergency_contact": "Sam 0113 000",
            },
            csrf=prejoin.csrf,
        )
        assert joined.status == 200 and joined.url.endswith("/session")
        assert 'data-role="patient"' in joined.text

        log = await admin.get("/admin/audit")
        for action in (
            "login",
            "account created",
            "room created",
            "invite created",
            "invite redeemed",
            "consent recorded",
        ):
            assert action in log.text, action
        assert "Robin" not in log.text  # names stay out of the audit log
        filtered = await admin.get("/admin/audit?action=invite_created")
        assert "1 entries" in filtered.text
    finally:
        await patient.close()
        await therapist.close()


async def test_bad_invite_links_get_a_friendly_page(
    server: RunningServer, admin: SiteClient
) -> None:
    therapist = await make_therapist(server, admin, "theo")
    visitor = SiteClient(server.url)
    try:
        room_id = await make_invite_room(therapist)
        link = await make_invite(server, therapist, room_id, "Kim")
        for bad in (link[:-3] + "xyz", "/i/nonsense", "/i/" + "a" * 300):
            page = await visitor.get(bad)
            assert page.status == 404 and "This link is not valid" in page.text
            assert "Traceback" not in page.text
    finally:
        await visitor.close()
        await therapist.close()


async def make_invite_room(therapist: SiteClient) -> str:
    return await make_room(therapist, "Group")


async def test_forms_need_their_csrf_token(server: RunningServer, admin: SiteClient) -> None:
    missing = await admin.post(
        "/admin/accounts", {"username": "x1", "display_name": "X", "role": "therapist"}, csrf=None
    )
    assert missing.status == 403 and missing.headers["X-Telecircle-Refused"] == "csrf"
    wrong = await admin.post(
        "/admin/accounts",
        {"username": "x1", "display_name": "X", "role": "therapist"},
        csrf="0" * 64,
    )
    assert wrong.headers.get("X-Telecircle-Refused") == "csrf"
    page = await admin.get("/admin")
    async with admin.session.post(
        server.url + "/admin/accounts",
        data={"username": "x1", "display_name": "X", "role": "therapist", "csrf_token": page.csrf},
        headers={"Sec-Fetch-Site": "cross-site"},
    ) as response:
        assert response.headers.get("X-Telecircle-Refused") == "csrf"
    users = await server.app[ACCOUNTS].list_users()
    assert [u.username for u in users] == ["admin"]


async def test_logins_are_rate_limited_with_a_clear_message(
    server: RunningServer, admin: SiteClient
) -> None:
    attacker = SiteClient(server.url)
    try:
        limit = server.settings.login_attempts_per_window
        for _ in range(limit):
            page = await attacker.submit("/login", {"username": "admin", "password": "wrong guess"})
            assert page.status == 401 and "Wrong username or password" in page.text
        page = await attacker.submit("/login", {"username": "admin", "password": PASSWORD})
        assert page.status == 429 and "minute" in page.text
    finally:
        await attacker.close()


@pytest.mark.parametrize("trusted", [True, False])
async def test_the_audit_log_records_the_real_client_address(tmp_path: Path, trusted: bool) -> None:
    proxies = ("127.0.0.1",) if trusted else ()
    running = await start_server(tmp_path, trusted_proxies=proxies)
    try:
        token = await running.app[ACCOUNTS].create_setup_link()
        client = SiteClient(running.url)
        form = await client.get(f"/setup/{token}")
        async with client.session.post(
            f"{running.url}/setup/{token}",
            data={
                "csrf_token": form.csrf,
                "username": "admin",
                "display_name": "Ada",
                "password": PASSWORD,
                "password_again": PASSWORD,
            },
            headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9"},
        ) as response:
            assert response.status == 200
        await client.close()
        page = await audit_store.list_entries(
            running.database, offset=0, limit=10, action="setup_completed"
        )
        [entry] = page.entries
        assert entry.address == ("203.0.113.9" if trusted else "127.0.0.1")
    finally:
        await running.runner.cleanup()


async def test_a_disabled_account_is_signed_out_and_its_links_stop(
    server: RunningServer, admin: SiteClient
) -> None:
    therapist = await make_therapist(server, admin, "theo")
    try:
        assert (await therapist.get("/clinic")).status == 200
        users = {u.username: u for u in await server.app[ACCOUNTS].list_users()}
        page = await admin.get("/admin")
        await admin.post(f"/admin/accounts/{users['theo'].id}/disable", {}, csrf=page.csrf)
        after = await therapist.get("/clinic", follow=False)
        assert after.status == 303 and after.headers["Location"].startswith("/login")
        denied = await therapist.submit("/login", {"username": "theo", "password": PASSWORD})
        assert denied.status == 401
    finally:
        await therapist.close()


async def test_a_required_second_factor_is_enrolled_then_asked(
    server: RunningServer, admin: SiteClient
) -> None:
    from telecircle.crypto import totp

    settings_page = await admin.get("/admin/settings")
    agreement = re.search(r'<textarea id="agreement"[^>]*>([^<]*)</textarea>', settings_page.text)
    assert agreement is not None
    saved = await admin.post(
        "/admin/settings",
        {
            "max_participants": "8",
            "notes_retention_days": "90",
            "require_totp": "on",
            "agreement": "Version two of the agreement.",
        },
        csrf=settings_page.csrf,
    )
    assert saved.status == 200 and "Version two of the agreement." in saved.text
    therapist = await make_therapist_without_sign_in(server, admin, "theo")
    try:
        page = await therapist.submit("/login", {"username": "theo", "password": PASSWORD})
        assert page.url.endswith("/login/second-factor")
        assert (await therapist.get("/clinic", follow=False)).status == 303  # not yet
        secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page.text)
        assert secret is not None
        wrong = await therapist.post(
            "/login/second-factor", {"code": "000000", "secret": secret.group(1)}, csrf=page.csrf
        )
        assert wrong.status >= 400
        code = totp.code_at(secret.group(1), time.time())
        done = await therapist.post(
            "/login/second-factor", {"code": code, "secret": secret.group(1)}, csrf=page.csrf
        )
        assert done.url.endswith("/clinic"), done.url
        log = await admin.get("/admin/audit?action=agreement_changed")
        assert "1 entries" in log.text
    finally:
        await therapist.close()


async def make_therapist_without_sign_in(
    server: RunningServer, admin: SiteClient, username: str
) -> SiteClient:
    page = await admin.submit(
        "/admin",
        {"username": username, "display_name": "Dr Theo", "role": "therapist"},
        action="/admin/accounts",
    )
    assert page.status == 200 and "created" in page.text
    therapist = SiteClient(server.url)
    path = page.new_link[len(server.settings.effective_public_url) :]
    saved = await therapist.submit(path, {"password": PASSWORD, "password_again": PASSWORD})
    assert "Password saved" in saved.text
    again = await therapist.get(path)
    assert again.status == 410  # one-time
    return therapist


async def test_invite_openings_are_rate_limited_per_address(tmp_path: Path) -> None:
    running = await start_server(tmp_path, invite_redemptions_per_window=3)
    visitor = SiteClient(running.url)
    try:
        for _ in range(3):
            assert (await visitor.get("/i/garbage")).status == 404
        page = await visitor.get("/i/garbage")
        assert page.status == 429 and "try again in" in page.text
    finally:
        await visitor.close()
        await running.runner.cleanup()


async def test_a_lower_organisation_maximum_caps_room_limits(
    server: RunningServer, admin: SiteClient
) -> None:
    therapist = await make_therapist(server, admin, "theo")
    try:
        settings_page = await admin.get("/admin/settings")
        too_high = await admin.post(
            "/admin/settings",
            {"max_participants": "40", "notes_retention_days": "90", "agreement": "A."},
            csrf=settings_page.csrf,
        )
        assert too_high.status == 422 and "ceiling" in too_high.text
        await admin.post(
            "/admin/settings",
            {"max_participants": "4", "notes_retention_days": "90", "agreement": "A."},
            csrf=settings_page.csrf,
        )
        page = await therapist.submit(
            "/clinic", {"name": "Big", "limit": "6"}, action="/clinic/rooms"
        )
        assert page.status == 422 and "organisation&#39;s maximum" in page.text
    finally:
        await therapist.close()


async def test_the_administrator_sets_a_rooms_limit_within_the_maximum(
    server: RunningServer, admin: SiteClient
) -> None:
    therapist = await make_therapist(server, admin, "theo")
    try:
        room_id = await make_room(therapist)
        page = await admin.get("/admin/rooms")
        assert "Tuesday group" in page.text
        refused = await admin.post(f"/admin/rooms/{room_id}", {"limit": "11"}, csrf=page.csrf)
        assert refused.status == 422
        saved = await admin.post(f"/admin/rooms/{room_id}", {"limit": "3"}, csrf=page.csrf)
        assert saved.status == 200 and "applies to the next admit" in saved.text
        room_page = await therapist.get(f"/clinic/rooms/{room_id}")
        assert "Limit: 3 people" in room_page.text
    finally:
        await therapist.close()


async def test_opening_a_personal_link_on_another_device_tells_the_first_at_once(
    server: RunningServer, admin: SiteClient
) -> None:
    from telecircle.services.entry import PASS_COOKIE
    from tests.signalling.client import Client

    therapist = await make_therapist(server, admin, "theo")
    laptop, phone = SiteClient(server.url), SiteClient(server.url)
    try:
        room_id = await make_room(therapist)
        invite = await make_invite(server, therapist, room_id, "Robin")
        for device in (laptop,):
            landing = await device.get(invite)
            prejoin = await device.post(invite, {}, csrf=landing.csrf)
            await device.post(
                "/join",
                {
                    "display_name": "Robin",
                    "agreement_version": "1",
                    "accept_agreement": "on",
                    "location": "Home",
                    "emergency_contact": "Sam",
                },
                csrf=prejoin.csrf,
            )
        code = re.search(r'data-room-code="([^"]+)"', (await laptop.get("/session")).text)
        assert code is not None
        socket = await Client().connect(server.url, f"{PASS_COOKIE}={laptop.cookie('tc_pass')}")
        ack = await socket.call("join", {"room_code": code.group(1)})
        assert ack["ok"] and ack["data"]["place"] == "lobby"
        landing = await phone.get(invite)
        await phone.post(invite, {}, csrf=landing.csrf)
        await socket.wait_for(lambda: socket.last("closed") is not None)
        assert socket.last("closed")["reason"] == "seat_moved"
        assert "another device" in socket.last("closed")["message"]
        await socket.close()
    finally:
        await laptop.close()
        await phone.close()
        await therapist.close()


async def test_serve_prints_a_setup_link_until_an_administrator_exists(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from telecircle.cli import print_setup_link

    await print_setup_link(server.app)
    first = re.search(r"/setup/(\S+)", capsys.readouterr().out)
    await print_setup_link(server.app)  # a restart: a fresh link, the old one void
    second = re.search(r"/setup/(\S+)", capsys.readouterr().out)
    assert first and second and first.group(1) != second.group(1)
    client = SiteClient(server.url)
    try:
        assert (await client.get(f"/setup/{first.group(1)}")).status == 410
        assert (await client.get(f"/setup/{second.group(1)}")).status == 200
        await (await set_up_admin(server)).close()
        await print_setup_link(server.app)
        assert "/setup/" not in capsys.readouterr().out
    finally:
        await client.close()


async def test_a_group_link_admits_at_most_the_configured_number_of_patients(
    tmp_path: Path,
) -> None:
    from telecircle.domain.ids import RoomCode
    from telecircle.storage import org_store, stores
    from telecircle.web.keys import INVITES

    running = await start_server(tmp_path, group_invite_passes=2)
    visitors = [SiteClient(running.url) for _ in range(3)]
    try:
        code = await running.create_room()
        room = await stores.get_room_by_code(running.database, RoomCode(code))
        assert room is not None
        [(owner, _)] = await org_store.clinicians_of_room(running.database, room.id)
        session = await org_store.schedule_session(
            running.database,
            room.id,
            starts_at=time.time(),
            planned_minutes=90,
            created_by=owner,
            now=time.time(),
        )
        _, token = await running.app[INVITES].create_group(owner, room.id, session.id, "127.0.0.1")
        statuses = []
        for visitor in visitors:
            landing = await visitor.get(f"/i/{token}")
            page = await visitor.post(f"/i/{token}", {}, csrf=landing.csrf, follow=False)
            statuses.append(page.status)
        assert statuses == [303, 303, 409]
    finally:
        for visitor in visitors:
            await visitor.close()
        await running.runner.cleanup()


async def test_a_patient_whose_pass_ended_is_asked_to_open_the_link_again(
    server: RunningServer,
) -> None:
    visitor = SiteClient(server.url, "tc_pass=no-longer-valid")
    try:
        for path in ("/session", "/join"):
            page = await visitor.get(path, follow=False)
            assert page.status == 401 and "open your invite link again" in page.text.lower()
        assert (await visitor.get("/clinic", follow=False)).headers["Location"].startswith("/login")
    finally:
        await visitor.close()


async def test_sending_the_invite_form_twice_does_not_move_ones_own_seat(
    server: RunningServer, admin: SiteClient
) -> None:
    therapist = await make_therapist(server, admin, "theo")
    patient = SiteClient(server.url)
    try:
        room_id = await make_room(therapist)
        invite = await make_invite(server, therapist, room_id, "Robin")
        landing = await patient.get(invite)
        await patient.post(invite, {}, csrf=landing.csrf, follow=False)
        first = patient.cookie("tc_pass")
        # The same form again (Back and resubmit): refused as stale or sent on to the
        # pre-join page, but never a new pass that would move this browser's own seat.
        again = await patient.post(invite, {}, csrf=landing.csrf, follow=False)
        assert again.status in (303, 403) and patient.cookie("tc_pass") == first
        fresh = await patient.get(invite, follow=False)
        assert fresh.status == 303 and fresh.headers["Location"] == "/join"
        assert (await patient.get("/join")).status == 200  # still valid
    finally:
        await patient.close()
        await therapist.close()


async def test_cookies_are_secure_when_the_site_is_served_over_https(tmp_path: Path) -> None:
    running = await start_server(tmp_path, public_url="https://telecircle.example")
    client = SiteClient(running.url)
    try:
        token = await running.app[ACCOUNTS].create_setup_link()
        page = await client.get(f"/setup/{token}")
        anon = page.headers.get("Set-Cookie", "")
        assert "tc_anon=" in anon and "Secure" in anon and "HttpOnly" in anon
    finally:
        await client.close()
        await running.runner.cleanup()
