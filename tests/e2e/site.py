"""Driving the real site over HTTP, as a browser without JavaScript would.

Each :class:`Client` keeps its own cookies, reads pages and posts their forms with the
CSRF token scraped from the page (every form carries a hidden ``csrf_token`` input).
On top of it, :func:`prepare_clinic` walks first-run setup, creates a therapist and
signs in, and :class:`Clinic` makes rooms, sessions, invites and co-facilitators —
through the same pages a person uses, so the tests need no back door into the server.

Synchronous (urllib): call it from async tests with ``asyncio.to_thread``.
"""

from __future__ import annotations

import html
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path

REQUEST_TIMEOUT_S = 30.0
SETUP_LINK_TIMEOUT_S = 60.0
PASSWORD = "correct horse battery staple"

_CSRF = re.compile(r'name="csrf_token" value="([^"]*)"')
_NEW_LINK = re.compile(r'id="new-link" readonly value="([^"]*)"')
_SETUP_LINK = re.compile(r"(https?://\S+/setup/\S+)")


class SiteError(AssertionError):
    """A page did not answer as a person walking the site would expect."""


@dataclass(frozen=True)
class Page:
    url: str
    status: int
    text: str

    def csrf_token(self) -> str:
        match = _CSRF.search(self.text)
        if match is None:
            raise SiteError(f"no CSRF token on {self.url} (status {self.status})")
        return html.unescape(match.group(1))

    def new_link(self) -> str:
        """The one-time link a page shows once in ``#new-link``."""
        match = _NEW_LINK.search(self.text)
        if match is None:
            raise SiteError(f"no #new-link on {self.url}: {self.error_text()}")
        return html.unescape(match.group(1))

    def error_text(self) -> str:
        match = re.search(r'class="error"[^>]*>([^<]*)<', self.text)
        return html.unescape(match.group(1)) if match else f"status {self.status}"


class Client:
    """One browser's worth of cookies."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.cookies = CookieJar()
        self._opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.base_url + path

    def get(self, path: str) -> Page:
        return self._open(urllib.request.Request(self.url(path)))

    def post(self, path: str, fields: dict[str, str], token_from: str | None = None) -> Page:
        """Post a form to ``path`` (redirects followed) with the CSRF token of the page
        at ``token_from`` (default: ``path`` itself)."""
        token = self.get(token_from or path).csrf_token()
        body = urllib.parse.urlencode({"csrf_token": token, **fields}).encode()
        request = urllib.request.Request(
            self.url(path),
            data=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        return self._open(request)

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.cookies if c.name == name), None)

    def _open(self, request: urllib.request.Request) -> Page:
        try:
            with self._opener.open(request, timeout=REQUEST_TIMEOUT_S) as response:
                text = response.read().decode("utf-8", errors="replace")
                return Page(response.geturl(), response.status, text)
        except urllib.error.HTTPError as exc:
            text = exc.read().decode("utf-8", errors="replace")
            return Page(exc.geturl() or request.full_url, exc.code, text)


def expect_ok(page: Page, what: str) -> Page:
    if page.status >= 400 or 'class="error"' in page.text:
        raise SiteError(f"{what} failed: {page.error_text()} ({page.url})")
    return page


def wait_for_setup_link(log: Path, timeout: float = SETUP_LINK_TIMEOUT_S) -> str:
    """The one-time setup link ``telecircle serve`` prints at its first start."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists():
            match = _SETUP_LINK.search(log.read_text(errors="replace"))
            if match:
                return match.group(1)
        time.sleep(0.1)
    raise SiteError(f"no setup link in {log} after {timeout} s")


def path_of(url: str) -> str:
    """The path of a link the server printed with its public address."""
    parts = urllib.parse.urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def sign_in(base_url: str, username: str, password: str = PASSWORD) -> Client:
    client = Client(base_url)
    page = client.post("/login", {"username": username, "password": password, "next": "/"})
    expect_ok(page, f"signing in as {username}")
    if client.cookie("tc_session") is None:
        raise SiteError(f"signing in as {username} set no session cookie")
    return client


@dataclass(frozen=True)
class Invite:
    url: str
    patient_name: str


class Clinic:
    """A signed-in clinician's pages: rooms, schedule, invites."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @property
    def base_url(self) -> str:
        return self.client.base_url

    def session_cookie(self) -> str:
        value = self.client.cookie("tc_session")
        if value is None:
            raise SiteError("not signed in")
        return value

    def create_room(self, name: str, limit: int) -> str:
        """A new room; returns its id (from the page it redirects to)."""
        page = self.client.post("/clinic/rooms", {"name": name, "limit": str(limit)}, "/clinic")
        expect_ok(page, f"creating room {name!r}")
        match = re.search(r"/clinic/rooms/([^/?#]+)$", page.url)
        if match is None:
            raise SiteError(f"creating a room led to {page.url}")
        return match.group(1)

    def invite(self, room_id: str, patient_name: str, session_id: str = "") -> Invite:
        """A personal invite link for ``patient_name``."""
        page = self.client.post(
            f"/clinic/rooms/{room_id}/invites",
            {"kind": "personal", "patient_name": patient_name, "session_id": session_id},
            f"/clinic/rooms/{room_id}",
        )
        link = expect_ok(page, "making an invite").new_link()
        # The server prints links with its public address; the browsers use the test's.
        return Invite(self.base_url + path_of(link), patient_name)

    def add_co_facilitator(self, room_id: str, username: str) -> None:
        page = self.client.post(
            f"/clinic/rooms/{room_id}/co-facilitators",
            {"username": username},
            f"/clinic/rooms/{room_id}",
        )
        expect_ok(page, f"adding co-facilitator {username}")


class Administrator:
    """The administrator's pages, after first-run setup."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @classmethod
    def set_up(cls, base_url: str, setup_url: str, username: str = "admin") -> Administrator:
        """Create the first administrator with the setup link, then sign in."""
        client = Client(base_url)
        page = client.post(
            path_of(setup_url),
            {
                "username": username,
                "display_name": "Site Administrator",
                "password": PASSWORD,
                "password_again": PASSWORD,
            },
        )
        expect_ok(page, "first-run setup")
        return cls(sign_in(base_url, username))

    def create_account(self, username: str, display_name: str, role: str) -> str:
        """A clinician account; returns its one-time set-password link (a path)."""
        page = self.client.post(
            "/admin/accounts",
            {"username": username, "display_name": display_name, "role": role},
            "/admin",
        )
        return path_of(expect_ok(page, f"creating account {username}").new_link())

    def create_clinician(self, username: str, display_name: str, role: str = "therapist") -> Clinic:
        """An account with its password set (through its link), signed in."""
        link = self.create_account(username, display_name, role)
        client = Client(self.client.base_url)
        page = client.post(link, {"password": PASSWORD, "password_again": PASSWORD})
        expect_ok(page, f"setting {username}'s password")
        return Clinic(sign_in(self.client.base_url, username))


def prepare_clinic(base_url: str, log: Path) -> tuple[Administrator, Clinic]:
    """First-run setup from the server's printed link, and a signed-in therapist."""
    admin = Administrator.set_up(base_url, wait_for_setup_link(log))
    therapist = admin.create_clinician("therapist", "Alice")
    return admin, therapist
