"""Shared fixtures: a real Telecircle server on a loopback port."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from telecircle.config import Settings, load_settings
from telecircle.crypto.tokens import new_secret, secret_hash
from telecircle.domain.access import Role
from telecircle.domain.ids import RoomCode, RoomId, new_room_code
from telecircle.services.entry import PASS_COOKIE, SESSION_COOKIE, patient_key
from telecircle.storage import accounts_store, org_store, stores
from telecircle.storage.database import Database
from telecircle.web.app import create_app
from telecircle.web.keys import CHECKINS, DATABASE, INVITES, ROOMS, SFU, SIGNALLING
from tests.database_template import PostgresTemplate, create_at_newest_revision

# Property tests run beside media and browser tests on a shared 2-core machine: data
# generation can be slow there, which says nothing about the code under test.
hypothesis_settings.register_profile(
    "telecircle", suppress_health_check=[HealthCheck.too_slow], deadline=None
)
hypothesis_settings.load_profile("telecircle")

# Long enough for any test: sign-ins made by the fixtures below.
FIXTURE_SIGN_IN_SECONDS = 24 * 3600


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class RunningServer:
    app: web.Application
    runner: web.AppRunner
    settings: Settings

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def database(self) -> Database:
        return self.app[DATABASE]

    async def create_room(self, name: str = "Test group", limit: int = 10) -> str:
        """A room with a therapist who owns it (see ``owner_of``); returns its code."""
        room = await stores.create_room(self.database, name, limit, new_room_code())
        owner = await self._user(Role.THERAPIST)
        await org_store.assign_clinician(self.database, room.id, owner, "owner")
        return room.code

    async def _room(self, code: str) -> stores.RoomRecord:
        room = await stores.get_room_by_code(self.database, RoomCode(code))
        assert room is not None, code
        return room

    async def _user(self, role: Role, name: str = "Dr Test") -> str:
        user = await accounts_store.create_user(
            self.database,
            username=f"u{new_secret()[:10].lower().replace('-', 'x').replace('_', 'y')}",
            display_name=name,
            role=role,
            now=time.time(),
        )
        return user.id

    async def sign_in(self, user_id: str) -> str:
        """A sign-in for ``user_id`` (no password involved); returns its Cookie header."""
        secret = new_secret()
        now = time.time()
        await accounts_store.create_login_session(
            self.database,
            session_id=secret_hash(secret),
            user_id=user_id,
            csrf_token=new_secret(),
            second_factor_pending=False,
            now=now,
            expires_at=now + FIXTURE_SIGN_IN_SECONDS,
        )
        return f"{SESSION_COOKIE}={secret}"

    async def owner_cookie(self, code: str) -> str:
        """A sign-in for the room's therapist (its owner, made by ``create_room``)."""
        room = await self._room(code)
        clinicians = await org_store.clinicians_of_room(self.database, RoomId(room.id))
        return await self.sign_in(next(user for user, role in clinicians if role == "owner"))

    async def clinician_cookie(self, code: str, name: str = "Dr Test") -> str:
        """A new co-facilitator of the room, signed in: clinicians enter directly."""
        room = await self._room(code)
        user_id = await self._user(Role.CO_FACILITATOR, name)
        await org_store.assign_clinician(self.database, room.id, user_id, "co_facilitator")
        return await self.sign_in(user_id)

    async def personal_invite(self, code: str, name: str = "Pat") -> str:
        """A personal invite link's token, made by the room's therapist."""
        room = await self._room(code)
        clinicians = await org_store.clinicians_of_room(self.database, RoomId(room.id))
        owner = next(user_id for user_id, role in clinicians if role == "owner")
        _, token = await self.app[INVITES].create_personal(owner, room.id, name, None, "127.0.0.1")
        return token

    async def open_invite(self, token: str, name: str = "Pat") -> str:
        """Redeem ``token`` on a new device and fill in the pre-join page (consent and
        check-in); returns the device's Cookie header."""
        invites = self.app[INVITES]
        redemption = await invites.redeem(token, "127.0.0.1")
        agreement = await org_store.current_agreement(self.database)
        assert agreement is not None
        await invites.record_consent(
            redemption.pass_record.id, name, agreement.version, None, "127.0.0.1"
        )
        self.app[CHECKINS].record(patient_key(redemption.pass_record), "Home", "Sam 0123")
        return f"{PASS_COOKIE}={redemption.secret}"

    async def patient_cookie(self, code: str, name: str = "Pat") -> str:
        """A patient with a redeemed personal invite who has filled in the pre-join
        page; they enter the room's lobby."""
        return await self.open_invite(await self.personal_invite(code, name), name)


async def start_server(tmp_path: Path, **overrides: Any) -> RunningServer:
    # The collector tuning is process-wide: tests start many servers in one process.
    options: dict[str, Any] = {"tune_garbage_collector": False, "port": None, **overrides}
    options["port"] = options["port"] or free_port()
    settings = load_settings(data_dir=tmp_path / "data", **options)
    # A new SQLite database starts as a copy of the migrated template (an existing one,
    # or PostgreSQL, is migrated by the server as it starts).
    create_at_newest_revision(settings.effective_database_url)
    app = create_app(settings)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", settings.port).start()
    return RunningServer(app, runner, settings)


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[PostgresTemplate]:
    """The PostgreSQL database that tests/storage/conftest.py's ``db_url`` copies for
    tests that take a database at the newest revision (dropped at the end)."""
    template = PostgresTemplate()
    yield template
    template.drop()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    running = await start_server(tmp_path)
    yield running
    await running.runner.cleanup()


__all__ = ["ROOMS", "SFU", "SIGNALLING", "RunningServer", "free_port", "start_server"]
