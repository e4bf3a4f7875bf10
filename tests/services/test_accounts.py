"""AccountService against real SQLite, the real audit log and real argon2id.

Only the clock is fake. Most tests use cheap argon2 parameters; the two about the event
loop and the backlog use the real (default) cost.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from telecircle.config import Settings
from telecircle.crypto import totp
from telecircle.crypto.passwords import Busy, PasswordHasher, WeakPassword
from telecircle.domain.access import Role
from telecircle.domain.account_rules import InvalidAccountDetails
from telecircle.domain.audit_chain import AuditEntry
from telecircle.services import account_errors as errors
from telecircle.services.accounts import AccountService, LoginOutcome
from telecircle.services.audit import AuditLog
from telecircle.storage import accounts_store
from telecircle.storage.accounts_store import UserRecord
from telecircle.storage.database import Database, open_database
from tests import database_template

pytestmark = pytest.mark.timeout(120)

START = 1_700_000_000.0
PASSWORD = "a sturdy passphrase"
ADMIN_PASSWORD = "the administrator's passphrase"
IDLE = 1800.0
MAX_AGE = 43200.0
WINDOW = 600.0
LIMIT = 3
CHEAP = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}


@dataclass
class FakeClock:
    t: float = START

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Harness:
    db: Database
    clock: FakeClock
    audit: AuditLog
    service: AccountService

    async def admin(self) -> UserRecord:
        token = await self.service.create_setup_link()
        assert token is not None
        return await self.service.complete_setup(
            token, "admin", "The Admin", ADMIN_PASSWORD, "10.0.0.1"
        )

    async def clinician(
        self, admin: UserRecord, username: str = "alice", role: Role = Role.THERAPIST
    ) -> UserRecord:
        _, token = await self.service.create_account(
            admin.id, username, "Dr Somebody", role, "10.0.0.1"
        )
        return await self.service.set_password_with_link(token, PASSWORD, "10.0.0.2")

    async def entries(self, action: str) -> list[AuditEntry]:
        page = await self.audit.page(limit=1000, action=action, newest_first=False)
        return list(page.entries)

    async def all_entries(self) -> list[AuditEntry]:
        return list((await self.audit.page(limit=1000, newest_first=False)).entries)


def settings_for(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        login_idle_timeout=IDLE,
        login_max_age=MAX_AGE,
        login_attempts_per_window=LIMIT,
        login_window=WINDOW,
        setup_link_ttl=3600.0,
        account_link_ttl=259200.0,
        password_min_length=12,
    )


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'accounts.db'}"
    await database_template.upgrade(url)
    database = await open_database(url)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def cheap_hasher() -> Iterator[PasswordHasher]:
    hasher = PasswordHasher(**CHEAP)
    yield hasher
    hasher.close()


def make_harness(
    db: Database, tmp_path: Path, hasher: PasswordHasher, clock: FakeClock | None = None
) -> Harness:
    clock = clock or FakeClock()
    audit = AuditLog(db, key=b"k" * 32, clock=clock)
    service = AccountService(db, clock, audit, hasher, settings_for(tmp_path))
    return Harness(db, clock, audit, service)


@pytest.fixture
def h(db: Database, tmp_path: Path, cheap_hasher: PasswordHasher) -> Harness:
    return make_harness(db, tmp_path, cheap_hasher)


# ------------------------------------------------------------------ first-run setup


async def test_setup_happens_once(h: Harness) -> None:
    assert await h.service.needs_setup()
    token = await h.service.create_setup_link()
    assert token is not None and len(token) >= 43
    assert await h.service.check_link(token, "setup")
    admin = await h.service.complete_setup(
        token, " Admin ", "The Admin", ADMIN_PASSWORD, "10.0.0.1"
    )
    assert admin.username == "admin"
    assert admin.role is Role.ADMINISTRATOR and admin.has_password
    assert not await h.service.needs_setup()
    assert await h.service.create_setup_link() is None
    assert not await h.service.check_link(token, "setup")

    with pytest.raises(errors.LinkInvalid) as reused:
        await h.service.complete_setup(token, "other", "Other", ADMIN_PASSWORD, "10.0.0.1")
    assert reused.value.http_status == 410
    assert reused.value.code == "link_invalid"
    assert reused.value.message.startswith("This link has expired or was already used.")
    assert len(await h.service.list_users()) == 1

    [created] = await h.entries("setup_link_created")
    assert created.actor is None
    [completed] = await h.entries("setup_completed")
    assert completed.actor == admin.id and completed.address == "10.0.0.1"
    outcome = await h.service.login("admin", ADMIN_PASSWORD, "10.0.0.1")
    assert outcome.user.id == admin.id


async def test_expired_setup_link_is_refused(h: Harness) -> None:
    token = await h.service.create_setup_link()
    assert token is not None
    h.clock.advance(3600.0)
    with pytest.raises(errors.LinkInvalid):
        await h.service.complete_setup(token, "admin", "Admin", ADMIN_PASSWORD, "10.0.0.1")
    assert await h.service.needs_setup()


async def test_a_new_setup_link_replaces_the_old_one(h: Harness) -> None:
    old = await h.service.create_setup_link()
    new = await h.service.create_setup_link()
    assert old is not None and new is not None
    with pytest.raises(errors.LinkInvalid):
        await h.service.complete_setup(old, "admin", "Admin", ADMIN_PASSWORD, "10.0.0.1")
    await h.service.complete_setup(new, "admin", "Admin", ADMIN_PASSWORD, "10.0.0.1")


async def test_unknown_setup_token_is_refused(h: Harness) -> None:
    with pytest.raises(errors.LinkInvalid):
        await h.service.complete_setup("made-up", "admin", "Admin", ADMIN_PASSWORD, "10.0.0.1")


async def test_validation_failure_keeps_the_link_usable(h: Harness) -> None:
    token = await h.service.create_setup_link()
    assert token is not None
    bad_inputs = [
        ("ab", "Admin", ADMIN_PASSWORD, InvalidAccountDetails, "invalid_username"),
        ("has space", "Admin", ADMIN_PASSWORD, InvalidAccountDetails, "invalid_username"),
        ("x" * 65, "Admin", ADMIN_PASSWORD, InvalidAccountDetails, "invalid_username"),
        ("admin", "   ", ADMIN_PASSWORD, InvalidAccountDetails, "invalid_display_name"),
        ("admin", "Line\nbreak", ADMIN_PASSWORD, InvalidAccountDetails, "invalid_display_name"),
        ("admin", "x" * 201, ADMIN_PASSWORD, InvalidAccountDetails, "invalid_display_name"),
        ("admin", "Admin", "too short", WeakPassword, "weak_password"),
        ("longusername1", "Admin", "LongUsername1", WeakPassword, "weak_password"),
    ]
    for username, display_name, password, error, code in bad_inputs:
        with pytest.raises(error) as caught:
            await h.service.complete_setup(token, username, display_name, password, "10.0.0.1")
        assert caught.value.code == code
        assert caught.value.http_status == 422
        # Refusals never repeat what was typed.
        assert username.strip() not in caught.value.message
        assert password not in caught.value.message
    assert await h.service.needs_setup()
    admin = await h.service.complete_setup(
        token, "Admin.Name_1-x", "The Admin", ADMIN_PASSWORD, "10.0.0.1"
    )
    assert admin.username == "admin.name_1-x"


async def test_concurrent_setups_with_one_link_have_one_winner(h: Harness) -> None:
    token = await h.service.create_setup_link()
    assert token is not None
    results = await asyncio.gather(
        *(
            h.service.complete_setup(token, f"admin{i}", "Admin", ADMIN_PASSWORD, "10.0.0.1")
            for i in range(5)
        ),
        return_exceptions=True,
    )
    assert sum(isinstance(r, UserRecord) for r in results) == 1
    assert sum(isinstance(r, errors.LinkInvalid) for r in results) == 4
    assert len(await h.service.list_users()) == 1


# ------------------------------------------------------------------- administration


async def test_account_creation_and_password_link(h: Harness) -> None:
    admin = await h.admin()
    user, token = await h.service.create_account(
        admin.id, "Alice", "Dr Alice", Role.CO_FACILITATOR, "10.0.0.1"
    )
    assert user.username == "alice" and user.role is Role.CO_FACILITATOR
    assert not user.has_password
    assert await h.service.check_link(token, "set_password")
    # No password yet: signing in fails like any other wrong password.
    with pytest.raises(errors.LoginFailed):
        await h.service.login("alice", PASSWORD, "10.0.0.2")
    with pytest.raises(WeakPassword):
        await h.service.set_password_with_link(token, "short", "10.0.0.2")
    updated = await h.service.set_password_with_link(token, PASSWORD, "10.0.0.2")
    assert updated.has_password
    with pytest.raises(errors.LinkInvalid):
        await h.service.set_password_with_link(token, PASSWORD + "!", "10.0.0.2")
    assert (await h.service.login("alice", PASSWORD, "10.0.0.2")).user.id == user.id

    with pytest.raises(errors.UsernameTaken):
        await h.service.create_account(admin.id, "ALICE", "Other", Role.THERAPIST, "10.0.0.1")
    with pytest.raises(InvalidAccountDetails):
        await h.service.create_account(admin.id, "pat", "Pat", Role.PATIENT, "10.0.0.1")
    [created] = await h.entries("account_created")
    assert (created.actor, created.target) == (admin.id, user.id)
    assert dict(created.details) == {"role": "co_facilitator"}
    [password_set] = await h.entries("password_set")
    assert password_set.target == user.id


async def test_only_administrators_manage_accounts(h: Harness) -> None:
    admin = await h.admin()
    alice = await h.clinician(admin)
    with pytest.raises(errors.NotAllowed) as caught:
        await h.service.create_account(alice.id, "bob", "Bob", Role.THERAPIST, "10.0.0.3")
    assert caught.value.http_status == 403
    with pytest.raises(errors.NotAllowed):
        await h.service.disable(alice.id, admin.id, "10.0.0.3")
    with pytest.raises(errors.NotAllowed):
        await h.service.create_password_link(alice.id, alice.id, "10.0.0.3")
    with pytest.raises(errors.NotAllowed):
        await h.service.create_account("u_nobody", "bob", "Bob", Role.THERAPIST, "10.0.0.3")


async def test_password_reset_link(h: Harness) -> None:
    admin = await h.admin()
    alice = await h.clinician(admin)
    session = await h.service.login("alice", PASSWORD, "10.0.0.2")
    first = await h.service.create_password_link(admin.id, alice.id, "10.0.0.1")
    second = await h.service.create_password_link(admin.id, alice.id, "10.0.0.1")
    with pytest.raises(errors.LinkInvalid):
        await h.service.set_password_with_link(first, "a brand new passphrase", "10.0.0.2")
    await h.service.set_password_with_link(second, "a brand new passphrase", "10.0.0.2")
    # Setting a password ends the account's sign-ins.
    assert await h.service.authenticate(session.session_token) is None
    with pytest.raises(errors.LoginFailed):
        await h.service.login("alice", PASSWORD, "10.0.0.2")
    await h.service.login("alice", "a brand new passphrase", "10.0.0.2")
    with pytest.raises(errors.AccountNotFound):
        await h.service.create_password_link(admin.id, "u_missing", "10.0.0.1")


async def test_expired_password_link_is_refused(h: Harness) -> None:
    admin = await h.admin()
    _, token = await h.service.create_account(admin.id, "bob", "Bob", Role.THERAPIST, "x")
    h.clock.advance(259200.0)
    with pytest.raises(errors.LinkInvalid):
        await h.service.set_password_with_link(token, PASSWORD, "10.0.0.2")


async def test_disable_ends_sessions_invalidates_links_and_runs_callbacks(h: Harness) -> None:
    admin = await h.admin()
    alice = await h.clinician(admin)
    outcome = await h.service.login("alice", PASSWORD, "10.0.0.2")
    link = await h.service.create_password_link(admin.id, alice.id, "10.0.0.1")
    called: list[str] = []

    async def broken(user_id: str) -> None:
        raise RuntimeError("a callback that fails must not stop the others")

    async def end_seats(user_id: str) -> None:
        called.append(user_id)

    h.service.on_disabled(broken)
    h.service.on_disabled(end_seats)
    disabled = await h.service.disable(admin.id, alice.id, "10.0.0.1")
    assert disabled.disabled
    assert called == [alice.id]
    assert await h.service.authenticate(outcome.session_token) is None
    with pytest.raises(errors.LinkInvalid):
        await h.service.set_password_with_link(link, "another passphrase", "10.0.0.2")
    with pytest.raises(errors.LoginFailed):
        await h.service.login("alice", PASSWORD, "10.0.0.2")
    with pytest.raises(errors.AccountDisabled):
        await h.service.create_password_link(admin.id, alice.id, "10.0.0.1")
    [entry] = await h.entries("account_disabled")
    assert (entry.actor, entry.target) == (admin.id, alice.id)
    failed = await h.entries("login_failed")
    assert dict(failed[-1].details) == {"reason": "disabled"}

    await h.service.enable(admin.id, alice.id, "10.0.0.1")
    assert (await h.service.login("alice", PASSWORD, "10.0.0.2")).user.id == alice.id
    assert len(await h.entries("account_enabled")) == 1


async def test_administrators_cannot_disable_themselves(h: Harness) -> None:
    admin = await h.admin()
    with pytest.raises(errors.CannotDisableSelf):
        await h.service.disable(admin.id, admin.id, "10.0.0.1")
    with pytest.raises(errors.AccountNotFound):
        await h.service.disable(admin.id, "u_missing", "10.0.0.1")
    assert not await h.service.needs_setup()


# -------------------------------------------------------------------------- sign-in


async def test_login_success(h: Harness) -> None:
    admin = await h.admin()
    alice = await h.clinician(admin)
    outcome = await h.service.login(" ALICE ", PASSWORD, "10.0.0.2")
    assert isinstance(outcome, LoginOutcome)
    assert outcome.user.id == alice.id
    assert not outcome.second_factor_pending
    assert outcome.expires_at == START + MAX_AGE
    assert outcome.session_token not in repr(outcome)
    context = await h.service.authenticate(outcome.session_token)
    assert context is not None
    assert context.user.id == alice.id
    assert context.csrf_token == outcome.csrf_token
    assert not context.second_factor_pending
    # Only the token's hash is stored.
    session = await accounts_store.get_login_session(h.db, context.session_id)
    assert session is not None and session.id != outcome.session_token
    [login] = await h.entries("login")
    assert login.actor == alice.id and login.address == "10.0.0.2"


async def test_every_login_failure_looks_the_same(h: Harness) -> None:
    admin = await h.admin()
    alice = await h.clinician(admin)
    await h.service.create_account(admin.id, "nopass", "No Pass", Role.THERAPIST, "x")
    bob = await h.clinician(admin, "bob")
    await h.service.disable(admin.id, bob.id, "10.0.0.1")
    attempts = [
        ("nobody", PASSWORD, "unknown_user"),
        ("alice", "not the password", "wrong_password"),
        ("nopass", PASSWORD, "no_password"),
        ("bob", PASSWORD, "disabled"),
    ]
    messages = set()
    for index, (username, password, _) in enumerate(attempts):
        with pytest.raises(errors.LoginFailed) as caught:
            await h.service.login(username, password, f"10.1.0.{index}")
        assert caught.value.http_status == 401
        assert caught.value.code == "login_failed"
        messages.add(caught.value.message)
    assert messages == {"Wrong username or password."}
    failed = await h.entries("login_failed")
    assert [dict(e.details)["reason"] for e in failed] == [a[2] for a in attempts]
    assert failed[0].target is None
    assert failed[1].target == alice.id
    assert failed[3].target == bob.id
    # No typed username (or name) ever reaches the audit log.
    for entry in await h.all_entries():
        text = repr((entry.actor, entry.target, dict(entry.details)))
        assert "nobody" not in text and "alice" not in text and "Somebody" not in text


async def test_rate_limit_per_address(h: Harness) -> None:
    admin = await h.admin()
    await h.clinician(admin)
    for i in range(LIMIT):
        with pytest.raises(errors.LoginFailed):
            await h.service.login(f"guess{i}", "wrong password", "192.0.2.1")
    # Even the right password is refused from this address now...
    with pytest.raises(errors.TooManyAttempts) as caught:
        await h.service.login("alice", PASSWORD, "192.0.2.1")
    assert caught.value.http_status == 429
    assert caught.value.code == "too_many_attempts"
    assert caught.value.retry_after == WINDOW
    assert caught.value.message == (
        "Too many unsuccessful attempts. Please wait 10 minutes and try again."
    )
    # ...but not from another one.
    await h.service.login("alice", PASSWORD, "192.0.2.2")
    [limited] = await h.entries("rate_limited")
    assert limited.address == "192.0.2.1"
    assert dict(limited.details) == {"scope": "address"}
    h.clock.advance(WINDOW - 30)
    with pytest.raises(errors.TooManyAttempts) as later:
        await h.service.login("alice", PASSWORD, "192.0.2.1")
    assert later.value.message == (
        "Too many unsuccessful attempts. Please wait 1 minute and try again."
    )
    h.clock.advance(30)
    await h.service.login("alice", PASSWORD, "192.0.2.1")


async def test_rate_limit_per_account(h: Harness) -> None:
    admin = await h.admin()
    alice = await h.clinician(admin)
    await h.clinician(admin, "bob")
    for i in range(LIMIT):
        with pytest.raises(errors.LoginFailed):
            await h.service.login("alice", "wrong password", f"198.51.100.{i}")
    with pytest.raises(errors.TooManyAttempts):
        await h.service.login("Alice", PASSWORD, "198.51.100.99")
    await h.service.login("bob", PASSWORD, "198.51.100.99")
    [limited] = await h.entries("rate_limited")
    assert limited.target == alice.id
    assert dict(limited.details) == {"scope": "account"}


async def test_success_resets_the_accounts_count(h: Harness) -> None:
    admin = await h.admin()
    await h.clinician(admin)
    for _ in range(2):
        for i in range(LIMIT - 1):
            with pytest.raises(errors.LoginFailed):
                await h.service.login("alice", "wrong password", f"203.0.113.{i}")
        await h.service.login("alice", PASSWORD, "203.0.113.200")


async def test_successful_logins_do_not_use_up_the_address(h: Harness) -> None:
    # Many clinicians behind one clinic's address.
    admin = await h.admin()
    await h.clinician(admin)
    for _ in range(LIMIT * 2):
        await h.service.login("alice", PASSWORD, "10.9.9.9")


async def test_idle_timeout(h: Harness) -> None:
    admin = await h.admin()
    await h.clinician(admin)
    outcome = await h.service.login("alice", PASSWORD, "10.0.0.2")
    # Activity keeps the sign-in alive...
    for _ in range(3):
        h.clock.advance(IDLE - 10)
        assert await h.service.authenticate(outcome.session_token) is not None
    # ...and idleness ends it.
    h.clock.advance(IDLE + 1)
    assert await h.service.authenticate(outcome.session_token) is None
    h.clock.advance(-IDLE)  # even back within the window, an ended sign-in stays ended
    assert await h.service.authenticate(outcome.session_token) is None


async def test_activity_is_written_at_most_once_a_minute(h: Harness) -> None:
    admin = await h.admin()
    await h.clinician(admin)
    outcome = await h.service.login("alice", PASSWORD, "10.0.0.2")
    context = await h.service.authenticate(outcome.session_token)
    assert context is not None

    async def last_seen() -> float:
        session = await accounts_store.get_login_session(h.db, context.session_id)
        assert session is not None
        return session.last_seen_at

    h.clock.advance(30)
    await h.service.authenticate(outcome.session_token)
    assert await last_seen() == START
    h.clock.advance(30)
    await h.service.authenticate(outcome.session_token)
    assert await last_seen() == START + 60


async def test_max_age(h: Harness) -> None:
    admin = await h.admin()
    await h.clinician(admin)
    outcome = await h.service.login("alice", PASSWORD, "10.0.0.2")
    while h.clock.now() + IDLE / 2 < START + MAX_AGE:
        h.clock.advance(IDLE / 2)
        assert await h.service.authenticate(outcome.session_token) is not None
    h.clock.t = START + MAX_AGE
    assert await h.service.authenticate(outcome.session_token) is None


async def test_unknown_and_empty_tokens_do_not_authenticate(h: Harness) -> None:
    assert await h.service.authenticate("") is None
    assert await h.service.authenticate("never issued") is None
    await h.service.logout("")
    await h.service.logout("never issued")


async def test_logout_and_sign_out_everywhere(h: Harness) -> None:
    admin = await h.admin()
    alice = await h.clinician(admin)
    one = await h.service.login("alice", PASSWORD, "10.0.0.2")
    two = await h.service.login("alice", PASSWORD, "10.0.0.3")
    three = await h.service.login("alice", PASSWORD, "10.0.0.4")
    admins = await h.service.login("admin", ADMIN_PASSWORD, "10.0.0.1")
    await h.service.logout(one.session_token, "10.0.0.2")
    assert await h.service.authenticate(one.session_token) is None
    assert await h.service.authenticate(two.session_token) is not None
    assert await h.service.sign_out_everywhere(alice.id, "10.0.0.3") == 2
    assert await h.service.authenticate(two.session_token) is None
    assert await h.service.authenticate(three.session_token) is None
    assert await h.service.authenticate(admins.session_token) is not None
    [logout] = await h.entries("logout")
    assert logout.actor == alice.id
    [everywhere] = await h.entries("sign_out_everywhere")
    assert everywhere.actor == alice.id and dict(everywhere.details) == {"sessions": 2}


# ---------------------------------------------------------------------------- TOTP


async def test_required_second_factor_enrolment_then_sign_in(h: Harness) -> None:
    admin = await h.admin()
    alice = await h.clinician(admin)
    outcome = await h.service.login("alice", PASSWORD, "10.0.0.2", require_second_factor=True)
    assert outcome.second_factor_pending
    context = await h.service.authenticate(outcome.session_token)
    assert context is not None and context.second_factor_pending
    with pytest.raises(errors.SecondFactorNotSetUp):
        await h.service.complete_second_factor(outcome.session_token, "123456", "10.0.0.2")

    secret, uri = await h.service.begin_totp_enrolment(alice.id)
    assert uri.startswith("otpauth://totp/Telecircle:alice?") and f"secret={secret}" in uri
    assert not (await h.service.get_user(alice.id) or alice).totp_enabled  # not stored yet
    wrong = "000000" if totp.code_at(secret, h.clock.now()) != "000000" else "111111"
    with pytest.raises(errors.CodeRejected) as caught:
        await h.service.confirm_totp(alice.id, secret, wrong, "10.0.0.2")
    assert caught.value.http_status == 401
    await h.service.confirm_totp(
        alice.id,
        secret,
        totp.code_at(secret, h.clock.now()),
        "10.0.0.2",
        session_token=outcome.session_token,
    )
    assert (await h.service.get_user(alice.id) or alice).totp_enabled
    context = await h.service.authenticate(outcome.session_token)
    assert context is not None and not context.second_factor_pending
    assert len(await h.entries("totp_enabled")) == 1

    # From now on every sign-in asks for a code, required or not.
    h.clock.advance(30)
    again = await h.service.login("alice", PASSWORD, "10.0.0.2")
    assert again.second_factor_pending
    code = totp.code_at(secret, h.clock.now())
    with pytest.raises(errors.CodeRejected):
        await h.service.complete_second_factor(again.session_token, wrong, "10.0.0.2")
    done = await h.service.complete_second_factor(again.session_token, code, "10.0.0.2")
    assert not done.second_factor_pending
    assert done.user.id == alice.id
    # Completing twice is harmless.
    assert not (
        await h.service.complete_second_factor(again.session_token, code, "10.0.0.2")
    ).second_factor_pending

    # A code is accepted once: the same code cannot complete another sign-in.
    third = await h.service.login("alice", PASSWORD, "10.0.0.2")
    with pytest.raises(errors.CodeRejected):
        await h.service.complete_second_factor(third.session_token, code, "10.0.0.5")
    h.clock.advance(30)
    next_code = totp.code_at(secret, h.clock.now())
    await h.service.complete_second_factor(third.session_token, next_code, "10.0.0.2")
    reasons = [dict(e.details)["reason"] for e in await h.entries("login_failed")]
    assert reasons == ["wrong_code", "wrong_code", "wrong_code"]


async def test_enrolment_then_completion_with_the_same_code(h: Harness) -> None:
    # The web form confirms the new secret, then completes the pending sign-in.
    admin = await h.admin()
    alice = await h.clinician(admin)
    outcome = await h.service.login("alice", PASSWORD, "10.0.0.2", require_second_factor=True)
    secret, _ = await h.service.begin_totp_enrolment(alice.id)
    code = totp.code_at(secret, h.clock.now())
    await h.service.confirm_totp(alice.id, secret, code, "10.0.0.2")
    context = await h.service.complete_second_factor(outcome.session_token, code, "10.0.0.2")
    assert not context.second_factor_pending


async def test_wrong_codes_are_rate_limited(h: Harness) -> None:
    admin = await h.admin()
    alice = await h.clinician(admin)
    secret, _ = await h.service.begin_totp_enrolment(alice.id)
    await h.service.confirm_totp(alice.id, secret, totp.code_at(secret, h.clock.now()), "x")
    outcome = await h.service.login("alice", PASSWORD, "10.0.0.2")
    right = totp.code_at(secret, h.clock.now() + 30)
    wrong = "000000" if right != "000000" else "111111"
    h.clock.advance(30)
    for _ in range(LIMIT):
        with pytest.raises(errors.CodeRejected):
            await h.service.complete_second_factor(outcome.session_token, wrong, "10.0.0.2")
    with pytest.raises(errors.TooManyAttempts):
        await h.service.complete_second_factor(outcome.session_token, right, "10.0.0.2")


async def test_malformed_secret_is_refused_at_confirmation(h: Harness) -> None:
    admin = await h.admin()
    alice = await h.clinician(admin)
    with pytest.raises(errors.CodeRejected):
        await h.service.confirm_totp(alice.id, "not base32!", "123456", "10.0.0.2")
    with pytest.raises(errors.AccountNotFound):
        await h.service.begin_totp_enrolment("u_missing")


async def test_complete_second_factor_needs_a_live_sign_in(h: Harness) -> None:
    with pytest.raises(errors.NotSignedIn):
        await h.service.complete_second_factor("never issued", "123456", "10.0.0.2")


# ----------------------------------------------------- the event loop and the backlog


async def test_hashing_does_not_block_the_event_loop(db: Database, tmp_path: Path) -> None:
    real = PasswordHasher()  # argon2-cffi's defaults: the production cost
    try:
        h = make_harness(db, tmp_path, real)
        admin = await h.admin()
        await h.clinician(admin)
        ticks = 0
        hashing = True

        async def ticker() -> None:
            nonlocal ticks
            while hashing:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        hashes = await asyncio.gather(*(real.hash(f"password number {i}") for i in range(4)))
        hashing = False
        await ticking
        assert len(set(hashes)) == 4
        # Were argon2 run on the loop, the ticker could not run at all while it worked.
        assert ticks >= 3

        # The same through the service: four concurrent sign-ins.
        ticks, hashing = 0, True
        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        outcomes = await asyncio.gather(
            *(h.service.login("alice", PASSWORD, f"10.2.0.{i}") for i in range(4))
        )
        hashing = False
        await ticking
        assert all(o.user.username == "alice" for o in outcomes)
        assert ticks >= 3
    finally:
        real.close()


async def test_busy_refusal_when_too_many_hashes_are_pending(db: Database, tmp_path: Path) -> None:
    # Real cost, one worker, room for one: while one sign-in's verification runs (tens
    # of milliseconds at least), the others are refused at once.
    small = PasswordHasher(workers=1, max_pending=1)
    try:
        h = make_harness(db, tmp_path, small)
        admin = await h.admin()
        await h.clinician(admin)
        results = await asyncio.gather(
            *(h.service.login("alice", PASSWORD, "10.3.0.1") for _ in range(3)),
            return_exceptions=True,
        )
        busy = [r for r in results if isinstance(r, Busy)]
        assert len(busy) == 2
        assert busy[0].http_status == 503
        assert sum(isinstance(r, LoginOutcome) for r in results) == 1
        # Refused attempts did not count as failures against the address or account.
        for _ in range(LIMIT):
            with pytest.raises(errors.LoginFailed):
                await h.service.login("alice", "wrong password", "10.3.0.1")
    finally:
        small.close()
