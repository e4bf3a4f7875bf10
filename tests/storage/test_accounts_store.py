"""The accounts store on SQLite and PostgreSQL: users, sign-in sessions, one-time links."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib

import pytest

from telecircle.domain.access import Role
from telecircle.storage import accounts_store as store
from telecircle.storage.database import Database

NOW = 1_700_000_000.0
HOUR = 3600.0


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def make_user(
    db: Database, username: str = "alice", role: Role = Role.THERAPIST
) -> store.UserRecord:
    return await store.create_user(db, username=username, display_name="Dr A", role=role, now=NOW)


async def open_session(db: Database, user_id: str, name: str = "s1") -> store.LoginSessionRecord:
    return await store.create_login_session(
        db,
        session_id=digest(name),
        user_id=user_id,
        csrf_token="csrf-" + name,
        second_factor_pending=False,
        now=NOW,
        expires_at=NOW + HOUR,
    )


async def password_link(db: Database, user_id: str, token: str = "t1") -> store.AccountLinkRecord:
    return await store.create_link(
        db,
        token_hash=digest(token),
        purpose="set_password",
        user_id=user_id,
        created_by=None,
        now=NOW,
        expires_at=NOW + HOUR,
    )


async def setup_link(db: Database, token: str = "setup") -> store.AccountLinkRecord:
    return await store.create_link(
        db,
        token_hash=digest(token),
        purpose="setup",
        user_id=None,
        created_by=None,
        now=NOW,
        expires_at=NOW + HOUR,
    )


# ---------------------------------------------------------------------------- users


async def test_create_and_read_users(database: Database) -> None:
    user = await store.create_user(
        database, username="Alice", display_name="Dr Alice", role=Role.THERAPIST, now=NOW
    )
    assert user.username == "alice"
    assert user.role is Role.THERAPIST
    assert (user.has_password, user.totp_enabled, user.disabled) == (False, False, False)
    assert user.created_at == NOW
    assert await store.get_user(database, user.id) == user
    assert await store.get_user_by_username(database, "ALICE") == user
    assert await store.get_user(database, "u_missing") is None
    assert await store.get_user_by_username(database, "nobody") is None


async def test_user_record_carries_no_secrets(database: Database) -> None:
    user = await make_user(database)
    await store.set_password_hash(database, user.id, "$argon2id$secret-hash")
    await store.set_totp_secret(database, user.id, "JBSWY3DPEHPK3PXP")
    record = await store.get_user(database, user.id)
    assert record is not None
    names = {f.name for f in dataclasses.fields(record)}
    assert not names & {"password_hash", "totp_secret"}
    assert record.has_password and record.totp_enabled
    credentials = await store.get_credentials(database, user.id)
    assert credentials is not None
    assert credentials.password_hash == "$argon2id$secret-hash"
    assert credentials.totp_secret == "JBSWY3DPEHPK3PXP"
    assert "secret-hash" not in repr(credentials)
    assert "JBSWY3DP" not in repr(credentials)
    await store.set_totp_secret(database, user.id, None)
    assert not (await store.get_user(database, user.id) or record).totp_enabled
    assert await store.get_credentials(database, "u_missing") is None


async def test_duplicate_username_is_refused_whatever_the_case(database: Database) -> None:
    await make_user(database, "alice")
    with pytest.raises(store.DuplicateUsername):
        await make_user(database, "ALICE")
    assert len(await store.list_users(database)) == 1


async def test_concurrent_creates_of_one_username_give_one_account(database: Database) -> None:
    results = await asyncio.gather(
        *(make_user(database, "bob") for _ in range(10)), return_exceptions=True
    )
    created = [r for r in results if isinstance(r, store.UserRecord)]
    refused = [r for r in results if isinstance(r, store.DuplicateUsername)]
    assert len(created) == 1
    assert len(refused) == 9


async def test_list_users_by_username(database: Database) -> None:
    for name in ("carol", "alice", "bob"):
        await make_user(database, name)
    assert [u.username for u in await store.list_users(database)] == ["alice", "bob", "carol"]


async def test_updates_of_a_missing_user_raise(database: Database) -> None:
    with pytest.raises(store.UserNotFound):
        await store.set_password_hash(database, "u_missing", "h")
    with pytest.raises(store.UserNotFound):
        await store.set_totp_secret(database, "u_missing", None)
    with pytest.raises(store.UserNotFound):
        await store.set_disabled(database, "u_missing", True, NOW)


async def test_administrator_exists_counts_enabled_administrators(database: Database) -> None:
    assert not await store.any_administrator_exists(database)
    await make_user(database, "therapist")
    assert not await store.any_administrator_exists(database)
    await make_user(database, "admin", Role.ADMINISTRATOR)
    assert await store.any_administrator_exists(database)


async def test_last_enabled_administrator_cannot_be_disabled(database: Database) -> None:
    first = await make_user(database, "admin1", Role.ADMINISTRATOR)
    second = await make_user(database, "admin2", Role.ADMINISTRATOR)
    disabled = await store.set_disabled(database, first.id, True, NOW)
    assert disabled.disabled
    with pytest.raises(store.LastAdministrator):
        await store.set_disabled(database, second.id, True, NOW)
    assert not (await store.get_user(database, second.id) or disabled).disabled
    enabled = await store.set_disabled(database, first.id, False, NOW)
    assert not enabled.disabled


async def test_disabling_ends_sessions_and_invalidates_links(database: Database) -> None:
    user = await make_user(database)
    await open_session(database, user.id, "s1")
    await open_session(database, user.id, "s2")
    await password_link(database, user.id)
    await store.set_disabled(database, user.id, True, NOW + 5)
    for name in ("s1", "s2"):
        session = await store.get_login_session(database, digest(name))
        assert session is not None and session.ended_at == NOW + 5
    assert await store.use_link(database, digest("t1"), "set_password", NOW + 6) is None


# ------------------------------------------------------------------ login sessions


async def test_login_session_lifecycle(database: Database) -> None:
    user = await make_user(database)
    created = await store.create_login_session(
        database,
        session_id=digest("cookie"),
        user_id=user.id,
        csrf_token="csrf",
        second_factor_pending=True,
        now=NOW,
        expires_at=NOW + HOUR,
    )
    assert await store.get_login_session(database, digest("cookie")) == created
    assert "csrf" not in repr(created)
    signed_in = await store.get_signed_in(database, digest("cookie"))
    assert signed_in == (created, user)
    assert await store.get_signed_in(database, digest("other")) is None

    assert await store.touch_login_session(database, digest("cookie"), NOW + 100)
    assert await store.mark_second_factor_done(database, digest("cookie"), NOW + 110)
    assert not await store.mark_second_factor_done(database, digest("cookie"), NOW + 111)
    session = await store.get_login_session(database, digest("cookie"))
    assert session is not None
    assert session.last_seen_at == NOW + 110
    assert not session.second_factor_pending

    assert await store.end_login_session(database, digest("cookie"), NOW + 200) == user.id
    assert await store.end_login_session(database, digest("cookie"), NOW + 201) is None
    assert not await store.touch_login_session(database, digest("cookie"), NOW + 300)
    ended = await store.get_login_session(database, digest("cookie"))
    assert ended is not None and ended.ended_at == NOW + 200


async def test_end_user_sessions_ends_only_that_users_open_ones(database: Database) -> None:
    alice = await make_user(database, "alice")
    bob = await make_user(database, "bob")
    await open_session(database, alice.id, "a1")
    await open_session(database, alice.id, "a2")
    await open_session(database, bob.id, "b1")
    await store.end_login_session(database, digest("a2"), NOW + 1)
    assert await store.end_user_sessions(database, alice.id, NOW + 2) == 1
    assert await store.end_user_sessions(database, alice.id, NOW + 3) == 0
    bobs = await store.get_login_session(database, digest("b1"))
    assert bobs is not None and bobs.ended_at is None


# --------------------------------------------------------------------------- links


async def test_link_is_used_once(database: Database) -> None:
    user = await make_user(database)
    created = await password_link(database, user.id)
    assert created.used_at is None
    assert await store.get_usable_link(database, digest("t1"), "set_password", NOW) == created
    used = await store.use_link(database, digest("t1"), "set_password", NOW + 1)
    assert used is not None
    assert used.user_id == user.id
    assert used.used_at == NOW + 1
    assert await store.use_link(database, digest("t1"), "set_password", NOW + 2) is None
    assert await store.get_usable_link(database, digest("t1"), "set_password", NOW + 2) is None


async def test_expired_unknown_and_wrong_purpose_links_are_refused(database: Database) -> None:
    user = await make_user(database)
    await password_link(database, user.id)
    assert await store.use_link(database, digest("t1"), "setup", NOW) is None
    assert await store.use_link(database, digest("nope"), "set_password", NOW) is None
    assert await store.get_usable_link(database, digest("t1"), "set_password", NOW + HOUR) is None
    assert await store.use_link(database, digest("t1"), "set_password", NOW + HOUR) is None
    # Refusals changed nothing: just before expiry it still works.
    assert await store.use_link(database, digest("t1"), "set_password", NOW + HOUR - 1)


async def test_fifty_concurrent_uses_of_one_link_have_one_winner(database: Database) -> None:
    user = await make_user(database)
    await password_link(database, user.id)
    results = await asyncio.gather(
        *(store.use_link(database, digest("t1"), "set_password", NOW + 1) for _ in range(50))
    )
    assert sum(result is not None for result in results) == 1


async def test_a_new_link_replaces_unused_ones(database: Database) -> None:
    alice = await make_user(database, "alice")
    bob = await make_user(database, "bob")
    await password_link(database, alice.id, "old")
    await password_link(database, bob.id, "bobs")
    await password_link(database, alice.id, "new")
    assert await store.use_link(database, digest("old"), "set_password", NOW) is None
    assert await store.use_link(database, digest("new"), "set_password", NOW) is not None
    assert await store.use_link(database, digest("bobs"), "set_password", NOW) is not None

    await setup_link(database, "setup-old")
    await setup_link(database, "setup-new")
    assert await store.get_usable_link(database, digest("setup-old"), "setup", NOW) is None
    assert await store.get_usable_link(database, digest("setup-new"), "setup", NOW) is not None


async def test_link_purpose_and_user_must_agree(database: Database) -> None:
    with pytest.raises(ValueError):
        await store.create_link(
            database,
            token_hash=digest("x"),
            purpose="setup",
            user_id="u_1",
            created_by=None,
            now=NOW,
            expires_at=NOW + 1,
        )
    with pytest.raises(ValueError):
        await store.create_link(
            database,
            token_hash=digest("x"),
            purpose="set_password",
            user_id=None,
            created_by=None,
            now=NOW,
            expires_at=NOW + 1,
        )


async def test_invalidate_user_links(database: Database) -> None:
    user = await make_user(database)
    await password_link(database, user.id)
    assert await store.invalidate_user_links(database, user.id, NOW) == 1
    assert await store.invalidate_user_links(database, user.id, NOW) == 0
    assert await store.use_link(database, digest("t1"), "set_password", NOW) is None


async def test_use_password_link_sets_password_and_ends_sessions(database: Database) -> None:
    user = await make_user(database)
    await open_session(database, user.id)
    await password_link(database, user.id)
    updated = await store.use_password_link(
        database, token_hash=digest("t1"), password_hash="$argon2id$h", now=NOW + 1
    )
    assert updated is not None and updated.has_password
    credentials = await store.get_credentials(database, user.id)
    assert credentials is not None and credentials.password_hash == "$argon2id$h"
    session = await store.get_login_session(database, digest("s1"))
    assert session is not None and session.ended_at == NOW + 1
    again = await store.use_password_link(
        database, token_hash=digest("t1"), password_hash="$argon2id$other", now=NOW + 2
    )
    assert again is None


async def test_use_password_link_refuses_a_disabled_account(database: Database) -> None:
    user = await make_user(database)
    await store.set_disabled(database, user.id, True, NOW)
    # A link made after disabling (the service refuses to, but the store must hold).
    await password_link(database, user.id)
    result = await store.use_password_link(
        database, token_hash=digest("t1"), password_hash="$argon2id$h", now=NOW + 1
    )
    assert result is None
    credentials = await store.get_credentials(database, user.id)
    assert credentials is not None and credentials.password_hash is None


# ----------------------------------------------------------------- first-run setup


async def test_first_administrator_is_created_once(database: Database) -> None:
    await setup_link(database)
    results = await asyncio.gather(
        *(
            store.create_first_administrator(
                database,
                token_hash=digest("setup"),
                username=f"admin{i}",
                display_name="Admin",
                password_hash="$argon2id$h",
                now=NOW + 1,
            )
            for i in range(10)
        )
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    admin = winners[0]
    assert admin.role is Role.ADMINISTRATOR and admin.has_password
    assert [u.id for u in await store.list_users(database)] == [admin.id]


async def test_setup_link_is_refused_once_an_administrator_exists(database: Database) -> None:
    await setup_link(database)
    await make_user(database, "admin", Role.ADMINISTRATOR)
    result = await store.create_first_administrator(
        database,
        token_hash=digest("setup"),
        username="intruder",
        display_name="X",
        password_hash="$argon2id$h",
        now=NOW + 1,
    )
    assert result is None
    assert await store.get_user_by_username(database, "intruder") is None


async def test_setup_with_a_taken_username_keeps_the_link(database: Database) -> None:
    await make_user(database, "taken")
    await setup_link(database)
    with pytest.raises(store.DuplicateUsername):
        await store.create_first_administrator(
            database,
            token_hash=digest("setup"),
            username="Taken",
            display_name="X",
            password_hash="$argon2id$h",
            now=NOW + 1,
        )
    assert await store.get_usable_link(database, digest("setup"), "setup", NOW + 1) is not None


async def test_expired_setup_link_creates_nothing(database: Database) -> None:
    await setup_link(database)
    result = await store.create_first_administrator(
        database,
        token_hash=digest("setup"),
        username="admin",
        display_name="Admin",
        password_hash="$argon2id$h",
        now=NOW + HOUR,
    )
    assert result is None
    assert await store.list_users(database) == []
